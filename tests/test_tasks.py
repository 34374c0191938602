"""automl.tasks (inference, targets' errors, encode/decode, objectives) and automl.imbalance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from automl.errors import DataError, SearchError
from automl.imbalance import class_weights, imbalance_ratio, pos_weights, sample_weights
from automl.tasks import TASKS, get_task, infer_task, resolve_task, split_labels, task_from_config


@pytest.mark.parametrize(
    "y, expected",
    [
        ([3, 1, 2, 1], "classification"),
        (["cat", "dog", "cat"], "classification"),
        (np.array([True, False, True]), "classification"),
        (np.array([1.0, 2.0, 1.0]), "classification"),  # float class ids 1..K
        (np.array([0.0, 2.0, 1.0]), "classification"),  # float class ids 0..K-1
        (np.array([10.0, 20.0, 30.0]), "regression"),  # whole numbers, not codes
        (np.array([0.5, 97.0, 3.25]), "regression"),
        (np.arange(30, dtype=float), "regression"),  # many whole-number floats: a quantity
        (np.random.default_rng(0).random((6, 2)), "regression"),  # two targets
        (np.array([[0, 1, 1], [1, 0, 0]]), "multilabel"),  # one 0/1 column per label
        ([["a", "b"], ["c"], []], "multilabel"),  # lists of labels
        ([{"a"}, {"b", "c"}], "multilabel"),
        (["a;b", "c", ""], "multilabel"),  # Kaggle-style one column
        (["a|b", "c"], "multilabel"),
        (pd.Series([0.5, 1.5, 2.25]), "regression"),
        (np.array([[0.1], [0.2], [0.4]]), "regression"),  # (N, 1) is one target
    ],
)
def test_infer_task(y, expected):
    assert infer_task(y) == expected
    assert resolve_task(y).name == expected


def test_describe_lines():
    assert (
        resolve_task(np.array([0.0, 97.0, 12.5, 40.0])).describe()
        == "task: regression (1 target, range 0.0-97.0)"
    )
    assert (
        resolve_task(np.array([-29.98, 30.0, 1.5])).describe()
        == "task: regression (1 target, range -29.98 to 30.0)"
    )
    y = ["a"] * 8 + ["b"] * 2
    assert (
        resolve_task(y).describe() == "task: classification (2 classes, 10 images, imbalanced 8:2)"
    )
    assert (
        resolve_task(["a;b", "b", "c;a;b", "a"]).describe()
        == "task: multilabel (3 labels, 4 images, 1.8 labels per image)"
    )
    # integer codes with many values stay classes, and the line says how to get a quantity
    assert "pass --task regression" in resolve_task(np.arange(40) % 25).describe()


@pytest.mark.parametrize(
    "y, task, message",
    [
        (["12", "abc", "3"], "regression", r"hold 'abc' \(row 1\), which is not a number"),
        ([3, 3, 3], None, r"one class only \(3\) in 3 rows"),
        ([2.5, 2.5, 2.5], "regression", r"one value only \(2.5\) in 3 rows"),
        ([[], [], []], "multilabel", r"no image has any label \(3 rows"),
        (["", "", ""], "multilabel", r"no image has any label"),
        ([1.0, np.nan, 2.0], None, r"hold NaN at row 1"),
        ([0.5, np.inf, 2.0], "regression", r"hold inf at row 1"),
        (["a", None, "b"], None, r"empty value \(None\) at row 1"),
        ([0.25, 1.5], "classification", r"0.25, which is not a class label; use --task regression"),
        ([["a"], ["b"]], "classification", r"sets of labels, not one class per image"),
        ([["a"], ["b"]], "regression", r"sets of labels, not numbers"),
        (np.array([[0, 2], [1, 0]]), "multilabel", r"multi-label column holds 2"),
        (np.array([["a", "b"], ["c", "d"]]), None, r"2 columns of <U1 values"),
        ([], None, r"there are no targets"),
    ],
)
def test_bad_targets_one_line_error(y, task, message):
    with pytest.raises(DataError, match=message) as info:
        resolve_task(y, task)
    assert "\n" not in str(info.value)


def test_task_override_and_unknown_task():
    # integer codes forced to a quantity, and classes forced to multilabel (one label each)
    assert resolve_task([1, 2, 3, 4], task="regression").name == "regression"
    ml = resolve_task(["a", "b", "a"], task="multi-label")
    assert ml.name == "multilabel" and ml.labels_ == ["a", "b"]
    with pytest.raises(SearchError, match=r"unknown task 'segmentation'; use one of: classif"):
        get_task("segmentation")
    assert set(TASKS) == {"classification", "multilabel", "regression"}


def test_regression_standardise_round_trip():
    y = np.array([10.0, 20.0, 30.0, 60.0])
    task = resolve_task(y)
    enc = task.encode(y)
    assert enc.shape == (4, 1) and enc.dtype == np.float32
    assert abs(enc.mean()) < 1e-6 and abs(enc.std() - 1.0) < 1e-6
    assert task.mean_[0] == 30.0 and task.std_[0] == pytest.approx(np.std(y))
    np.testing.assert_allclose(task.decode(enc), y, rtol=1e-6)
    assert task.decode(enc).shape == (4,)  # given as (N,), decoded as (N,)
    # two targets: per-column statistics, decoded as (N, 2), named columns in the frame
    y2 = np.column_stack([y, -y / 10])
    t2 = resolve_task(y2, "regression")
    np.testing.assert_allclose(t2.decode(t2.encode(y2)), y2, rtol=1e-6)
    frame = (
        get_task("regression")
        .__class__(target_names=["age", "price"])
        .fit(y2)
        .to_frame(t2.encode(y2))
    )
    assert list(frame.columns) == ["age", "price"]
    np.testing.assert_allclose(frame["price"], -y / 10, rtol=1e-6)
    # saved and loaded with the model
    again = task_from_config(task.to_config())
    np.testing.assert_allclose(again.decode(enc), y, rtol=1e-6)
    assert again.describe() == task.describe()


def test_classification_encode_decode():
    y = np.array(["dog", "cat", "dog", "bird"])
    task = resolve_task(y)
    assert task.classes_ == ["bird", "cat", "dog"] and task.units_ == 3
    np.testing.assert_array_equal(task.encode(y), [2, 1, 2, 0])
    probs = np.eye(3)[[2, 1, 2, 0]] * 0.8 + 0.05
    np.testing.assert_array_equal(task.decode(probs), y)
    frame = task.to_frame(probs)
    assert list(frame.columns) == ["label", "prob_bird", "prob_cat", "prob_dog"]
    with pytest.raises(DataError, match=r"class 'fish' was not among the training classes"):
        task.encode(["fish"])
    again = task_from_config(task.to_config())
    np.testing.assert_array_equal(again.encode(y), task.encode(y))
    assert (task.activation, task.loss) == ("softmax", "sparse_categorical_crossentropy")


def test_multilabel_both_layouts_and_thresholds():
    sets = ["cat;dog", "car", "", "dog|car"]
    task = resolve_task(sets)
    assert task.labels_ == ["car", "cat", "dog"]
    matrix = task.encode(sets)
    np.testing.assert_array_equal(matrix, [[0, 1, 1], [1, 0, 0], [0, 0, 0], [1, 0, 1]])
    # the same targets as one 0/1 column per label, with names
    from automl.tasks import MultiLabel

    t2 = MultiLabel(labels=["car", "cat", "dog"]).fit(matrix.astype(int))
    np.testing.assert_array_equal(t2.encode(matrix.astype(int)), matrix)
    probs = np.array([[0.1, 0.6, 0.45], [0.9, 0.2, 0.1], [0.3, 0.3, 0.3], [0.7, 0.1, 0.8]])
    assert task.decode(probs) == [["cat"], ["car"], [], ["car", "dog"]]
    task.set_thresholds([0.5, 0.5, 0.4])
    assert task.decode(probs)[0] == ["cat", "dog"]
    again = task_from_config(task.to_config())
    np.testing.assert_array_equal(again.thresholds_, [0.5, 0.5, 0.4])
    assert list(again.to_frame(probs).columns) == ["labels", "prob_car", "prob_cat", "prob_dog"]
    assert again.to_frame(probs)["labels"][0] == "cat;dog"
    with pytest.raises(SearchError, match=r"do not fit 3 labels; pass one value in \[0, 1\]"):
        task.set_thresholds([0.5, 2.0, 0.5])
    with pytest.raises(DataError, match=r"label 'bus' \(row 0\) was not among the training"):
        task.encode(["bus"])
    assert split_labels(" a ; b|a ") == ["a", "b"] and split_labels(float("nan")) == []


def test_objectives_and_directions():
    cls, ml, reg = get_task("classification"), get_task("multilabel"), get_task("regression")
    assert cls.default_objective == "val_accuracy" and cls.direction("val_loss") == "min"
    assert ml.default_objective == "val_macro_f1" and ml.direction("val_auc") == "max"
    assert reg.default_objective == "val_mae" and reg.direction("val_r2") == "max"
    assert reg.direction("val_rmse") == "min" and reg.ensemble_average == "values"
    assert set(cls.objectives) >= {"val_balanced_accuracy", "val_macro_f1", "val_auc"}
    with pytest.raises(SearchError, match=r"objective 'val_mae' does not apply to classification"):
        cls.check_objective("val_mae")
    with pytest.raises(SearchError, match=r"not fitted; call fit\(y\)"):
        reg.encode([1.0, 2.0])


def test_imbalance_weights():
    y = np.array([0] * 8 + [1] * 2)
    assert imbalance_ratio(y) == 4.0
    assert class_weights(y) == {0: 10 / (2 * 8), 1: 10 / (2 * 2)}  # sklearn's "balanced"
    w = sample_weights(y)
    assert w[0] * 8 == pytest.approx(w[-1] * 2)  # each class weighs the same in total
    assert w.mean() == pytest.approx(1.0)
    labels = np.array([[1, 0], [1, 0], [1, 1], [1, 0], [0, 0]])
    assert imbalance_ratio(labels) == 4.0  # label counts 4 and 1
    np.testing.assert_allclose(pos_weights(labels), [1 / 4, 4 / 1])
    assert sample_weights(labels)[2] > sample_weights(labels)[0]
    with pytest.raises(DataError, match=r"class weights need class indices \(integers\), got <U"):
        class_weights(np.array(["a", "b"]))


def test_head_learns_a_regression_target():
    """The task's head and loss on a tiny model: 64 samples, y = a linear mix of 4 inputs."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = 40.0 + 15.0 * (x @ np.array([1.0, -0.5, 0.3, 0.8]))
    task = resolve_task(y)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, task.head()(keras.layers.Dense(16, activation="relu")(inputs)))
    model.compile(keras.optimizers.Adam(0.02), loss=task.keras_loss())
    model.fit(x, task.encode(y), epochs=25, batch_size=32, verbose=0)
    pred = task.decode(model.predict(x, verbose=0))
    baseline = np.abs(y - y.mean()).mean()
    assert np.abs(pred - y).mean() < 0.2 * baseline


def test_task_metrics_callback_logs_the_objectives():
    """Each epoch's logs get the task's objectives Keras lacks, equal to metrics.score."""
    import keras

    from automl.metrics import score
    from automl.task_metrics import TaskMetrics

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(48, 3)).astype("float32")
    y = (x[:, :2] > 0).astype(int)  # two labels
    task = resolve_task(y)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, task.head()(inputs))
    model.compile("adam", loss=task.keras_loss())
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(dict(logs))

    cb = TaskMetrics(task, x[32:], task.encode(y[32:]))
    model.fit(x[:32], task.encode(y[:32]), validation_data=(x[32:], task.encode(y[32:])),
              epochs=2, verbose=0, callbacks=[cb, Record()])  # fmt: skip
    assert set(seen[-1]) >= {"val_loss", "val_macro_f1", "val_micro_f1", "val_auc"}
    probs = model.predict(x[32:], verbose=0)
    assert seen[-1]["val_auc"] == pytest.approx(score(task, y[32:], probs, "val_auc"))
    assert seen[-1]["val_macro_f1"] == pytest.approx(score(task, y[32:], probs))
