"""The one type every data source returns, and the stratified seeded split."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from automl.data.images import ImageView, as_view
from automl.errors import DataError

log = logging.getLogger("automl")

VAL_PER_CLASS = 10  # validation images per class at least (see split)
VAL_MAX_FRACTION = 0.25  # ... but never more than this fraction of the data


@dataclass
class DataBundle:
    """Train / validation / test images (uint8 RGB, NHWC, one common size) and targets.

    Images are decoded once and kept at one storage size; each trial resizes them
    inside the model, so an exported model takes raw images of any size. ``x_train``,
    ``x_val`` and ``x_test`` are :class:`automl.data.images.ImageView` s: index arrays into
    one image source (an on-disk store, or an array for small data), never copies; arrays
    given here are wrapped in views.

    ``task`` is the fitted :class:`automl.tasks.Task` and ``y_*`` hold ``task.encode`` of the
    targets: class indices (int64) for classification, a 0/1 float32 matrix (N, labels) for
    multilabel, standardised float32 values (N, targets) for regression (``task.decode``
    gives them back in their units). ``class_names`` are the classes, the labels or the
    target names; ``num_classes`` the model's output units. Without ``task`` the bundle is
    classification over ``class_names`` in their order (``y_*`` their indices).
    """

    name: str
    source: str
    class_names: list[str]
    x_train: ImageView
    y_train: np.ndarray
    x_val: ImageView
    y_val: np.ndarray
    x_test: ImageView
    y_test: np.ndarray
    skipped: list[str] = field(default_factory=list)
    task: Any = field(default=None, repr=False, compare=False)
    _digest: str = field(default="", repr=False, compare=False)

    def __post_init__(self):
        self.x_train, self.x_val, self.x_test = (
            as_view(x) for x in (self.x_train, self.x_val, self.x_test)
        )
        if self.task is None:
            from automl.tasks import Classification

            y = np.asarray(self.y_train)
            if y.size and (y.ndim != 1 or y.dtype.kind not in "iub"):
                raise TypeError(
                    f"y_train of dtype {y.dtype} and shape {y.shape} is not class indices; "
                    "pass the bundle's task (e.g. DataBundle(..., task=data.task))"
                )
            self.task = Classification.of_names(self.class_names, y)

    @property
    def is_classification(self) -> bool:
        return self.task.name == "classification"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    def digest(self) -> str:
        """Hash of the splits: the image source's key (a store's key names what it was made
        of; small arrays are hashed) plus each split's indices and labels. Detects changed
        data on resume; MLflow's dataset digest."""
        if self._digest:
            return self._digest
        h = hashlib.sha256()
        for x, y in (
            (self.x_train, self.y_train),
            (self.x_val, self.y_val),
            (self.x_test, self.y_test),
        ):
            h.update(x.source.key.encode())
            h.update(np.ascontiguousarray(x.index).tobytes())
            h.update(np.ascontiguousarray(y).tobytes())
        h.update("\n".join(self.class_names).encode())
        if not self.is_classification:  # (a classification digest is what it always was)
            h.update(f"\ntask={self.task.name}".encode())
        self._digest = h.hexdigest()[:16]
        return self._digest

    def summary(self) -> dict:
        """What is logged about the data (a classification's keys are those it always had;
        other tasks add ``task``, count labels per name or leave counts out)."""
        out = {
            "data_name": self.name,
            "data_source": self.source,
            "num_classes": self.num_classes,
            "image_shape": "x".join(map(str, self.image_shape)),
            "n_train": len(self.y_train),
            "n_val": len(self.y_val),
            "n_test": len(self.y_test),
        }
        if self.is_classification:
            counts = np.bincount(self.y_train, minlength=self.num_classes)
            out["train_class_counts"] = dict(zip(self.class_names, counts.tolist()))
        else:
            out["task"] = self.task.name
            if self.task.name == "multilabel":
                counts = np.asarray(self.y_train).sum(axis=0).astype(np.int64)
                out["train_class_counts"] = dict(zip(self.class_names, counts.tolist()))
        out["data_digest"] = self.digest()
        return out


