"""The data-aware default search space, and seeding the oracle with known-good trials.

``automl search`` without ``--space`` looks at the data (native image size, grayscale or
colour, number of images and classes, GPU or not) and builds a two-family space:

* low-resolution (<= 48 px) or grayscale images: the ``scratch`` conv net at the data's
  own resolution first, with ``pretrained`` EfficientNet-Lite0 at 96-128 px beside it
  (under 20 px, e.g. 8x8 digit scans, scratch only);
* photos: ``pretrained`` EfficientNet-Lite0 at 96-128 px on a CPU (160-224 on a GPU)
  first, with ``scratch`` at 48 px beside it.

The objective is the task's default (``val_accuracy`` for classification, ``val_macro_f1``
for multi-label, ``val_mae`` for regression). Classes or labels whose largest count is over
:data:`automl.imbalance.WEIGHTS_ABOVE` times the smallest (on the training split) add the
``class_weight`` hyperparameter (``balanced`` first: the seed trials weigh the classes).
Label smoothing is classification's only. Regression: no geometric augmentation in the seed
trials (it can change the target), and the ``pretrained`` seed is the frozen backbone at its
native 224 px with a long head phase, first (:func:`automl.families.pretrained._regression_part`).

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
from automl.families.registry import family_names, get_family
from automl.space import SearchSpace, parse_space

log = logging.getLogger("automl")

LOW_RES = 48  # at or below this native size, images are "low resolution"


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
    import heapq
    import os

    from PIL import Image

    from automl.data.sources import IMAGE_EXTENSIONS

    sizes = []
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        # The first 8 names only: no Path made and sorted for each of a class's 10,000 files.
        with os.scandir(sub) as it:
            first = heapq.nsmallest(8, (e.name for e in it))
        for f in (sub / name for name in first):
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


def store_size_for(native: int | None, gpu: bool = False, task: str | None = None) -> int:
    """The size images are decoded to: enough for the largest size the default space uses,
    never above the images' own (``native``): 224 px on a GPU, and for regression, whose
    pretrained seed runs the backbone at its native 224 px on a CPU too
    (:mod:`automl.families.pretrained`); 128 px otherwise."""
    top = 224 if gpu or task == "regression" else 128
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
        **_task_facts(bundle),
    }


def _task_facts(bundle) -> dict[str, Any]:
    """The task's default objective and the training split's imbalance ratio (only where
    they differ from a balanced classification's, so that its description stays as it was)."""
    from automl.imbalance import WEIGHTS_ABOVE, imbalance_ratio
    from automl.tasks import task_of

    task = task_of(bundle)
    out: dict[str, Any] = {}
    if task.name != "classification":
        out["task"] = task.name
        out["objective"] = task.default_objective
    if task.name != "regression" and len(bundle.y_train):
        ratio = imbalance_ratio(bundle.y_train, bundle.num_classes)
        if ratio > WEIGHTS_ABOVE:
            out["imbalance"] = round(ratio, 2)
    return out


def default_space_dict(
    info: dict[str, Any], *, gpu: bool = False, budget_minutes: float | None = None
) -> dict[str, Any]:
    """The default space (as YAML-ready data) for data described by :func:`describe`.

    Each family that fits the data (:meth:`automl.families.Family.default_space`) adds its
    section and its seed trial, in the order of its rank. With a time budget, a large data
    set gets a fidelity ladder (:mod:`automl.fidelity`).
    """
    data = _shared_choices(info, gpu)
    chosen = _families_for(data)
    families = [name for name, _ in sorted(chosen, key=lambda c: c[1][0])]
    n, batch = info["images"], data["batch"]
    space = {
        "name": "auto",
        "description": (
            f"data-aware default for {n} {'grayscale' if info['grayscale'] else 'colour'} "
            f"images of {info['native_size']} px in {info['classes']} classes "
            f"({'GPU' if gpu else 'CPU'})"
        ),
        "objective": info.get("objective", "val_accuracy"),
        "seed_trials": [dict(chosen)[f][2] for f in families],
        "hyperparameters": {
            "family": {"choice": families},
            "batch_size": {"choice": [batch, batch * 2] if batch == 32 else [batch, 32]},
            "dropout": {"min": 0.0, "max": 0.5},
            "augment": {"choice": data["augment"]},
            "label_smoothing": 0.1,
            "weight_decay": 1.0e-2,
            "lr_schedule": "cosine",
            "pooling": {"choice": ["avg", "avgmax"]},
            **{name: section for name, (_, section, _) in chosen},
        },
    }
    _add_fidelity(space, info, gpu, budget_minutes)
    _add_task(space, info)
    if len(families) == 1:
        space["hyperparameters"]["family"] = families[0]
    return space


def _shared_choices(info: dict[str, Any], gpu: bool) -> dict[str, Any]:
    """:func:`describe`'s facts plus what every family's default part is chosen from."""
    photo = not info["low_res"] and not info["grayscale"]
    augment = ["flip", "light", "none"] if photo else ["light", "none"]
    if info.get("task") == "regression":
        # A flip, rotation, shift or zoom can change a regression target (an angle, a
        # position, a size, a count near the border): off in the seed trials, a choice the
        # search may still make on the validation score.
        augment = ["none", *augment[:-1]]
    return {
        **info,
        "gpu": gpu,
        "photo": photo,
        "augment": augment,
        "batch": 32 if info["images"] < 2000 else 64,
    }


def _families_for(data: dict[str, Any]) -> list[tuple[str, tuple[float, dict, dict]]]:
    """``(name, (rank, section, seed))`` of each registered family that fits the data."""
    out = []
    for name in family_names():
        part = get_family(name).default_space(data)
        if part is not None:
            out.append((name, part))
    return out


def _add_task(space: dict[str, Any], info: dict[str, Any]) -> None:
    """Multi-label and regression: no label smoothing, and the task named in the
    description; imbalanced classes or labels: class weights, on in the seed trials."""
    hps = space["hyperparameters"]
    task = info.get("task", "classification")
    if task != "classification":
        hps.pop("label_smoothing", None)
        space["description"] = space["description"].replace(
            f"in {info['classes']} classes", f"for {task} ({info['classes']} outputs)"
        )
    if info.get("imbalance"):
        hps["class_weight"] = {"choice": ["balanced", "none"]}
        for s in space["seed_trials"]:
            s["class_weight"] = "balanced"
        space["description"] += f"; classes imbalanced {info['imbalance']:g}:1, weighted"


def _add_fidelity(
    space: dict[str, Any], info: dict[str, Any], gpu: bool, budget_minutes: float | None
) -> None:
    """Large data: trials start on a subset, each round on twice the images."""
    hps = space["hyperparameters"]
    rungs = fidelity.ladder(info.get("train", 0), budget_minutes, gpu=gpu)
    if not rungs:
        return
    hps["train_images"] = {"choice": rungs}
    val = fidelity.val_cap(info["train"], info.get("val", 0), budget_minutes, gpu=gpu)
    if val:
        hps["val_images"] = val
    for s in space["seed_trials"]:
        s["train_images"] = rungs[0]
    space["description"] += f"; trials on {', '.join(map(str, rungs))} training images"


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
