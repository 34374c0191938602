"""Data loading: every source becomes one :class:`DataBundle`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from automl.data.bundle import DataBundle, resize_batch, split
from automl.data.images import IN_MEMORY_MAX_BYTES, ArrayImages, ImageView, as_view  # noqa: F401
from automl.data.sources import (
    TFDS_VALIDATION,
    load_arrays,
    load_demo,
    store_arrays,
    store_dataframe,
    store_folder,
    store_tf_dataset,
    store_tfds_splits,
)
from automl.errors import DataError

__all__ = ["ArrayImages", "DataBundle", "ImageView", "describe_source", "load_data"]


def _is_tf_dataset(data: Any) -> bool:
    return type(data).__module__.startswith("tensorflow") and hasattr(data, "element_spec")


def _is_dataframe(data: Any) -> bool:
    return hasattr(data, "columns") and hasattr(data, "iloc")


def describe_source(data: Any) -> str:
    """A short human-readable name of a data argument."""
    if isinstance(data, (tuple, list)):
        return "arrays"
    if _is_tf_dataset(data):
        return "tf.data.Dataset"
    if _is_dataframe(data):
        return "DataFrame"
    return str(data)


def _load(data: Any, store_size: int, strict_images: bool, cache_dir=None, progress=None):
    """``(x, y, class_names, skipped, name, source)`` of any source but TFDS; ``x`` is an
    :class:`ImageView` of all the images (of a store on disk, or of an array)."""
    cache_dir = _cache(cache_dir)
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise DataError(f"arrays data must be a pair (x, y), got a sequence of {len(data)}")
        xa = np.asarray(data[0])
        shape = f"numpy arrays x{tuple(xa.shape)}"
        if xa.ndim in (3, 4) and len(xa) and _rgb_bytes(xa) > IN_MEMORY_MAX_BYTES:
            x, y, names = store_arrays(xa, data[1], cache_dir, store_size, progress=progress)
            return x, y, names, [], "arrays", shape
        x, y, names, skipped = load_arrays(xa, data[1], store_size=None)
        return as_view(x), y, names, skipped, "arrays", f"numpy arrays x{tuple(x.shape)}"
    if _is_tf_dataset(data):
        x, y, names, skipped = store_tf_dataset(data, store_size, cache_dir, progress=progress)
        return x, y, names, skipped, "tf.data", f"tf.data.Dataset of {len(y)} images"
    if _is_dataframe(data):
        x, y, names, skipped = store_dataframe(
            data, store_size, cache_dir, strict=strict_images, progress=progress
        )
        return x, y, names, skipped, "dataframe", f"DataFrame of {len(y)} image paths"
    if str(data) == "demo":
        x, y, names, skipped = load_demo()
        return as_view(x), y, names, skipped, "demo", "sklearn.datasets.load_digits"
    x, y, names, skipped = store_folder(
        data, store_size, cache_dir, strict=strict_images, progress=progress
    )
    return x, y, names, skipped, Path(data).name or str(data), str(Path(data).resolve())


def _cache(cache_dir):
    from automl.data.store import default_cache_dir

    return cache_dir if cache_dir is not None else default_cache_dir()


def _rgb_bytes(x: np.ndarray) -> int:
    """Bytes of ``x`` as uint8 RGB images."""
    return int(len(x)) * int(x.shape[1]) * int(x.shape[2]) * 3


def _carve(x, y, fraction: float, n_classes: int, seed: int, what: str, source: str):
    """Split a stratified, seeded ``fraction`` off ``(x, y)``: ``(rest, part)`` index arrays."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y, minlength=n_classes)
    if counts.min() < 2:
        raise DataError(
            f"a class of {source!r} has {int(counts.min())} image(s) in the split that {what} "
            "comes from; it needs at least 2 per class: add images"
        )
    n_part = max(int(round(len(y) * fraction)), n_classes)
    if len(y) - n_part < n_classes:
        raise DataError(f"{source!r} has too few images ({len(y)}) to split off {what}")
    return train_test_split(np.arange(len(y)), test_size=n_part, stratify=y, random_state=seed)


def _bundle(name, source, names, train, val, test, skipped=()) -> DataBundle:
    if len(names) < 2:
        raise DataError(f"data {source!r} has a single class; a classifier needs at least 2")
    for split_name, (_, y) in (("train", train), ("validation", val), ("test", test)):
        if len(y) == 0:
            raise DataError(f"the {split_name} split of {source!r} is empty")
    return DataBundle(
        name=name,
        source=source,
        class_names=list(names),
        x_train=train[0],
        y_train=np.asarray(train[1], np.int64),
        x_val=val[0],
        y_val=np.asarray(val[1], np.int64),
        x_test=test[0],
        y_test=np.asarray(test[1], np.int64),
        skipped=list(skipped),
    )


