"""Each data source becomes the same bundle: demo, folder, TFDS (mocked), NumPy arrays."""

import numpy as np
import pytest
from PIL import Image

from automl.data import load_data
from automl.errors import DataError


def test_demo_is_real_digits_split_stratified_and_seeded():
    a = load_data("demo", seed=3)
    b = load_data("demo", seed=3)
    assert a.class_names == [str(i) for i in range(10)]
    assert a.x_train.dtype == np.uint8 and a.x_train.shape[1:] == (32, 32, 3)
    assert len(a.y_train) + len(a.y_val) + len(a.y_test) == 1797
    np.testing.assert_array_equal(a.y_val, b.y_val)  # same seed, same split
    assert a.digest() == b.digest()
    counts = np.bincount(a.y_test, minlength=10)
    assert counts.min() >= 24  # stratified: every class in the test split
    assert load_data("demo", seed=4).digest() != a.digest()


def test_folder_classes_from_subfolders_and_modes(image_folder):
    # Mixed modes in one class folder: grayscale, RGBA, palette, 16-bit, tiny.
    d = image_folder / "class_0"
    Image.fromarray(np.full((20, 20), 128, np.uint8)).save(d / "gray.png")
    Image.fromarray(np.full((40, 40, 4), 200, np.uint8)).save(d / "rgba.png")
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).convert("P").save(d / "palette.png")
    Image.fromarray(np.full((40, 40), 40000, np.uint16)).save(d / "deep.png")
    bundle = load_data(image_folder, store_size=48)
    assert bundle.class_names == ["class_0", "class_1", "class_2"]
    assert bundle.x_train.shape[1:] == (48, 48, 3)
    assert len(bundle.y_train) + len(bundle.y_val) + len(bundle.y_test) == 48 + 4


def test_tfds_source_with_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=100):
        bundle = load_data("tfds:mnist", store_size=32)
    assert bundle.num_classes == 10 and bundle.class_names[0] == "0"
    assert bundle.x_train.shape[1:] == (32, 32, 3)
    assert bundle.source == "tfds:mnist"


def test_arrays_with_string_labels_and_grayscale():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (30, 16, 16), dtype=np.uint8)
    y = np.array(["cat", "dog", "owl"] * 10)
    bundle = load_data((x, y))
    assert bundle.class_names == ["cat", "dog", "owl"]
    assert bundle.x_train.shape[1:] == (16, 16, 3)


def test_arrays_errors():
    x = np.zeros((10, 8, 8, 3), np.uint8)
    with pytest.raises(DataError, match=r"x has 10 images but y has 9 labels"):
        load_data((x, np.zeros(9)))
    with pytest.raises(DataError, match=r"the target 'value' has one value only \(0.5\)"):
        load_data((x, np.full(10, 0.5)))
    with pytest.raises(DataError, match=r"has a single class \(0\)"):
        load_data((x, np.zeros(10, int)))
    with pytest.raises(
        DataError,
        match=r"class '1' in .* has 2 image\(s\); the train/val/test split needs at least 3",
    ):
        load_data((x, np.array([0] * 8 + [1] * 2)))


def test_missing_path():
    with pytest.raises(DataError, match=r"data path 'no/such/dir' does not exist"):
        load_data("no/such/dir")
