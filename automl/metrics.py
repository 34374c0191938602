"""Metrics of every task in plain NumPy (no scikit-learn at import time).

Each function is top-level and self-contained; the definitions follow scikit-learn's
(checked against it in tests/test_metrics.py) so a figure means the same thing in a report
and in a notebook:

* classification (``y_true`` class indices, ``y_pred`` indices or an (N, classes) matrix of
  probabilities): :func:`accuracy`, :func:`balanced_accuracy`, :func:`macro_f1`, :func:`auc`
  (one-vs-rest, macro), :func:`log_loss`, :func:`per_class_precision_recall`;
* multi-label (``y_true`` a 0/1 matrix, ``probs`` per-label probabilities): :func:`macro_f1`,
  :func:`micro_f1`, :func:`auc` (per label, macro), :func:`binary_log_loss`,
  :func:`tune_thresholds`;
* regression (values in the targets' units): :func:`mae`, :func:`rmse`, :func:`r2`.

:func:`score` computes a task's objective (``val_accuracy``, ``val_macro_f1``, ``val_mae``,
...) from encoded targets and model outputs.

The ranking rule (:func:`rank_key`) orders epochs, trials, checkpoints, ensemble candidates
and leaderboard rows; the ensemble's validation scores, the test scores after a search or a
retrain and ``SearchResult.score`` use :func:`accuracy` and :func:`log_loss` from here, so each
score is computed one way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LOG_LOSS_EPS = 1e-7  # the probability of the true class is clipped to [eps, 1] before the log

__all__ = [
    "accuracy",
    "auc",
    "balanced_accuracy",
    "binary_log_loss",
    "direction",
    "log_loss",
    "macro_f1",
    "mae",
    "micro_f1",
    "objective_names",
    "per_class_precision_recall",
    "r2",
    "rank_key",
    "rank_keys",
    "ranked",
    "rmse",
    "score",
    "tune_thresholds",
]


def _labels(pred: Any) -> np.ndarray:
    """Class indices from indices or from an (N, classes) matrix of scores."""
    p = np.asarray(pred)
    return np.argmax(p, axis=-1) if p.ndim == 2 else p.astype(np.int64)


def accuracy(y_true, probs_or_pred) -> float:
    """The fraction of rows whose predicted class is ``y_true`` (integer class indices).

    ``probs_or_pred``: class probabilities ``[N, C]`` (the predicted class is the arg-max)
    or predicted class indices ``[N]``.
    """
    pred = np.asarray(probs_or_pred)
    if pred.ndim == 2:
        pred = np.argmax(pred, axis=1)
    return float(np.mean(pred == y_true))


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, float), np.asarray(den, float)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int):
    """(tp, fp, fn) per class (1-D indices) or per label (0/1 matrices)."""
    if y_true.ndim == 2:
        t, p = y_true.astype(bool), y_pred.astype(bool)
        return (t & p).sum(0), (~t & p).sum(0), (t & ~p).sum(0)
    tp = np.bincount(y_true[y_true == y_pred], minlength=n_classes)[:n_classes]
    fp = np.bincount(y_pred, minlength=n_classes)[:n_classes] - tp
    fn = np.bincount(y_true, minlength=n_classes)[:n_classes] - tp
    return tp, fp, fn


def _prepare(y_true: Any, pred: Any, n_classes: int | None):
    y = np.asarray(y_true)
    if y.ndim == 2:  # multi-label: 0/1 decisions (already thresholded)
        p = np.asarray(pred)
        return y.astype(np.int64), p.astype(np.int64), y.shape[1]
    y = y.reshape(-1).astype(np.int64)
    p = _labels(pred).reshape(-1)
    if n_classes is None:
        pa = np.asarray(pred)
        n_classes = (
            pa.shape[1] if pa.ndim == 2 else int(max(y.max(initial=-1), p.max(initial=-1)) + 1)
        )
    return y, p, n_classes


def per_class_precision_recall(
    y_true: Any, y_pred: Any, n_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, support) per class (or per label for 0/1 matrices); 0 where
    undefined (nothing predicted, or no true example)."""
    y, p, k = _prepare(y_true, y_pred, n_classes)
    tp, fp, fn = _confusion_counts(y, p, k)
    return _safe_div(tp, tp + fp), _safe_div(tp, tp + fn), (tp + fn).astype(np.int64)


def balanced_accuracy(y_true: Any, probs_or_pred: Any) -> float:
    """Mean recall over the classes present in ``y_true`` (scikit-learn's definition)."""
    y, p, k = _prepare(y_true, probs_or_pred, None)
    _, recall, support = per_class_precision_recall(y, p, k)
    present = support > 0
    return float(recall[present].mean()) if present.any() else float("nan")


