"""automl.metrics: hand-computed values, agreement with scikit-learn, threshold tuning, score()."""

from __future__ import annotations

import math

import numpy as np
import pytest

from automl import metrics as m
from automl.errors import SearchError
from automl.tasks import resolve_task

Y = np.array([0, 1, 2, 2])
PRED = np.array([0, 2, 2, 2])


def test_classification_by_hand():
    assert m.accuracy(Y, PRED) == 0.75
    assert m.accuracy(Y, np.eye(3)[PRED] * 0.9) == 0.75  # probabilities: argmax
    assert m.balanced_accuracy(Y, PRED) == pytest.approx(2 / 3)  # recalls 1, 0, 1
    assert m.macro_f1(Y, PRED) == pytest.approx((1.0 + 0.0 + 0.8) / 3)  # F1 of class 2: 4/5
    precision, recall, support = m.per_class_precision_recall(Y, PRED)
    np.testing.assert_allclose(precision, [1.0, 0.0, 2 / 3])
    np.testing.assert_allclose(recall, [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(support, [1, 1, 2])
    probs = np.array([[0.8, 0.2], [0.5, 0.5]])
    assert m.log_loss([0, 1], probs) == pytest.approx(-(math.log(0.8) + math.log(0.5)) / 2)


def test_auc_by_hand():
    assert m.auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75  # 3 of 4 pairs ordered
    assert m.auc([0, 1], [0.5, 0.5]) == 0.5  # a tie counts half
    # per label; the second label has no positive, so it has no AUC and is left out
    labels = np.array([[1, 0], [0, 0], [1, 0]])
    assert m.auc(labels, np.array([[0.9, 0.1], [0.2, 0.3], [0.1, 0.2]])) == 0.5
    assert math.isnan(m.auc([1, 1], [0.2, 0.7]))


def test_multilabel_f1_by_hand():
    y = np.array([[1, 0], [1, 0], [1, 1]])
    pred = np.array([[1, 0], [1, 1], [0, 0]])
    assert m.macro_f1(y, pred) == pytest.approx((0.8 + 0.0) / 2)  # label 0: 2tp 1fn; 1: 1fp 1fn
    assert m.micro_f1(y, pred) == pytest.approx(4 / 7)  # tp 2, fp 1, fn 2
    precision, recall, support = m.per_class_precision_recall(y, pred)
    np.testing.assert_allclose(precision, [1.0, 0.0])
    np.testing.assert_allclose(recall, [2 / 3, 0.0])
    np.testing.assert_array_equal(support, [3, 1])


def test_regression_by_hand():
    t, p = [1.0, 2.0, 3.0], [2.0, 2.0, 5.0]
    assert m.mae(t, p) == 1.0
    assert m.rmse(t, p) == pytest.approx(math.sqrt(5 / 3))
    assert m.r2(t, p) == pytest.approx(1 - 5 / 2)
    assert m.r2([3.0, 3.0], [3.0, 3.0]) == 1.0 and m.r2([3.0, 3.0], [3.0, 4.0]) == 0.0


def test_agrees_with_scikit_learn():
    from sklearn import metrics as sk

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 60)
    p = rng.random((60, 4))
    p /= p.sum(axis=1, keepdims=True)
    assert m.balanced_accuracy(y, p) == pytest.approx(sk.balanced_accuracy_score(y, p.argmax(1)))
    assert m.macro_f1(y, p) == pytest.approx(sk.f1_score(y, p.argmax(1), average="macro"))
    assert m.auc(y, p) == pytest.approx(sk.roc_auc_score(y, p, multi_class="ovr"))
    assert m.log_loss(y, p) == pytest.approx(sk.log_loss(y, p))
    labels, scores = rng.integers(0, 2, (60, 5)), rng.random((60, 5))
    assert m.macro_f1(labels, scores > 0.5) == pytest.approx(
        sk.f1_score(labels, scores > 0.5, average="macro")
    )
    assert m.micro_f1(labels, scores > 0.5) == pytest.approx(
        sk.f1_score(labels, scores > 0.5, average="micro")
    )
    assert m.auc(labels, scores) == pytest.approx(sk.roc_auc_score(labels, scores))
    a, b = rng.random((30, 2)), rng.random((30, 2))
    assert m.r2(a, b) == pytest.approx(sk.r2_score(a, b))
    assert m.rmse(a, b) == pytest.approx(sk.root_mean_squared_error(a, b))


def test_tuned_thresholds_beat_one_half():
    y = np.array([[1, 0], [1, 0], [0, 0], [0, 1]])
    # label 0: positives score low (0.3, 0.25) but above the negatives; label 1: every score
    # is over 0.5, the one positive highest
    probs = np.array([[0.3, 0.6], [0.25, 0.55], [0.1, 0.7], [0.05, 0.9]])
    t = m.tune_thresholds(y, probs)
    np.testing.assert_allclose(t, [(0.25 + 0.1) / 2, (0.9 + 0.7) / 2])
    assert m.macro_f1(y, probs >= t) == 1.0
    assert m.macro_f1(y, probs >= 0.5) == pytest.approx((0.0 + 2 / 5) / 2)
    # a label with no positive keeps the default; equal scores are never split
    assert m.tune_thresholds(np.array([[0], [0]]), np.array([[0.9], [0.2]]))[0] == 0.5
    assert m.tune_thresholds(np.array([[1], [0]]), np.array([[0.5], [0.5]]))[0] == 0.5


def test_score_per_task():
    reg = resolve_task(np.array([0.0, 10.0, 20.0, 30.0]))
    enc = reg.encode([0.0, 10.0, 20.0, 30.0])
    off = enc + 1.0 / reg.std_  # one unit too high, in the targets' units
    assert m.score(reg, enc, off) == pytest.approx(1.0)  # val_mae, un-standardised
    assert m.score(reg, enc, off, "rmse") == pytest.approx(1.0)
    assert m.score("regression", enc, off, "val_mae") == pytest.approx(1.0 / reg.std_[0])
    cls = resolve_task(["a", "b", "c", "c"])
    probs = np.eye(3)[PRED]
    assert m.score(cls, cls.encode(["a", "b", "c", "c"]), probs) == 0.75
    assert m.score(cls, Y, probs, "val_balanced_accuracy") == pytest.approx(2 / 3)
    ml = resolve_task(np.array([[1, 0], [1, 0], [0, 0], [0, 1]]))
    y = ml.encode(np.array([[1, 0], [1, 0], [0, 0], [0, 1]]))
    probs = np.array([[0.3, 0.6], [0.25, 0.55], [0.1, 0.7], [0.05, 0.9]])
    before = m.score(ml, y, probs)  # 0.5 thresholds
    ml.set_thresholds(m.tune_thresholds(y, probs))
    assert before == pytest.approx(0.2) and m.score(ml, y, probs) == 1.0
    with pytest.raises(SearchError, match=r"objective 'val_r2' does not apply to multilabel"):
        m.score(ml, y, probs, "val_r2")
