"""Data sources: the built-in demo, a folder of class sub-folders, a TFDS name, NumPy arrays,
a ``tf.data.Dataset`` of (image, label), a pandas DataFrame of image paths and labels.

Each ``store_*`` loader decodes its images once into an on-disk image store
(:mod:`automl.data.store`) and returns ``(view, y, class_names, skipped)``, ``view`` an
:class:`~automl.data.images.ImageView` of uint8 RGB images at one storage size;
:func:`automl.data.load_data` splits it into a :class:`DataBundle`. :func:`load_folder` is
the earlier in-memory loader, kept as the baseline of ``bench/scale.py``.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from automl.data.bundle import resize_batch, to_rgb_uint8
from automl.errors import DataError

log = logging.getLogger("automl")

IMAGE_EXTENSIONS = {
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
}
Loaded = tuple[np.ndarray, np.ndarray, list[str], list[str]]


def load_demo(store_size: int = 32) -> Loaded:
    """scikit-learn's handwritten digits (1,797 real 8x8 scans, 10 classes), upscaled."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0 * 255.0).round().astype(np.uint8)
    x = np.repeat(x[..., None], 3, axis=-1)
    return (
        resize_batch(x, store_size),
        d.target.astype(np.int64),
        [str(c) for c in d.target_names],
        [],
    )


