"""The data sources people have: tf.data, a DataFrame of image paths, their own validation
split, and TFDS datasets whose official splits stay what they are."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from automl.data import load_data


def test_tf_data_dataset_of_image_label_pairs(tiny_arrays):
    import tensorflow as tf

    x, y = tiny_arrays
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(5)  # batched or not
    b = load_data(ds, seed=0)
    assert b.class_names == ["0", "1", "2"]
    assert len(b.y_train) + len(b.y_val) + len(b.y_test) == 48
    assert b.x_train.shape[1:] == (32, 32, 3) and b.x_train.dtype == np.uint8
    # the same images and labels as the arrays themselves give
    a = load_data((x, y), seed=0)
    assert np.array_equal(a.x_test, b.x_test) and np.array_equal(a.y_test, b.y_test)
    with pytest.raises(Exception, match=r"must yield \(image, label\) pairs"):
        load_data(tf.data.Dataset.from_tensor_slices(x))


def test_dataframe_of_image_paths_and_labels(image_folder, monkeypatch):
    import pandas as pd

    files = sorted(image_folder.rglob("*.png"))
    df = pd.DataFrame({"path": [str(f) for f in files], "label": [f.parent.name for f in files]})
    df.loc[len(df)] = [str(image_folder / "missing.png"), "class_0"]
    b = load_data(df, seed=0, store_size=32)
    assert b.class_names == ["class_0", "class_1", "class_2"]
    assert len(b.y_train) + len(b.y_val) + len(b.y_test) == 48
    assert b.skipped == [str(image_folder / "missing.png")]
    # relative paths are read from the current folder
    monkeypatch.chdir(image_folder)
    rel = pd.DataFrame({"File": [str(f.relative_to(image_folder)) for f in files], "class": 1})
    rel["class"] = [f.parent.name for f in files]
    assert load_data(rel, seed=0, store_size=32).num_classes == 3
    from automl.errors import DataError

    # (issue 18: any other column is a target, read by automl.data.table: none is an error)
    with pytest.raises(DataError, match=r"no target column besides the path column 'path'"):
        load_data(pd.DataFrame({"path": ["a.png"]}))


def test_validation_data_is_the_users_own_split(tiny_arrays):
    from automl.errors import DataError

    x, y = tiny_arrays
    xv, yv = x[:9], y[:9]
    b = load_data((x[9:], y[9:]), validation_data=(xv, yv), seed=0)
    assert np.array_equal(b.x_val, xv) and np.array_equal(b.y_val, yv)
    assert len(b.y_train) + len(b.y_test) == 39 and len(b.y_test) >= 3
    with pytest.raises(DataError, match=r"validation_data has classes the training data lacks: 7"):
        load_data((x, y), validation_data=(xv, np.full(9, 7)))


def _fake_tfds(monkeypatch, splits: dict[str, tuple[np.ndarray, np.ndarray]]):
    """A stand-in for tensorflow_datasets with the given splits (no download)."""
    label = types.SimpleNamespace(names=["cat", "dog", "fox"], num_classes=3)
    info = types.SimpleNamespace(splits={k: None for k in splits}, features={"label": label})
    fake = types.SimpleNamespace(
        builder=lambda name, data_dir=None: types.SimpleNamespace(info=info),
        load=lambda name, split, as_supervised, data_dir=None: [
            list(zip(*splits[s])) for s in split
        ],
        as_numpy=lambda ds: ds,
    )
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)


def _part(n, offset, rng):
    y = np.arange(n) % 3
    x = rng.integers(0, 255, size=(n, 32, 32, 3)).astype(np.uint8)
    x[:, 0, 0, 0] = offset + np.arange(n)  # tells each image's split apart
    return x, y


def test_tfds_keeps_its_own_train_validation_and_test_splits(monkeypatch):
    rng = np.random.default_rng(0)
    train, val, test = _part(30, 0, rng), _part(9, 100, rng), _part(12, 200, rng)
    _fake_tfds(monkeypatch, {"train": train, "validation": val, "test": test})
    b = load_data("tfds:fake", store_size=32)
    assert b.class_names == ["cat", "dog", "fox"]
    assert np.array_equal(b.x_train, train[0]) and np.array_equal(b.x_val, val[0])
    assert np.array_equal(b.x_test, test[0]) and np.array_equal(b.y_test, test[1])


def test_tfds_with_train_and_test_only_keeps_test_out_of_training(monkeypatch):
    rng = np.random.default_rng(1)
    train, test = _part(30, 0, rng), _part(12, 200, rng)
    _fake_tfds(monkeypatch, {"train": train, "test": test})
    b = load_data("tfds:fake", store_size=32, seed=0)
    assert np.array_equal(b.x_test, test[0])  # the official test split, whole
    ids = lambda a: set(a[:, 0, 0, 0].tolist())  # noqa: E731
    assert ids(b.x_train) | ids(b.x_val) == set(range(30))  # validation comes from train
    assert not ids(b.x_val) & ids(b.x_train) and len(b.y_val) >= 3
