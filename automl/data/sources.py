"""Data sources: the built-in demo, a folder of class sub-folders, a TFDS name, NumPy arrays.

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
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
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
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
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


def load_tfds(name: str, store_size: int = 128, data_dir: str | None = None) -> Loaded:
    """A TensorFlow Datasets image-classification dataset, all its splits pooled."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # tfds raises DatasetNotFoundError and friends
        raise DataError(
            f"TFDS dataset {name!r} is not available ({type(e).__name__}); check the name with tfds.list_builders()"
        ) from None
    try:
        ds_all = tfds.load(
            name, split=list(builder.info.splits), as_supervised=True, data_dir=data_dir
        )
    except Exception as e:
        raise DataError(
            f"TFDS dataset {name!r} could not be loaded: {str(e).splitlines()[0][:200]}"
        ) from None
    label = builder.info.features["label"]
    names = list(getattr(label, "names", None) or [str(i) for i in range(label.num_classes)])
    xs, ys = [], []
    for ds in ds_all:
        for img, lbl in tfds.as_numpy(ds):
            xs.append(resize_batch(to_rgb_uint8(img)[None], store_size)[0])
            ys.append(int(lbl))
    if not xs:
        raise DataError(f"TFDS dataset {name!r} has no examples")
    return np.stack(xs), np.array(ys, np.int64), names, []


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
                f"y holds {float(bad)!r}, which is not a class label; pass integer or string labels, not one-hot or scores"
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