def to_rgb_uint8(img: np.ndarray) -> np.ndarray:
    """Any HxW, HxWx1, HxWx3 or HxWx4 array (uint8/uint16/float/bool) as HxWx3 uint8."""
    a = np.asarray(img)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16 or (a.dtype.kind in "iu" and a.max(initial=0) > 255):
        a = (a.astype(np.float64) / max(float(a.max(initial=1)), 1.0) * 255.0).round()
    elif a.dtype.kind == "f":
        hi = float(np.nanmax(a)) if a.size else 1.0
        a = np.nan_to_num(a) * (255.0 if hi <= 1.0 else 1.0)
    a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3:
        raise DataError(f"image of shape {a.shape} is not an image; expected HxW or HxWxC")
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    elif a.shape[-1] == 4:
        a = a[..., :3]
    elif a.shape[-1] != 3:
        raise DataError(f"image with {a.shape[-1]} channels is not supported; use 1, 3 or 4")
    return a


def resize_batch(x: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 NHWC images to size x size (bilinear) with PIL."""
    from PIL import Image

    if x.shape[1] == size and x.shape[2] == size:
        return x
    out = np.empty((len(x), size, size, 3), np.uint8)
    for i, img in enumerate(x):
        out[i] = np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))
    return out


def split(
    x: np.ndarray,
    y: np.ndarray,
    class_names: list[str],
    *,
    name: str,
    source: str,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    skipped: list[str] | None = None,
) -> DataBundle:
    """Stratified, seeded train/val/test split with the checks a split needs.

    ``x``: an array or an :class:`ImageView`; the splits are views of it (no copy).
    """
    from sklearn.model_selection import train_test_split

    y = np.asarray(y).astype(np.int64)
    n_classes = len(class_names)
    if n_classes < 2:
        raise DataError(
            f"data {source!r} has a single class ({class_names[0] if class_names else 'none'}); "
            "a classifier needs at least 2 classes"
        )
    counts = np.bincount(y, minlength=n_classes)
    need = 3  # one image each for train, val and test
    if counts.min() < need:
        worst = int(np.argmin(counts))
        raise DataError(
            f"class {class_names[worst]!r} in {source!r} has {counts[worst]} image(s); "
            f"the train/val/test split needs at least {need} per class: add images or drop the class"
        )
    n = len(y)
    n_test = max(int(round(n * test_fraction)), n_classes)
    # Validation picks the best trial, epoch and ensemble: on small data 15 % is a handful of
    # images per class and its scores are noise. A floor of VAL_PER_CLASS images per class
    # (capped at VAL_MAX_FRACTION of the data, so training keeps the most) steadies them.
    floor = min(VAL_PER_CLASS * n_classes, int(round(n * VAL_MAX_FRACTION)))
    n_val = max(int(round(n * val_fraction)), floor, n_classes)
    if n - n_test - n_val < n_classes:
        raise DataError(
            f"data {source!r} has {n} images for {n_classes} classes: too few to split "
            "into train/val/test; add images"
        )
    idx = np.arange(n)
    rest, test = train_test_split(idx, test_size=n_test, stratify=y, random_state=seed)
    train, val = train_test_split(rest, test_size=n_val, stratify=y[rest], random_state=seed + 1)
    return of_splits(x, y, (train, val, test), name, source, class_names, skipped)


def of_splits(x, y, splits, name: str, source: str, class_names, skipped=None, task=None):
    """The bundle of index arrays ``splits`` = (train, val, test) into images ``x`` (any
    image source: views, never copies) and their targets ``y``."""
    base = as_view(x)
    train, val, test = splits
    return DataBundle(
        name=name,
        source=source,
        class_names=list(class_names),
        x_train=base.take(train),
        y_train=y[train],
        x_val=base.take(val),
        y_val=y[val],
        x_test=base.take(test),
        y_test=y[test],
        skipped=list(skipped or []),
        task=task,
    )
