"""Scores computed from a model's outputs with NumPy: plain top-level functions, one per score.

The validation scores of the ensemble, the test scores after a search or a retrain and
``SearchResult.score`` all come from here, so each score is computed one way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LOG_LOSS_EPS = 1e-7  # the probability of the true class is clipped to [eps, 1] before the log


def accuracy(y_true, probs_or_pred) -> float:
    """The fraction of rows whose predicted class is ``y_true`` (integer class indices).

    ``probs_or_pred``: class probabilities ``[N, C]`` (the predicted class is the arg-max)
    or predicted class indices ``[N]``.
    """
    pred = np.asarray(probs_or_pred)
    if pred.ndim == 2:
        pred = np.argmax(pred, axis=1)
    return float(np.mean(pred == y_true))


def log_loss(y_true, probs, eps: float = LOG_LOSS_EPS) -> float:
    """Mean negative log of the probability given to the true class (Keras's sparse
    categorical cross-entropy on probabilities), with that probability clipped to ``[eps, 1]``."""
    y = np.asarray(y_true)
    picked = np.clip(probs[np.arange(len(y)), y], eps, 1.0)
    return float(np.mean(-np.log(picked)))


# --- the ranking rule -----------------------------------------------------------------
def _score(scores: dict[str, Any], key: str, worst: float) -> float:
    v = scores.get(key)
    return worst if v is None or v != v else float(v)  # missing or NaN: the worst value


def rank_key(scores: dict[str, Any], objective: str = "val_accuracy") -> tuple[float, float]:
    """The one ranking rule: higher is better; the objective first, the other validation
    score breaks ties. A missing, None or NaN score ranks below every real one.

    Every epoch, trial, checkpoint, ensemble candidate and leaderboard row ranks with this.
    """
    acc = _score(scores, "val_accuracy", float("-inf"))
    neg_loss = -_score(scores, "val_loss", float("inf"))
    return (neg_loss, acc) if objective == "val_loss" else (acc, neg_loss)


def rank_keys(rows, objective: str = "val_accuracy") -> list[tuple[float, float]]:
    """:func:`rank_key` of each row of DataFrame ``rows`` (its ``val_accuracy``/``val_loss``)."""
    acc = rows["val_accuracy"].tolist() if "val_accuracy" in rows else [None] * len(rows)
    loss = rows["val_loss"].tolist() if "val_loss" in rows else [None] * len(rows)
    return [rank_key({"val_accuracy": a, "val_loss": b}, objective) for a, b in zip(acc, loss)]


def ranked(rows, objective: str = "val_accuracy") -> list[int]:
    """Row positions of DataFrame ``rows``, best first by :func:`rank_key`; ties keep their order."""
    keys = rank_keys(rows, objective)
    return sorted(range(len(keys)), key=keys.__getitem__, reverse=True)
