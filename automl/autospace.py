"""The data-aware default search space, and seeding the oracle with known-good trials.

``automl search`` without ``--space`` looks at the data (native image size, grayscale or
colour, number of images and classes, GPU or not) and builds a two-family space:

* low-resolution (<= 48 px) or grayscale images: the ``scratch`` conv net at the data's
  own resolution first, with ``pretrained`` EfficientNet-Lite0 at 96-128 px beside it
  (under 20 px, e.g. 8x8 digit scans, scratch only);
* photos: ``pretrained`` EfficientNet-Lite0 at 96-128 px on a CPU (160-224 on a GPU)
  first, with ``scratch`` at 48 px beside it.

The first trials of a search are fixed, known-good configurations, one per family (the
space's ``seed_trials``, in order); the oracle explores from there. The space, seeds
included, is logged to the parent run as ``search_space.yaml``, and ``--space`` of that
file runs the same search again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from automl import fidelity
from automl.space import SearchSpace, parse_space

log = logging.getLogger("automl")

LOW_RES = 48  # at or below this native size, images are "low resolution"
TINY = 20  # below this, only the scratch family (8x8 digits: ImageNet features do not fit)


def probe_native_size(data: Any) -> int | None:
    """The images' native size (shorter side, median of a sample), before any resizing."""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        shape = np.shape(data[0])
        return int(min(shape[1], shape[2])) if len(shape) >= 3 else None
    if str(data) == "demo":
        return 8  # scikit-learn's digits are 8x8 scans
    path = Path(str(data))
    if not path.is_dir():
        return None
    from PIL import Image

    from automl.data.sources import IMAGE_EXTENSIONS

    sizes = []
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        for f in sorted(sub.iterdir())[:8]:
            if f.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            try:
                with Image.open(f) as im:
                    sizes.append(min(im.size))
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
                continue
        if len(sizes) >= 64:
            break
    return int(np.median(sizes)) if sizes else None


def store_size_for(native: int | None, gpu: bool = False) -> int:
    """The size images are decoded to: enough for the largest size the default space uses."""
    top = 224 if gpu else 128
    if native is None:
        return top
    return int(min(max(native, 32), top))


def has_gpu() -> bool:
    try:
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    except ImportError:
        return False


def _is_grayscale(x) -> bool:
    """Whether a sample of 64 images (of an array or a view) has equal channels."""
    sample = (x.sample(64) if hasattr(x, "sample") else x[: min(len(x), 64)]).astype(np.int16)
    return bool(
        np.all(sample[..., 0] == sample[..., 1]) and np.all(sample[..., 1] == sample[..., 2])
    )


def describe(bundle, native: int | None) -> dict[str, Any]:
    """What the default space is chosen from."""
    n = len(bundle.y_train) + len(bundle.y_val) + len(bundle.y_test)
    stored = int(bundle.image_shape[0])
    native = int(native) if native else stored
    return {
        "native_size": native,
        "grayscale": _is_grayscale(bundle.x_train),
        "images": n,
        "train": len(bundle.y_train),
        "val": len(bundle.y_val),
        "classes": bundle.num_classes,
        "low_res": native <= LOW_RES,
    }


