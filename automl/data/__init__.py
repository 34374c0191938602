"""Data loading: every source becomes one :class:`DataBundle`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from automl.data.bundle import DataBundle, of_splits, resize_batch, split
from automl.data.images import IN_MEMORY_MAX_BYTES, ArrayImages, ImageView, as_view  # noqa: F401
from automl.data.sources import (
    TFDS_VALIDATION,
    array_images,
    load_arrays,
    load_demo,
    store_arrays,
    store_dataframe,
    store_folder,
    store_table,
    store_tf_dataset,
    store_tfds_splits,
)
from automl.errors import DataError, quoted
from automl.tasks import Classification, get_task, infer_task

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


# --- which route a source takes: today's classification loaders, or targets of any task ---
ROUTE_TABLE, ROUTE_ARRAYS = "table", "arrays"


def _route(data: Any, task, label_column, path_column) -> str | None:
    """``"table"`` (a CSV, or a DataFrame that is not today's path + class label frame),
    ``"arrays"`` (``(x, y)`` whose targets are not classes) or None (today's loaders)."""
    from automl.data.table import is_table_path

    forced = None if task is None else get_task(task).name
    if is_table_path(data):
        return ROUTE_TABLE
    if _is_dataframe(data):
        if forced not in (None, "classification") or label_column or path_column:
            return ROUTE_TABLE
        if not _legacy_frame(data):
            return ROUTE_TABLE
        return None
    if label_column or path_column:
        flag = "--label-column" if label_column else "--path-column"
        raise DataError(
            f"{flag} names a column of a CSV or DataFrame, but the data is "
            f"{quoted(describe_source(data))}; leave it out, or pass --data labels.csv"
        )
    if isinstance(data, (tuple, list)) and len(data) == 2:
        kind = forced or infer_task(data[1])
        return ROUTE_ARRAYS if kind != "classification" else None
    if forced not in (None, "classification"):
        what = "a TFDS dataset" if str(data).startswith("tfds:") else describe_source(data)
        raise DataError(
            f"{quoted(what)} holds one class per image; --task {forced} needs targets: pass a "
            "CSV of image paths and targets (--data labels.csv), a DataFrame or (x, y) arrays"
        )
    return None


def _legacy_frame(df) -> bool:
    """A DataFrame with the columns :func:`store_dataframe` reads and class labels in them
    (loaded as before, to the same store and digest)."""
    from automl.data.sources import IMAGE_COLUMNS, LABEL_COLUMNS

    lower = {str(c).lower(): c for c in df.columns}
    lbl = next((lower[c] for c in LABEL_COLUMNS if c in lower), None)
    if lbl is None or not any(c in lower for c in IMAGE_COLUMNS) or len(df) == 0:
        return False
    try:
        return infer_task(df[lbl]) == "classification"
    except DataError:
        return True  # refused as before, by the loader of today's frames


def _load_targets(data, route, store_size, strict_images, cache_dir, progress, task,
                  label_column, path_column):  # fmt: skip
    """``(x view, raw targets, fitted task, skipped, name, source)`` of a table or arrays.

    The targets are checked (and the task fitted) before any image is decoded, so bad
    targets leave nothing behind."""
    from automl.data.table import read_table
    from automl.tasks import resolve_task

    if route == ROUTE_TABLE:
        table = read_table(
            data, path_column=path_column, label_column=label_column, task=task,
            strict=strict_images,
        )  # fmt: skip
        x, targets, skipped = store_table(table, store_size, cache_dir, strict_images, progress)
        fitted = table.task if len(targets) == len(table.targets) else _refit(table, targets)
        if _is_dataframe(data):
            name, source = "dataframe", f"DataFrame of {len(targets)} image paths"
        else:
            name, source = Path(data).stem, str(Path(data).resolve())
        return x, targets, fitted, skipped, name, source
    if len(data) != 2:
        raise DataError(f"arrays data must be a pair (x, y), got a sequence of {len(data)}")
    xa, y = np.asarray(data[0]), data[1]
    fitted = resolve_task(y, task)
    if len(y) != len(xa):
        raise DataError(
            f"x has {len(xa)} images but y has {len(y)} targets; they must have the same length"
        )
    x = array_images(xa, cache_dir, store_size, progress)
    return x, y, fitted, [], "arrays", f"numpy arrays x{tuple(xa.shape)}"


def _refit(table, targets):
    """The table's task fitted again to the rows whose image is readable."""
    from automl.tasks import get_task

    fresh = get_task(table.task.name)
    if fresh.name == "multilabel":
        fresh.labels = list(table.task.labels_)
    elif fresh.name == "regression":
        fresh.target_names = list(table.task.target_names_)
    return fresh.fit(targets)


def _task_bundle(x, targets, task, name, source, seed, val_fraction, test_fraction, skipped):
    """Encode ``targets`` with ``task`` and split: a classification exactly as
    :func:`automl.data.bundle.split` splits it; other tasks by :func:`task_split`."""
    from automl.data.splits import task_split

    y = task.encode(targets)
    if task.name == "classification":
        bundle = split(
            x, y, task.classes_, name=name, source=source, seed=seed,
            val_fraction=val_fraction, test_fraction=test_fraction, skipped=skipped,
        )  # fmt: skip
        bundle.task = task
        return bundle
    train, val, test = task_split(
        y, task.name, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
    )
    y = _scaled_on(task, targets, train, y)
    return of_splits(x, y, (train, val, test), name, source, _names(task), skipped, task)


def _scaled_on(task, targets, rows: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Regression: the standardisation learned from the training ``rows`` only (the split
    does not depend on it: its strata are quantiles), and every target encoded with it;
    other tasks: ``y`` as it is."""
    if task.name != "regression":
        return y
    return task.fit_scale(targets, rows).encode(targets)


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
    task: str | None = None,
    label_column: str | list[str] | None = None,
    path_column: str | None = None,
) -> DataBundle:
    """Load ``data`` and split it into train / validation / test.

    ``data`` is ``"demo"``, a folder with one sub-folder of images per class, ``"tfds:NAME"``
    (the dataset's own train/validation/test splits are kept where it has them), a CSV file
    of image paths and targets (``labels.csv``: paths relative to its folder or absolute, see
    :func:`automl.data.table.read_table`), a pandas DataFrame of the same (relative paths
    start at the working directory), an ``(x, y)`` pair of NumPy arrays, or a
    ``tf.data.Dataset`` of ``(image, label)`` pairs.

    The task (:mod:`automl.tasks`) is inferred from the targets, or ``task``
    (``"classification"``, ``"multilabel"``, ``"regression"``): a CSV/DataFrame column of
    numbers or float ``y`` is regression, labels separated by ``;`` or ``|``, 0/1 columns or
    rows of label lists are multilabel, anything else classification (folders, TFDS and
    ``tf.data`` are classification). The bundle's ``task`` is fitted to the readable rows;
    targets that fit no task raise a one-line :class:`DataError` before any image is decoded.
    ``label_column`` / ``path_column`` name a table's columns where they cannot be guessed.

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
    if task is not None:
        task = get_task(task).name  # an unknown name: one line, before anything is read
    route = _route(data, task, label_column, path_column)
    with undone_on_error(cache_dir):  # refused data leaves no store behind
        if route is not None:
            return _load_task_data(
                data, route, seed, store_size, val_fraction, test_fraction, strict_images,
                validation_data, cache_dir, progress, task, label_column, path_column,
            )  # fmt: skip
        bundle = _load_data(
            data, seed, store_size, val_fraction, test_fraction, strict_images,
            validation_data, cache_dir, progress,
        )  # fmt: skip
    # Today's sources: classification, its classes in their order, counted over all images.
    every = np.concatenate([bundle.y_train, bundle.y_val, bundle.y_test])
    bundle.task = Classification.of_names(bundle.class_names, every)
    return bundle


def _load_task_data(
    data, route, seed, store_size, val_fraction, test_fraction, strict_images, validation_data,
    cache_dir, progress, task, label_column, path_column,
) -> DataBundle:  # fmt: skip
    """A table or arrays, of any task: targets checked first, images stored, then split."""
    cols = dict(label_column=label_column, path_column=path_column)
    x, targets, fitted, skipped, name, source = _load_targets(
        data, route, store_size, strict_images, cache_dir, progress, task, **cols
    )
    if validation_data is None:
        return _task_bundle(
            x, targets, fitted, name, source, seed, val_fraction, test_fraction, skipped
        )
    # Your own validation split: read as the same task, encoded as the training data's.
    vroute = _route(validation_data, fitted.name, label_column, path_column)
    if vroute is None:
        raise DataError(
            f"validation_data {quoted(describe_source(validation_data))} must hold targets "
            f"of the {fitted.name} task: pass a CSV, a DataFrame or (x, y) arrays"
        )
    vx, vtargets, _, _, _, _ = _load_targets(
        validation_data, vroute, store_size, strict_images, cache_dir, progress, fitted.name,
        **cols,
    )  # fmt: skip
    if vx.shape[1:3] != x.shape[1:3]:
        vx = as_view(resize_batch(vx[:], int(x.shape[1])))
    y = fitted.encode(targets)
    rest, test = _test_split(y, fitted.name, test_fraction, seed, source)
    y = _scaled_on(fitted, targets, rest, y)  # your validation split is no training row
    base = as_view(x)
    return DataBundle(
        name=name,
        source=source + " (own validation split)",
        class_names=_names(fitted),
        x_train=base.take(rest),
        y_train=y[rest],
        x_val=vx,
        y_val=fitted.encode(vtargets),
        x_test=base.take(test),
        y_test=y[test],
        skipped=list(skipped),
        task=fitted,
    )


def _test_split(y, task: str, test_fraction: float, seed: int, source: str):
    """(rest, test) sorted index arrays, stratified by :func:`automl.data.splits.strata`."""
    from sklearn.model_selection import train_test_split

    from automl.data.splits import strata

    n_test = int(round(len(y) * test_fraction))
    if n_test < 1 or len(y) - n_test < 1:
        raise DataError(f"{source!r} has too few images ({len(y)}) to split off a test split")
    s = strata(y, task)
    ok = np.bincount(s).min() >= 2 and n_test >= len(np.unique(s))
    rest, test = train_test_split(
        np.arange(len(y)), test_size=n_test, random_state=seed, stratify=s if ok else None
    )
    return np.sort(rest), np.sort(test)


def _names(task) -> list[str]:
    """A bundle's ``class_names``: the classes, the labels, or the target names."""
    if task.name == "classification":
        return list(task.classes_)
    return list(task.labels_ if task.name == "multilabel" else task.output_names())


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
