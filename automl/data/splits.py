"""Seeded train / validation / test index splits for every task, stratified.

:func:`strata` gives each image a stratum the split keeps in proportion: its class
(classification), its rarest label (multi-label: so a rare tag reaches validation and test),
or its quantile bin of the (first) target (regression: so each split covers the range).
:func:`task_split` returns index arrays (never copies of the images), the way
:func:`automl.data.bundle.split` splits classification data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from automl.errors import DataError

__all__ = ["strata", "task_split"]

REGRESSION_BINS = 5


def strata(targets: Any, task: str) -> np.ndarray:
    """One stratum id per image (int64) for ``targets`` as the task encodes them (class
    indices; a 0/1 matrix; values (N,) or (N, k))."""
    y = np.asarray(targets)
    if task == "classification":
        return np.unique(y.reshape(-1), return_inverse=True)[1].astype(np.int64)
    if task == "multilabel":
        m = y.astype(bool)
        freq = m.sum(axis=0)
        # the rarest label each image has; images with none share one stratum (-1 -> 0)
        rank = np.where(m, freq[None, :], np.iinfo(np.int64).max)
        rarest = np.where(m.any(axis=1), np.argmin(rank, axis=1), -1)
        return np.unique(rarest, return_inverse=True)[1].astype(np.int64)
    if task == "regression":
        v = y.reshape(len(y), -1)[:, 0].astype(np.float64)
        edges = np.quantile(v, np.linspace(0, 1, REGRESSION_BINS + 1)[1:-1])
        return np.unique(np.searchsorted(edges, v, side="right"), return_inverse=True)[1]
    raise DataError(f"unknown task {task!r}; expected classification, multilabel or regression")


def _merge_small(s: np.ndarray, need: int) -> np.ndarray:
    """Strata with fewer than ``need`` images joined into one (train_test_split needs 2+)."""
    counts = np.bincount(s)
    small = counts[s] < need
    if not small.any():
        return s
    out = s.copy()
    out[small] = counts.argmax() if small.all() else -1
    return np.unique(out, return_inverse=True)[1]


def task_split(
    targets: Any,
    task: str,
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) index arrays, sorted, stratified by :func:`strata`, seeded."""
    n = len(np.asarray(targets))
    n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
    if n - n_test - n_val < 1 or n_test < 1 or n_val < 1:
        raise DataError(
            f"{n} images are too few for a train/validation/test split "
            f"({val_fraction:.0%} / {test_fraction:.0%}); add images"
        )
    s = strata(targets, task)
    rest, test = _split(np.arange(n), n_test, _merge_small(s, 3), seed)
    train, val = _split(rest, n_val, _merge_small(s[rest], 2), seed)
    return np.sort(train), np.sort(val), np.sort(test)


def _split(idx: np.ndarray, size: int, s: np.ndarray, seed: int):
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(idx, test_size=size, random_state=seed, stratify=s)
    except ValueError:  # fewer images in the split than strata: a plain seeded split
        return train_test_split(idx, test_size=size, random_state=seed)