def _decode(path: Path, store_size: int) -> np.ndarray | None:
    from PIL import Image

    from automl.data.imageio import UnreadableImage, open_image

    try:
        with open_image(path) as im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                arr = to_rgb_uint8(
                    np.asarray(im).astype(np.float64) / max(float(np.asarray(im).max()), 1.0)
                )
                im = Image.fromarray(arr)
            elif im.mode != "RGB":
                im = (
                    im.convert("RGBA").convert("RGB")
                    if im.mode in ("P", "PA", "LA", "RGBA")
                    else im.convert("RGB")
                )
            im = im.resize((store_size, store_size), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except (UnreadableImage, OSError, ValueError):
        return None


def _check_folder(path) -> Path:
    root = Path(path)
    if not root.exists():
        raise DataError(
            f"data path {str(path)!r} does not exist; pass 'demo', 'tfds:NAME' or a folder of class sub-folders"
        )
    if not root.is_dir():
        raise DataError(
            f"data path {str(path)!r} is a file; pass a folder with one sub-folder of images per class"
        )
    return root


def _shown(bad: list[str]) -> str:
    return ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")


def store_folder(
    path: str | Path, store_size: int, cache_dir: str | Path, strict: bool = False, progress=None
):
    """A class folder through the image store: ``(view of all images, y, names, skipped)``.

    Listing the files is one ``os.scandir`` walk; the images are decoded only when the store
    of exactly these files (paths, sizes, modification times) at ``store_size`` is not
    there yet (see :mod:`automl.data.store`).
    """
    from automl.data.store import NoReadableImages, list_folder

    root = _check_folder(path)
    entries, classes = list_folder(root)
    if not classes or not entries:
        raise DataError(
            f"data folder {str(path)!r} has no images; it needs one sub-folder per class "
            "with image files inside (e.g. cats/1.jpg, dogs/2.png)"
        )
    try:
        store = _folder_store(root, entries, classes, store_size, cache_dir, progress)
    except NoReadableImages:
        raise DataError(
            f"data folder {str(path)!r} has no readable images (all {len(entries)} files failed to decode)"
        ) from None
    return _folder_result(path, store, entries, classes, strict)


def _folder_store(root, entries, classes, store_size, cache_dir, progress):
    from automl.data.store import build_from_files, files_key

    return build_from_files(
        [str(root / e[0]) for e in entries],
        [e[3] for e in entries],
        classes,
        store_size,
        cache_dir,
        key=files_key(entries, store_size, "folder"),
        entries=entries,
        source_id=f"folder:{root.resolve()}",
        progress=progress,
    )


def _folder_result(path, store, entries, classes, strict):
    from automl.data.images import ImageView

    bad = [store.name_of(i) for i in store.skipped]
    if bad and strict:
        raise DataError(
            f"{len(bad)} file(s) in {str(path)!r} are not readable images: {_shown(bad)}; "
            "remove them or run without --strict-images to skip them"
        )
    if bad:
        log.warning(
            "skipped %d unreadable or non-image file(s) in %s: %s", len(bad), path, _shown(bad)
        )
    valid = store.valid
    if len(valid) == 0:
        raise DataError(
            f"data folder {str(path)!r} has no readable images (all {len(entries)} files failed to decode)"
        )
    y = store.labels[valid]
    used = sorted(set(np.unique(y).tolist()))
    empty = [c for i, c in enumerate(classes) if i not in set(used)]
    if empty:
        log.warning("class folder(s) with no readable images were ignored: %s", ", ".join(empty))
    remap = np.full(len(classes), -1, np.int64)
    remap[used] = np.arange(len(used))
    return ImageView(store, valid), remap[y], [classes[i] for i in used], bad


def load_folder(path: str | Path, store_size: int = 128, strict: bool = False) -> Loaded:
    """A folder with one sub-folder of images per class (class = sub-folder name).

    Corrupt files and non-image files are skipped with a warning that counts and names
    them (``strict=True`` refuses them instead). Grayscale, RGBA, palette and 16-bit
    images are converted to RGB; every image is resized to ``store_size``.
    """
    root = Path(path)
    if not root.exists():
        raise DataError(
            f"data path {str(path)!r} does not exist; pass 'demo', 'tfds:NAME' or a folder of class sub-folders"
        )
    if not root.is_dir():
        raise DataError(
            f"data path {str(path)!r} is a file; pass a folder with one sub-folder of images per class"
        )
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[tuple[Path, int]] = []
    for i, d in enumerate(class_dirs):
        files += [
            (f, i) for f in sorted(d.rglob("*")) if f.is_file() and not f.name.startswith(".")
        ]
    if not class_dirs or not files:
        raise DataError(
            f"data folder {str(path)!r} has no images; it needs one sub-folder per class "
            "with image files inside (e.g. cats/1.jpg, dogs/2.png)"
        )
    with ThreadPoolExecutor(max_workers=8) as pool:
        decoded = list(pool.map(lambda fi: _decode(fi[0], store_size), files))
    bad = [str(f.relative_to(root)) for (f, _), img in zip(files, decoded) if img is None]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        if strict:
            raise DataError(
                f"{len(bad)} file(s) in {str(path)!r} are not readable images: {shown}; "
                "remove them or run without --strict-images to skip them"
            )
        log.warning("skipped %d unreadable or non-image file(s) in %s: %s", len(bad), path, shown)
    keep = [(img, lbl) for img, (_, lbl) in zip(decoded, files) if img is not None]
    if not keep:
        raise DataError(
            f"data folder {str(path)!r} has no readable images (all {len(files)} files failed to decode)"
        )
    x = np.stack([k[0] for k in keep])
    y = np.array([k[1] for k in keep], np.int64)
    used = sorted(set(y.tolist()))
    names = [class_dirs[i].name for i in used]
    remap = {old: new for new, old in enumerate(used)}
    empty = [d.name for i, d in enumerate(class_dirs) if i not in remap]
    if empty:
        log.warning("class folder(s) with no readable images were ignored: %s", ", ".join(empty))
    y = np.array([remap[v] for v in y.tolist()], np.int64)
    return x, y, names, bad


TFDS_VALIDATION = ("validation", "valid", "val")


def _tf_examples(ds):
    """``(image, label)`` numpy pairs of a dataset of pairs, batched or not (checked)."""
    spec = ds.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2):
        raise DataError(
            f"a tf.data.Dataset must yield (image, label) pairs, not {spec}; map it with "
            "ds.map(lambda ex: (ex['image'], ex['label']))"
        )
    if spec[0].shape.rank == 4:  # batched: one example at a time
        ds = ds.unbatch()
    elif spec[0].shape.rank not in (2, 3, None):
        raise DataError(
            f"the dataset's images have shape {spec[0].shape}; expected (H, W[, C]) or batches"
        )
    for img, lbl in ds.as_numpy_iterator():
        yield img, (lbl.decode() if isinstance(lbl, bytes) else np.asarray(lbl).reshape(-1)[0])


