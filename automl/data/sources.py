"""Data sources: the built-in demo, a folder of class sub-folders, a TFDS name, NumPy arrays,
a ``tf.data.Dataset`` of (image, label), a pandas DataFrame of image paths and labels.

Each loader returns ``(x, y, class_names, skipped)`` with ``x`` uint8 RGB NHWC at one
storage size; :func:`automl.data.load_data` splits it into a :class:`DataBundle`.
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


def load_tfds_splits(
    name: str, store_size: int = 128, data_dir: str | None = None
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str]]:
    """A TFDS image-classification dataset as ``({split: (x, y)}, class_names)``, keeping
    the dataset's own splits (``train``, ``validation``, ``test``, ...)."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # tfds raises DatasetNotFoundError and friends
        raise DataError(
            f"TFDS dataset {name!r} is not available ({type(e).__name__}); check the name with tfds.list_builders()"
        ) from None
    try:
        # Unprepared or mocked builders may list no splits: take train.
        splits = list(builder.info.splits) or ["train"]
        loaded = tfds.load(name, split=splits, as_supervised=True, data_dir=data_dir)
    except Exception as e:
        raise DataError(
            f"TFDS dataset {name!r} could not be loaded: {str(e).splitlines()[0][:200]}"
        ) from None
    label = builder.info.features["label"]
    names = list(getattr(label, "names", None) or [str(i) for i in range(label.num_classes)])
    out = {}
    for split_name, ds in zip(splits, loaded):
        xs, ys = [], []
        for img, lbl in tfds.as_numpy(ds):
            xs.append(resize_batch(to_rgb_uint8(img)[None], store_size)[0])
            ys.append(int(lbl))
        if xs:
            out[str(split_name)] = (np.stack(xs), np.array(ys, np.int64))
    if not out:
        raise DataError(f"TFDS dataset {name!r} has no examples")
    return out, names


def load_tf_dataset(ds, store_size: int | None = None) -> Loaded:
    """A ``tf.data.Dataset`` of ``(image, label)`` pairs, batched or not.

    Images of one size keep it (like arrays); images of several sizes are resized to
    ``store_size``. Labels are integers or strings.
    """
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
    xs, ys = [], []
    for img, lbl in ds.as_numpy_iterator():
        xs.append(to_rgb_uint8(img))
        ys.append(lbl.decode() if isinstance(lbl, bytes) else np.asarray(lbl).reshape(-1)[0])
    if not xs:
        raise DataError("the tf.data.Dataset is empty; it must yield (image, label) pairs")
    if len({im.shape for im in xs}) > 1:  # sizes differ: one storage size, as for a folder
        size = store_size or max(xs[0].shape[:2])
        xs = [im if im.shape[:2] == (size, size) else resize_batch(im[None], size)[0] for im in xs]
    return load_arrays(np.stack(xs), np.asarray(ys), store_size=None)


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


def load_dataframe(
    df, store_size: int = 128, strict: bool = False, root: Path | None = None
) -> Loaded:
    """A pandas DataFrame with an image-path column and a label column.

    The columns are found by name (image: ``image``, ``image_path``, ``path``, ``filepath``,
    ``file``, ``filename``; label: ``label``, ``class``, ``target``, ``y``). Relative paths
    are read from the current folder. Unreadable files are skipped with a warning that names
    them, or refused with ``strict``.
    """
    img_col = _pick_column(df, IMAGE_COLUMNS, "image-path", "df.rename(columns={'f': 'path'})")
    lbl_col = _pick_column(df, LABEL_COLUMNS, "label", "df.rename(columns={'c': 'label'})")
    if len(df) == 0:
        raise DataError("the DataFrame has no rows; it needs one row per image")
    base = Path(root) if root is not None else Path.cwd()
    paths = [base / str(p) for p in df[img_col].tolist()]
    labels = df[lbl_col].to_numpy()
    with ThreadPoolExecutor(max_workers=8) as pool:
        decoded = list(pool.map(lambda p: _decode(p, store_size), paths))
    bad = [str(p) for p, img in zip(paths, decoded) if img is None]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        if strict:
            raise DataError(
                f"{len(bad)} file(s) of the DataFrame's {img_col!r} column are missing or not "
                f"readable images: {shown}; fix the paths or run without strict_images"
            )
        log.warning("skipped %d unreadable or missing image file(s): %s", len(bad), shown)
    keep = [i for i, img in enumerate(decoded) if img is not None]
    if not keep:
        raise DataError(
            f"none of the {len(paths)} files in the DataFrame's {img_col!r} column is a "
            "readable image; check the paths"
        )
    x = np.stack([decoded[i] for i in keep])
    x, y, names, _ = load_arrays(x, labels[keep], store_size=None)
    return x, y, names, bad


def load_arrays(x, y, store_size: int | None = None) -> Loaded:
    """NumPy images ``x`` (N,H,W[,C]) and class labels ``y`` (N,), ints or strings."""
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim not in (3, 4):
        raise DataError(f"x has shape {x.shape}; expected images shaped (N, H, W) or (N, H, W, C)")
    if y.ndim != 1 and not (y.ndim == 2 and y.shape[1] == 1):
        raise DataError(f"y has shape {y.shape}; expected one class label per image, shape (N,)")
    y = y.reshape(-1)
    if len(x) != len(y):
        raise DataError(
            f"x has {len(x)} images but y has {len(y)} labels; they must have the same length"
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
    names = [str(c) for c in classes]
    idx = np.searchsorted(classes, y).astype(np.int64)
    imgs = np.stack([to_rgb_uint8(im) for im in x])
    if store_size and (imgs.shape[1] != store_size or imgs.shape[2] != store_size):
        imgs = resize_batch(imgs, store_size)
    return imgs, idx, names, []