def default_space_dict(
    info: dict[str, Any], *, gpu: bool = False, budget_minutes: float | None = None
) -> dict[str, Any]:
    """The default space (as YAML-ready data) for data described by :func:`describe`.

    With a time budget, a large data set gets a fidelity ladder (:mod:`automl.fidelity`).
    """
    native, n, low = info["native_size"], info["images"], info["low_res"]
    small_data = n < 2000
    photo = not low and not info["grayscale"]
    # The scratch net at the data's own size (in steps of 8), at most 48 px for photos: at
    # 64 px its seed trial took 152 s of the 3-minute CPU budget (700 photos, idle 2 cores).
    scratch_size = int(min(max(8 * -(-native // 8), 16), 64 if not photo else 48))
    # ImageNet features want ImageNet-like scales: low-resolution images are upsampled to
    # 96-128 px too (textures 32 px, one trial: 64 px 0.917, 96 px 0.933, 128 px 0.950).
    sizes = [160, 224] if gpu and photo else [96, 128]
    augment = ["flip", "light", "none"] if photo else ["light", "none"]
    batch = 32 if small_data else 64
    scratch_epochs = [30, 45] if n < 600 else [20, 30]
    families = ["scratch", "pretrained"] if not photo else ["pretrained", "scratch"]
    if native < TINY:  # ImageNet features of a few upscaled pixels do not fit: scratch only
        families = ["scratch"]
    scratch_seed = {
        "family": "scratch",
        "image_size": scratch_size,
        "blocks": 3,
        "conv_layers": 2,
        "filters": 32,
        "width_multiplier": 2.0,
        "kernel_size": 3,
        "separable": False,
        "residual": True,
        "pooling": "avg",
        "dropout": 0.2,
        "learning_rate": 3.0e-3,
        "epochs": scratch_epochs[0],
        "augment": augment[0],
        "batch_size": batch,
    }
    pretrained_seed = {
        "family": "pretrained",
        "backbone": "efficientnet_lite0",
        "image_size": sizes[-1],
        "pooling": "avg",
        "head_layers": 0,
        "head_batchnorm": False,
        "dropout": 0.2,
        "learning_rate": 1.0e-3,
        "fine_tune_depth": 0.2,
        "head_epochs": 10,
        # 5 fine-tuning epochs without augmentation (phase 2 is short; textures and photos,
        # seeds 0-1: 3 epochs + augmentation 0.972-0.978 / 0.967, this 0.983-0.989 / 0.967-0.980)
        "fine_tune_epochs": 5,
        "augment": "none",
        "batch_size": batch,
    }
    seeds = {"scratch": scratch_seed, "pretrained": pretrained_seed}
    space = {
        "name": "auto",
        "description": (
            f"data-aware default for {n} {'grayscale' if info['grayscale'] else 'colour'} "
            f"images of {native} px in {info['classes']} classes ({'GPU' if gpu else 'CPU'})"
        ),
        "objective": "val_accuracy",
        "seed_trials": [seeds[f] for f in families],
        "hyperparameters": {
            "family": {"choice": families},
            "batch_size": {"choice": [batch, batch * 2] if batch == 32 else [batch, 32]},
            "dropout": {"min": 0.0, "max": 0.5},
            "augment": {"choice": augment},
            "label_smoothing": 0.1,
            "weight_decay": 1.0e-2,
            "lr_schedule": "cosine",
            "pooling": {"choice": ["avg", "avgmax"]},
            "pretrained": {
                "backbone": "efficientnet_lite0",
                "weights": "imagenet",
                "image_size": {"choice": sizes},
                "learning_rate": {"min": 3.0e-4, "max": 3.0e-3, "sampling": "log"},
                "fine_tune_depth": {"choice": [0.0, 0.1, 0.2, 0.3]},
                "fine_tune_lr_factor": 0.1,
                "head_epochs": {"choice": [10, 20]},
                "fine_tune_epochs": {"choice": [3, 5, 8]},
                "head_layers": {"choice": [0, 1]},
                "head_units": {"choice": [128, 256]},
                "head_batchnorm": {"choice": [False, True]},
            },
            "scratch": {
                "image_size": scratch_size,
                "learning_rate": {"min": 1.0e-3, "max": 1.0e-2, "sampling": "log"},
                "epochs": {"choice": scratch_epochs},
                "blocks": {"choice": [3, 2, 4]},
                "conv_layers": {"choice": [2, 1]},
                "filters": {"choice": [32, 16, 48]},
                "width_multiplier": {"choice": [2.0, 1.5]},
                "kernel_size": {"choice": [3, 5]},
                "separable": {"choice": [False, True]},
                "residual": {"choice": [True, False]},
            },
        },
    }
    hps = space["hyperparameters"]
    rungs = fidelity.ladder(info.get("train", 0), budget_minutes, gpu=gpu)
    if rungs:  # large data: trials start on a subset, each round on twice the images
        hps["train_images"] = {"choice": rungs}
        val = fidelity.val_cap(info["train"], info.get("val", 0), budget_minutes, gpu=gpu)
        if val:
            hps["val_images"] = val
        for s in space["seed_trials"]:
            s["train_images"] = rungs[0]
        space["description"] += f"; trials on {', '.join(map(str, rungs))} training images"
    for f in ("pretrained", "scratch"):
        if f not in families:
            del hps[f]
    if len(families) == 1:
        hps["family"] = families[0]
    return space


def default_space(
    bundle,
    native: int | None = None,
    *,
    gpu: bool | None = None,
    budget_minutes: float | None = None,
) -> SearchSpace:
    """The data-aware default space for ``bundle`` (see the module docstring)."""
    gpu = has_gpu() if gpu is None else gpu
    info = describe(bundle, native)
    space = parse_space(
        default_space_dict(info, gpu=gpu, budget_minutes=budget_minutes), source="<auto>"
    )
    log.info("default search space chosen from the data: %s", space.description)
    return space


def seed_values(hps, seed: dict[str, Any]) -> dict[str, Any]:
    """KerasTuner values of one seed trial: the seed's values, the space's defaults elsewhere."""
    hps = hps.copy()
    family = seed.get("family")
    for hp in hps.space:  # in definition order: ``family`` comes before what it conditions
        if not hps.is_active(hp):
            continue
        fam, _, base = hp.name.rpartition(".")
        if hp.name in seed:
            value = seed[hp.name]
        elif (not fam or fam == family) and base in seed:
            value = seed[base]
        else:
            value = hp.default
        hps.values[hp.name] = value
    return {k: v for k, v in hps.values.items() if hps.is_active(k)}


def fidelity_rungs(space: SearchSpace) -> tuple[int, ...]:
    """The space's ``train_images`` ladder (its choices), () when it has none."""
    p = space.params.get("train_images")
    return tuple(int(v) for v in p.values) if p is not None and p.kind == "choice" else ()


def seeded_oracle(oracle_cls, seeds: tuple[dict[str, Any], ...], rungs: tuple[int, ...] = ()):
    """A subclass of ``oracle_cls`` whose first ``len(seeds)`` trials take the seeds' values.

    The trial number is the trial id (KerasTuner numbers trials 0, 1, ...), so a resumed
    search does not seed twice. With a fidelity ladder (``rungs``), trial ``i`` trains on
    rung ``i // len(seeds)`` whatever the oracle picked (see :mod:`automl.fidelity`).
    """
    if not seeds and not rungs:
        return oracle_cls

    class SeededOracle(oracle_cls):
        def populate_space(self, trial_id):
            i = int(trial_id) if str(trial_id).isdigit() else len(self.trials)
            if i < len(seeds):
                out = {"status": "RUNNING", "values": seed_values(self.hyperparameters, seeds[i])}
            else:
                out = super().populate_space(trial_id)
            if rungs and out.get("values"):
                out["values"]["train_images"] = fidelity.rung(rungs, i, len(seeds) or 1)
            return out

    SeededOracle.__name__ = f"Seeded{oracle_cls.__name__}"
    return SeededOracle