def _store_size_of(first: np.ndarray, store_size: int) -> int:
    """Square images up to the store's bound keep their size; others go to ``store_size``."""
    from automl.data.store import MAX_STORE_SIZE

    h, w = first.shape[:2]
    return int(h) if h == w and 8 <= h <= MAX_STORE_SIZE else int(store_size)


def store_tf_dataset(ds, store_size: int, cache_dir, progress=None):
    """A ``tf.data.Dataset`` of ``(image, label)`` written to a store as it is read
    (never held whole): ``(view, y, class names, [])``. Square images keep their size (up to
    the store's bound); others, and any image of another size, are resized to the first
    one's storage size. Read once per load; a store of identical content is reused."""
    from automl.data.images import ImageView
    from automl.data.store import build_from_images

    it = _tf_examples(ds)
    first = next(it, None)
    if first is None:
        raise DataError("the tf.data.Dataset is empty; it must yield (image, label) pairs")
    size = _store_size_of(to_rgb_uint8(first[0]), store_size)

    def pairs():
        yield first
        yield from it

    store, raw = build_from_images(
        pairs(), None, size, cache_dir, key=None, progress=progress, what="tf.data images"
    )
    _, y, names = _class_labels(len(store), np.asarray(raw)[store.labels])
    return ImageView(store), y, names, []


def store_tfds_splits(name: str, store_size: int, cache_dir, progress=None, data_dir=None):
    """A TFDS dataset's splits, each streamed into a store keyed by the dataset's name,
    version and split: ``({split: (view, y)}, class names)``."""
    import tensorflow_datasets as tfds

    from automl.data.images import ImageView
    from automl.data.store import build_from_images, files_key

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # tfds raises DatasetNotFoundError and friends
        raise DataError(
            f"TFDS dataset {name!r} is not available ({type(e).__name__}); check the name with tfds.list_builders()"
        ) from None
    try:
        splits = list(builder.info.splits) or ["train"]
        loaded = tfds.load(name, split=splits, as_supervised=True, data_dir=data_dir)
    except Exception as e:
        raise DataError(
            f"TFDS dataset {name!r} could not be loaded: {str(e).splitlines()[0][:200]}"
        ) from None
    label = builder.info.features["label"]
    names = list(getattr(label, "names", None) or [str(i) for i in range(label.num_classes)])
    version = str(getattr(builder.info, "version", ""))
    out = {}
    for split_name, ds in zip(splits, loaded):
        n = getattr(builder.info.splits.get(split_name), "num_examples", None) or None
        key = "tfds-" + files_key(
            [(name, version, str(split_name), str(data_dir), n)], store_size, "tfds"
        )
        store, raw = build_from_images(
            ((img, int(lbl)) for img, lbl in tfds.as_numpy(ds)),
            n,
            store_size,
            cache_dir,
            key=key,
            progress=progress,
            what=f"tfds:{name} {split_name}",
        )
        if len(store):
            y = np.asarray(raw, np.int64)[store.labels]
            out[str(split_name)] = (ImageView(store), y)
    if not out:
        raise DataError(f"TFDS dataset {name!r} has no examples")
    return out, names


IMAGE_COLUMNS = ("image", "image_path", "path", "filepath", "file", "filename")
LABEL_COLUMNS = ("label", "class", "target", "y")


def _pick_column(df, wanted: tuple[str, ...], what: str, example: str) -> str:
    by_lower = {str(c).lower(): c for c in df.columns}
    for w in wanted:
        if w in by_lower:
            return by_lower[w]
    raise DataError(
        f"the DataFrame has no {what} column (columns: {', '.join(map(str, df.columns))}); "
        f"name it one of: {', '.join(wanted)} (e.g. {example})"
    )