def _as_classes(x, y, names_of_y, names, size, what: str):
    """Labels of another source (``names_of_y``) as indices into ``names``; images at ``size``."""
    index = {str(n): i for i, n in enumerate(names)}
    unknown = sorted({str(names_of_y[i]) for i in set(np.asarray(y).tolist())} - set(index))
    if unknown:
        raise DataError(
            f"{what} has classes the training data lacks: {', '.join(unknown[:5])}; "
            f"its classes must be among: {', '.join(map(str, names))}"
        )
    if x.shape[1:3] != (size, size):
        x = resize_batch(x[:], size)
    return x, np.array([index[str(names_of_y[i])] for i in np.asarray(y).tolist()], np.int64)


def _tfds(parts, names, tname, seed, val_fraction, test_fraction, user_val):
    """A TFDS dataset with its own splits kept: train / validation / test where it has them
    (the official test split never reaches training); a missing one is split off train."""
    source = f"tfds:{tname}"
    val_name = next((v for v in TFDS_VALIDATION if v in parts), None)
    if "test" not in parts and val_name is None and user_val is None:
        # Only a train split (or unnamed ones): pool and split as any other source.
        if len(parts) == 1:
            x, y = next(iter(parts.values()))
        else:  # several unnamed splits (small datasets): one array
            x = np.concatenate([p[0][:] for p in parts.values()])
            y = np.concatenate([p[1] for p in parts.values()])
        return split(
            x, y, names, name=tname, source=source, seed=seed,
            val_fraction=val_fraction, test_fraction=test_fraction,
        )  # fmt: skip
    others = [k for k in parts if k not in ("test", val_name)]
    if "train" not in parts and not others:
        raise DataError(f"TFDS dataset {tname!r} has no training split (splits: {list(parts)})")
    train = parts["train"] if "train" in parts else parts[others[0]]
    n_classes = len(names)
    if "test" in parts:
        test = parts["test"]
    else:
        rest, part = _carve(*train, test_fraction, n_classes, seed, "a test split", source)
        train, test = (train[0].take(rest), train[1][rest]), (train[0].take(part), train[1][part])
    if user_val is not None:
        val = user_val
    elif val_name is not None:
        val = parts[val_name]
    else:
        rest, part = _carve(*train, val_fraction, n_classes, seed + 1, "a validation split", source)
        train, val = (train[0].take(rest), train[1][rest]), (train[0].take(part), train[1][part])
    return _bundle(tname, source, names, train, val, test)


def load_data(
    data: Any = "demo",
    *,
    seed: int = 0,
    store_size: int = 128,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    strict_images: bool = False,
    validation_data: Any = None,
    cache_dir: str | Path | None = None,
    progress=None,
) -> DataBundle:
    """Load ``data`` and split it into train / validation / test.

    ``data`` is ``"demo"``, a folder with one sub-folder of images per class, ``"tfds:NAME"``
    (the dataset's own train/validation/test splits are kept where it has them), an
    ``(x, y)`` pair of NumPy arrays, a ``tf.data.Dataset`` of ``(image, label)`` pairs, or a
    pandas DataFrame with an image-path column and a label column.

    ``validation_data`` (any of the same kinds but TFDS): your own validation split;
    ``data`` then gives train and test only.

    A folder or DataFrame of image files (and NumPy images over
    :data:`automl.data.images.IN_MEMORY_MAX_BYTES`) is decoded once into an image store
    under ``cache_dir`` (default: ``mlruns/stores``, see :mod:`automl.data.store`) and
    reused while its files are unchanged; the splits are index views of it.
    ``progress``: an :class:`automl.progress.Progress` that shows the decoding.
    """
    if isinstance(data, DataBundle):
        return data
    from automl.data.store import undone_on_error

    cache_dir = _cache(cache_dir)
    with undone_on_error(cache_dir):  # refused data leaves no store behind
        return _load_data(
            data, seed, store_size, val_fraction, test_fraction, strict_images,
            validation_data, cache_dir, progress,
        )  # fmt: skip


def _load_data(
    data, seed, store_size, val_fraction, test_fraction, strict_images, validation_data,
    cache_dir, progress,
) -> DataBundle:  # fmt: skip
    user_val = None
    if validation_data is not None:
        vx, vy, vnames, _, _, _ = _load(
            validation_data, store_size, strict_images, cache_dir, progress
        )
        user_val = (vx, vy, vnames)
    if isinstance(data, str) and data.startswith("tfds:"):
        parts, names = store_tfds_splits(data[5:], store_size, _cache(cache_dir), progress)
        val = None
        if user_val is not None:
            size = next(iter(parts.values()))[0].shape[1]
            val = _as_classes(*user_val, names, size, "validation_data")
        return _tfds(parts, names, data[5:], seed, val_fraction, test_fraction, val)
    x, y, names, skipped, name, source = _load(data, store_size, strict_images, cache_dir, progress)
    if user_val is None:
        return split(
            x,
            y,
            names,
            name=name,
            source=source,
            seed=seed,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            skipped=skipped,
        )
    val = _as_classes(*user_val, names, x.shape[1], "validation_data")
    rest, test = _carve(x, y, test_fraction, len(names), seed, "a test split", source)
    return _bundle(
        name,
        source + " (own validation split)",
        names,
        (x.take(rest), y[rest]),
        val,
        (x.take(test), y[test]),
        skipped,
    )
