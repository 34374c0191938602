"""Class imbalance: how uneven the targets are, and the weights that even them out.

* :func:`imbalance_ratio`: largest class (or label) count over the smallest; the data-aware
  default space turns weighting on above :data:`WEIGHTS_ABOVE` (3x).
* :func:`class_weights`: scikit-learn's ``compute_class_weight("balanced")`` for class
  indices, ``n / (classes * count)``, as the ``{index: weight}`` dict Keras ``fit`` takes.
* :func:`pos_weights`: per-label positive weights for multi-label, ``negatives / positives``
  (as in a weighted binary cross-entropy), capped.
* :func:`sample_weights`: one weight per image from either, for a tf.data pipeline or
  ``fit(sample_weight=...)`` (Keras ``class_weight`` does not take multi-label targets).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from automl.errors import DataError

__all__ = ["WEIGHTS_ABOVE", "class_weights", "imbalance_ratio", "pos_weights", "sample_weights"]

# The data-aware default space searches class weights when the imbalance ratio is above this.
WEIGHTS_ABOVE = 3.0
# The largest positive weight of a rare label (a label seen once in 10,000 images would
# otherwise weigh 10,000x and swamp the loss).
MAX_POS_WEIGHT = 100.0


def _counts(y: Any, n_classes: int | None = None) -> np.ndarray:
    """Images per class (1-D class indices) or per label (a 0/1 matrix)."""
    a = np.asarray(y)
    if a.ndim == 2 and a.shape[1] > 1:
        return a.astype(bool).sum(axis=0)
    a = a.reshape(-1)
    if a.dtype.kind not in "iub":
        raise DataError(
            f"class weights need class indices (integers), got {a.dtype} targets; encode them "
            "with the task first (task.encode(y))"
        )
    return np.bincount(a.astype(np.int64), minlength=n_classes or 0)


def imbalance_ratio(y: Any, n_classes: int | None = None) -> float:
    """Largest over smallest count among the classes (or labels) that occur: 1.0 when even.

    ``y``: class indices, or a 0/1 label matrix (then label frequencies are compared).
    """
    c = _counts(y, n_classes)
    c = c[c > 0]
    return float(c.max() / c.min()) if len(c) else 1.0


def class_weights(y: Any, n_classes: int | None = None) -> dict[int, float]:
    """``{class index: n / (classes * count)}`` (scikit-learn's "balanced"); a class with no
    image gets weight 1.0."""
    c = _counts(y, n_classes)
    if c.ndim != 1 or np.asarray(y).ndim == 2 and np.asarray(y).shape[1] > 1:
        raise DataError("class_weights takes class indices; use pos_weights for multi-label")
    present = c > 0
    n, k = c.sum(), int(present.sum())
    w = np.ones(len(c))
    w[present] = n / (k * c[present])
    return {i: float(v) for i, v in enumerate(w)}


def pos_weights(y: Any, cap: float = MAX_POS_WEIGHT) -> np.ndarray:
    """Per-label weight of a positive example, ``negatives / positives`` capped at ``cap``
    (1.0 for a label with no positive)."""
    a = np.asarray(y).astype(bool)
    if a.ndim != 2:
        raise DataError(f"pos_weights takes a 0/1 label matrix (N, labels), got shape {a.shape}")
    pos = a.sum(axis=0)
    neg = len(a) - pos
    w = np.divide(neg, pos, out=np.ones(a.shape[1]), where=pos > 0)
    return np.clip(w, 1.0 / cap, cap)


def sample_weights(y: Any, n_classes: int | None = None) -> np.ndarray:
    """One weight per image, float32, mean 1: its class's weight (class indices), or for a 0/1
    label matrix the mean of its labels' positive weights over the labels it has (1.0 for an
    image with none)."""
    a = np.asarray(y)
    if a.ndim == 2 and a.shape[1] > 1:
        pw = pos_weights(a)
        has = a.astype(bool)
        n_lab = has.sum(axis=1)
        w = np.divide((has * pw).sum(axis=1), n_lab, out=np.ones(len(a)), where=n_lab > 0)
    else:
        cw = class_weights(a, n_classes)
        w = np.asarray([cw[i] for i in range(len(cw))])[a.reshape(-1).astype(np.int64)]
    return (w / w.mean()).astype(np.float32)