def store_dataframe(df, store_size: int, cache_dir, strict: bool = False, progress=None):
    """A DataFrame of image paths (a path column and a label column) through the image
    store: ``(view of the readable images, y, class names, skipped paths)``."""
    import os

    from automl.data.store import NoReadableImages

    img_col = _pick_column(df, IMAGE_COLUMNS, "image-path", "df.rename(columns={'f': 'path'})")
    lbl_col = _pick_column(df, LABEL_COLUMNS, "label", "df.rename(columns={'c': 'label'})")
    if len(df) == 0:
        raise DataError("the DataFrame has no rows; it needs one row per image")
    paths = [str(Path.cwd() / str(p)) for p in df[img_col].tolist()]
    labels = df[lbl_col].to_numpy()
    _, all_idx, all_names = _class_labels(len(paths), labels)
    entries = []
    for p, lbl in zip(paths, all_idx.tolist()):
        try:
            st = os.stat(p)
            entries.append((p, st.st_size, st.st_mtime_ns, lbl))
        except OSError:
            entries.append((p, -1, -1, lbl))
    try:
        store = _dataframe_store(
            paths, all_idx, all_names, entries, store_size, cache_dir, progress
        )
    except NoReadableImages:
        raise DataError(
            f"none of the {len(paths)} files in the DataFrame's {img_col!r} column is a "
            "readable image; check the paths"
        ) from None
    return _dataframe_result(store, paths, labels, img_col, strict)


def _dataframe_store(paths, all_idx, all_names, entries, store_size, cache_dir, progress):
    from automl.data.store import build_from_files, files_key

    return build_from_files(
        paths,
        all_idx,
        all_names,
        store_size,
        cache_dir,
        key=files_key(entries, store_size, "dataframe " + "\0".join(all_names)),
        entries=entries,
        source_id="dataframe",
        progress=progress,
    )


def _dataframe_result(store, paths, labels, img_col, strict):
    from automl.data.images import ImageView

    bad = [paths[i] for i in store.skipped]
    if bad and strict:
        raise DataError(
            f"{len(bad)} file(s) of the DataFrame's {img_col!r} column are missing or not "
            f"readable images: {_shown(bad)}; fix the paths or run without strict_images"
        )
    if bad:
        log.warning("skipped %d unreadable or missing image file(s): %s", len(bad), _shown(bad))
    valid = store.valid
    if len(valid) == 0:
        raise DataError(
            f"none of the {len(paths)} files in the DataFrame's {img_col!r} column is a "
            "readable image; check the paths"
        )
    _, y, names = _class_labels(len(valid), labels[valid])
    return ImageView(store, valid), y, names, bad


def store_arrays(x: np.ndarray, y, cache_dir, store_size: int, progress=None):
    """Large NumPy images written to a store, one image at a time: ``(view, y, names)``.

    Images keep their size when square and at most the store's bound, else are resized
    to ``store_size``; the key is a hash of the arrays.
    """
    import hashlib

    from automl.data.images import ImageView
    from automl.data.store import MAX_STORE_SIZE, build_from_images

    if x.ndim not in (3, 4):
        raise DataError(f"x has shape {x.shape}; expected images shaped (N, H, W) or (N, H, W, C)")
    _, idx, names = _class_labels(len(x), y)
    h, w = int(x.shape[1]), int(x.shape[2])
    size = h if h == w and h <= MAX_STORE_SIZE else int(store_size)
    digest = hashlib.sha256(f"{x.shape} {x.dtype} {size}".encode())
    for i in range(0, len(x), 1024):
        digest.update(np.ascontiguousarray(x[i : i + 1024]).data)
    digest.update(np.ascontiguousarray(idx).data)
    store, raw = build_from_images(
        ((x[i], int(idx[i])) for i in range(len(x))),
        len(x),
        size,
        cache_dir,
        key="arrays-" + digest.hexdigest()[:24],
        progress=progress,
        what="arrays",
    )
    y_store = np.asarray(raw, np.int64)[store.labels]
    return ImageView(store), y_store, names