def macro_f1(y_true: Any, y_pred: Any, n_classes: int | None = None) -> float:
    """F1 averaged over classes (indices, or probabilities' argmax) or over labels (0/1
    matrices). Classification averages over the classes present in ``y_true`` or predicted;
    multi-label over every label; an undefined F1 counts as 0 (scikit-learn's default)."""
    y, p, k = _prepare(y_true, y_pred, n_classes)
    tp, fp, fn = _confusion_counts(y, p, k)
    f1 = _safe_div(2 * tp, 2 * tp + fp + fn)
    if y.ndim == 2:
        return float(f1.mean())
    used = (tp + fp + fn) > 0
    return float(f1[used].mean()) if used.any() else float("nan")


def micro_f1(y_true: Any, y_pred: Any) -> float:
    """F1 of all (image, label) decisions pooled (multi-label 0/1 matrices)."""
    t, p = np.asarray(y_true).astype(bool), np.asarray(y_pred).astype(bool)
    tp, fp, fn = (t & p).sum(), (~t & p).sum(), (t & ~p).sum()
    den = 2 * tp + fp + fn
    return float(2 * tp / den) if den else 0.0


def _rank(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(len(x), float)
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], len(x)]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return ranks


def _binary_auc(t: np.ndarray, s: np.ndarray) -> float:
    pos = t.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = _rank(np.asarray(s, float))
    return float((r[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auc(y_true: Any, probs: Any) -> float:
    """ROC AUC: binary (1-D scores), one-vs-rest macro over classes (``y_true`` indices and an
    (N, classes) matrix) or macro over labels (``y_true`` a 0/1 matrix). A class or label
    whose examples are all positive or all negative has no AUC and is left out of the mean;
    ``nan`` when none has one."""
    y, s = np.asarray(y_true), np.asarray(probs, float)
    if s.ndim == 1:
        return _binary_auc(y.reshape(-1), s)
    if y.ndim == 1:
        y = np.eye(s.shape[1], dtype=np.int64)[y.astype(np.int64)]
    if s.shape[1] == 2 and y.shape[1] == 2 and np.asarray(y_true).ndim == 1:
        return _binary_auc(y[:, 1], s[:, 1])
    values = [_binary_auc(y[:, j], s[:, j]) for j in range(s.shape[1])]
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def log_loss(y_true, probs, eps: float = LOG_LOSS_EPS) -> float:
    """Mean negative log of the probability given to the true class (Keras's sparse
    categorical cross-entropy on probabilities), with that probability clipped to ``[eps, 1]``."""
    y = np.asarray(y_true)
    picked = np.clip(probs[np.arange(len(y)), y], eps, 1.0)
    return float(np.mean(-np.log(picked)))


def binary_log_loss(y_true: Any, probs: Any, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy over every (image, label) (multi-label)."""
    y = np.asarray(y_true, float)
    p = np.clip(np.asarray(probs, float), eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _as_2d(a: Any) -> np.ndarray:
    a = np.asarray(a, float)
    return a.reshape(len(a), -1)


def mae(y_true: Any, y_pred: Any) -> float:
    """Mean absolute error (averaged over targets too)."""
    return float(np.mean(np.abs(_as_2d(y_true) - _as_2d(y_pred))))


def rmse(y_true: Any, y_pred: Any) -> float:
    """Root mean squared error, per target then averaged (scikit-learn's ``uniform_average``)."""
    return float(np.mean(np.sqrt(np.mean((_as_2d(y_true) - _as_2d(y_pred)) ** 2, axis=0))))


def r2(y_true: Any, y_pred: Any) -> float:
    """Coefficient of determination, averaged over targets; a constant target scores 1.0 if
    predicted exactly, else 0.0 (scikit-learn's convention)."""
    t, p = _as_2d(y_true), _as_2d(y_pred)
    ss_res = ((t - p) ** 2).sum(axis=0)
    ss_tot = ((t - t.mean(axis=0)) ** 2).sum(axis=0)
    per = np.where(ss_tot > 0, 1 - _safe_div(ss_res, ss_tot), np.where(ss_res == 0, 1.0, 0.0))
    return float(per.mean())


def tune_thresholds(y_true: Any, probs: Any, default: float = 0.5) -> np.ndarray:
    """Per-label decision thresholds that maximise each label's F1 on validation.

    A label is predicted when its probability is ``>=`` its threshold. The threshold is set
    halfway between the lowest probability kept positive and the next one down (so it
    generalises rather than sitting on one example). A label with no positive example in
    ``y_true`` keeps ``default``. Returns an array of shape (labels,).
    """
    y = np.asarray(y_true).astype(bool)
    p = np.asarray(probs, float)
    if y.ndim == 1:
        y, p = y[:, None], p.reshape(-1, 1)
    out = np.full(p.shape[1], float(default))
    for j in range(p.shape[1]):
        n_pos = int(y[:, j].sum())
        if n_pos == 0:
            continue
        order = np.argsort(-p[:, j], kind="mergesort")
        ps, ts = p[order, j], y[order, j]
        tp = np.cumsum(ts)
        k = np.arange(1, len(ps) + 1)  # predicted positives when cutting after position k-1
        last_of_tie = np.r_[ps[1:] != ps[:-1], True]  # a cut may not split equal probabilities
        f1 = np.where(last_of_tie, 2 * tp / (k + n_pos), -1.0)
        best = int(np.argmax(f1))  # the first (highest threshold) of equal F1s
        out[j] = (ps[best] + ps[best + 1]) / 2.0 if best + 1 < len(ps) else ps[best]
    return out


def score(task: Any, y_true: Any, outputs: Any, objective: str | None = None) -> float:
    """A task's objective from encoded targets and raw model outputs.

    ``task``: a task name or a (fitted) :class:`automl.tasks.Task`. ``y_true``: what
    ``task.encode`` returns (class indices; a 0/1 matrix; standardised values). ``outputs``:
    the model's outputs (probabilities; per-label probabilities; standardised values).
    Regression errors are in the targets' units when ``task`` is fitted (un-standardised);
    multi-label decisions use the task's ``thresholds_`` when fitted, else 0.5. ``objective``
    defaults to the task's default; ``val_`` may be left off.
    """
    from automl.tasks import get_task

    t = get_task(task)
    obj = t.check_objective(
        objective if objective is None or objective.startswith("val_") else f"val_{objective}"
    )
    name = obj.removeprefix("val_")
    if t.name == "classification":
        fn = {
            "accuracy": accuracy,
            "balanced_accuracy": balanced_accuracy,
            "macro_f1": lambda y, p: macro_f1(y, p, np.asarray(p).shape[-1]),
            "auc": auc,
            "loss": log_loss,
        }[name]
        return fn(y_true, outputs)
    if t.name == "multilabel":
        probs = np.asarray(outputs, float)
        if name == "auc":
            return auc(y_true, probs)
        if name == "loss":
            return binary_log_loss(y_true, probs)
        thresholds = t.thresholds_ if t.fitted else 0.5
        pred = (probs >= thresholds).astype(np.int64)
        return (macro_f1 if name == "macro_f1" else micro_f1)(y_true, pred)
    # regression
    y, out = _as_2d(y_true), _as_2d(outputs)
    if name == "loss":
        return float(np.mean((y - out) ** 2))  # the training loss, on the standardised scale
    if t.fitted:
        y, out = y * t.std_ + t.mean_, out * t.std_ + t.mean_
    return {"mae": mae, "rmse": rmse, "r2": r2}[name](y, out)


# --- the ranking rule -----------------------------------------------------------------
def _score(scores: dict[str, Any], key: str, worst: float) -> float:
    v = scores.get(key)
    return worst if v is None or v != v else float(v)  # missing or NaN: the worst value


def direction(objective: str) -> str:
    """``"max"`` or ``"min"``: which way ``objective`` (of any task) gets better.

    Unknown names count as "max" (a score); ``val_loss`` and the regression errors are "min".
    """
    from automl.tasks import TASKS

    for cls in TASKS.values():
        if objective in cls.objectives:
            return cls.objectives[objective]
    return "min" if objective.endswith("loss") else "max"


def objective_names() -> tuple[str, ...]:
    """Every task's objectives (``val_accuracy``, ``val_mae``, ``val_macro_f1``, ...), once."""
    from automl.tasks import TASKS

    return tuple(dict.fromkeys(o for cls in TASKS.values() for o in cls.objectives))


def rank_key(scores: dict[str, Any], objective: str = "val_accuracy") -> tuple[float, float]:
    """The one ranking rule: higher is better; the objective first (in its direction), the
    other validation score breaks ties. A missing, None or NaN score ranks below every real one.

    ``val_accuracy``: accuracy, then lower ``val_loss``; ``val_loss``: loss, then higher
    ``val_accuracy``; any other objective (``val_mae``, ``val_macro_f1``, ...): it, then lower
    ``val_loss``. Every epoch, trial, checkpoint, ensemble candidate and leaderboard row ranks
    with this.
    """
    neg_loss = -_score(scores, "val_loss", float("inf"))
    if objective == "val_loss":
        return (neg_loss, _score(scores, "val_accuracy", float("-inf")))
    if objective == "val_accuracy" or direction(objective) == "max":
        return (_score(scores, objective, float("-inf")), neg_loss)
    return (-_score(scores, objective, float("inf")), neg_loss)


def rank_keys(rows, objective: str = "val_accuracy") -> list[tuple[float, float]]:
    """:func:`rank_key` of each row of DataFrame ``rows`` (its objective and ``val_loss``,
    ``val_accuracy`` columns)."""
    names = dict.fromkeys((objective, "val_accuracy", "val_loss"))
    cols = {k: rows[k].tolist() if k in rows else [None] * len(rows) for k in names}
    return [rank_key({k: cols[k][i] for k in names}, objective) for i in range(len(rows))]


def ranked(rows, objective: str = "val_accuracy") -> list[int]:
    """Row positions of DataFrame ``rows``, best first by :func:`rank_key`; ties keep their order."""
    keys = rank_keys(rows, objective)
    return sorted(range(len(keys)), key=keys.__getitem__, reverse=True)
