"""automl.data.splits: seeded, stratified train/val/test indices for every task."""

from __future__ import annotations

import numpy as np
import pytest

from automl.data.splits import strata, task_split
from automl.errors import DataError


def _check(parts, n):
    train, val, test = parts
    together = np.concatenate(parts)
    assert len(together) == n and len(np.unique(together)) == n  # a partition
    assert len(test) == round(0.15 * n) and len(val) == round(0.15 * n)


def test_regression_split_covers_the_range():
    y = np.arange(200, dtype=float)
    parts = task_split(y, "regression", seed=0)
    _check(parts, 200)
    # stratified by quintile: each split has 1/5 of its images in each fifth of the range
    for part in parts:
        counts = np.bincount((y[part] // 40).astype(int), minlength=5)
        assert counts.max() - counts.min() <= 1
    again = task_split(y, "regression", seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    assert not np.array_equal(task_split(y, "regression", seed=1)[2], parts[2])


def test_multilabel_rare_label_reaches_every_split():
    y = np.zeros((100, 3), int)
    y[:, 0] = 1
    y[::10, 2] = 1  # a rare label on 10 images
    np.testing.assert_array_equal(strata(y, "multilabel")[:2], [1, 0])  # rarest label first
    for part in task_split(y, "multilabel", seed=0):
        assert y[part, 2].sum() >= 1


def test_classification_and_too_few():
    y = np.array([0] * 40 + [1] * 20)
    train, val, test = task_split(y, "classification")
    assert np.bincount(y[test]).tolist() == [6, 3]
    with pytest.raises(DataError, match=r"3 images are too few for a train/validation/test split"):
        task_split(np.array([1.0, 2.0, 3.0]), "regression")
    with pytest.raises(DataError, match=r"unknown task 'ranking'"):
        strata(y, "ranking")