def _class_labels(n: int, y) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(y as given, class index per image, class names)``, with the checks labels need."""
    y = np.asarray(y)
    if y.ndim != 1 and not (y.ndim == 2 and y.shape[1] == 1):
        raise DataError(f"y has shape {y.shape}; expected one class label per image, shape (N,)")
    y = y.reshape(-1)
    if n != len(y):
        raise DataError(
            f"x has {n} images but y has {len(y)} labels; they must have the same length"
        )
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            bad = y[~np.isfinite(y) | (y != np.round(y))][0]
            raise DataError(
                f"y holds {bad.item()!r}, which is not a class label; pass integer or string labels, not one-hot or scores"
            )
        y = y.astype(np.int64)
    if y.dtype.kind not in "iuUSOb":
        raise DataError(f"y has dtype {y.dtype}; pass integer or string class labels")
    classes = np.unique(y)
    return y, np.searchsorted(classes, y).astype(np.int64), [str(c) for c in classes]


def load_arrays(x, y, store_size: int | None = None) -> Loaded:
    """NumPy images ``x`` (N,H,W[,C]) and class labels ``y`` (N,), ints or strings."""
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim not in (3, 4):
        raise DataError(f"x has shape {x.shape}; expected images shaped (N, H, W) or (N, H, W, C)")
    _, idx, names = _class_labels(len(x), y)
    imgs = np.stack([to_rgb_uint8(im) for im in x])
    if store_size and (imgs.shape[1] != store_size or imgs.shape[2] != store_size):
        imgs = resize_batch(imgs, store_size)
    return imgs, idx, names, []


# --- tables of paths + targets, and arrays of any task's targets ---------------------------


def store_table(table, store_size: int, cache_dir, strict: bool = False, progress=None):
    """The images of a :class:`automl.data.table.Table` (read by
    :func:`automl.data.table.read_table`) through the image store, each file decoded once;
    the targets stay beside: ``(view of the readable images, their targets, skipped)``.

    The store's key names the files (paths, sizes, modification times) and the size only, so
    the same images under other targets reuse it; an unreadable file is skipped and counted
    with the missing ones (``strict``: refused).
    """
    import os

    from automl.data.images import ImageView
    from automl.data.store import NoReadableImages, build_from_files, files_key

    entries = []
    for p in table.paths:
        st = os.stat(p)
        entries.append((p, st.st_size, st.st_mtime_ns, 0))
    try:
        store = build_from_files(
            list(table.paths),
            np.zeros(len(entries), np.int64),
            ["image"],
            store_size,
            cache_dir,
            key=files_key(entries, store_size, "table"),
            entries=entries,
            source_id=f"table:{table.source}",
            progress=progress,
        )
    except NoReadableImages:
        raise DataError(
            f"none of the {len(entries)} files in {table.source}'s {table.path_column!r} column "
            "is a readable image; check the paths"
        ) from None
    bad = [table.paths[i] for i in store.skipped]
    if bad and strict:
        raise DataError(
            f"{len(bad)} file(s) in {table.source}'s {table.path_column!r} column are not "
            f"readable images: {_shown(bad)}; fix them or run without --strict-images"
        )
    if bad:
        log.warning("skipped %d unreadable image file(s): %s", len(bad), _shown(bad))
    valid = store.valid
    return ImageView(store, valid), table.targets[valid], list(table.skipped) + bad


def array_images(x, cache_dir, store_size: int, progress=None):
    """NumPy images of a task other than classification, in their order: a view of a store
    (large arrays, as :func:`store_arrays`) or of an RGB array (as :func:`load_arrays`)."""
    from automl.data.images import IN_MEMORY_MAX_BYTES, as_view

    x = np.asarray(x)
    if x.ndim not in (3, 4):
        raise DataError(f"x has shape {x.shape}; expected images shaped (N, H, W) or (N, H, W, C)")
    blank = np.zeros(len(x), np.int64)  # the store numbers classes; here it has none
    if len(x) and len(x) * int(x.shape[1]) * int(x.shape[2]) * 3 > IN_MEMORY_MAX_BYTES:
        return store_arrays(x, blank, cache_dir, store_size, progress=progress)[0]
    return as_view(np.stack([to_rgb_uint8(im) for im in x]))
