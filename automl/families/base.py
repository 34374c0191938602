"""What every model family shares: the hyperparameter spec, the :class:`Family` base class
(its hyperparameters, build, schedule and policies), the hyperparameters every family takes,
the parts a build returns, and global pooling."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_AUGMENT = ("none", "light", "flip")
_POOLING = ("avg", "max", "avgmax")


@dataclass(frozen=True)
class HP:
    """One hyperparameter: its kind (``int``, ``float``, ``str``, ``bool``), default and check."""

    kind: str
    default: Any
    low: float | None = None  # inclusive bounds for numbers
    high: float | None = None
    allowed: tuple | None = None
    doc: str = ""
    # A check of its own, run after kind, bounds and allowed values: ``check(value, where)``
    # raises automl.errors.SpaceError naming ``where`` (e.g. an unknown backbone).
    check: Callable[[Any, str], None] | None = field(default=None, compare=False)

    def same_check(self, other: HP) -> bool:
        """Whether ``other`` checks values as this one does (defaults and docs may differ)."""
        return (self.kind, self.low, self.high, self.allowed, self.check) == (
            other.kind,
            other.low,
            other.high,
            other.allowed,
            other.check,
        )


# The hyperparameters every family takes (``family`` itself is the registry's).
SHARED_HYPERPARAMETERS: dict[str, HP] = {
    "learning_rate": HP("float", 1e-3, 1e-6, 1.0, doc="phase-1 (head) learning rate"),
    "batch_size": HP("int", 32, 1, 4096),
    "dropout": HP("float", 0.2, 0.0, 0.95, doc="dropout before the classifier"),
    "augment": HP("str", "none", allowed=_AUGMENT, doc="phase-2 augmentation"),
    "label_smoothing": HP("float", 0.0, 0.0, 0.5),
    "weight_decay": HP("float", 0.0, 0.0, 1.0, doc="AdamW decoupled weight decay"),
    # The default a search has always trained with (every space fills it in); a config
    # built without it, e.g. TrialConfig(), used "constant" before the registry held it.
    "lr_schedule": HP(
        "str", "cosine", allowed=("cosine", "constant"), doc="warm-up + cosine decay per phase"
    ),
    "pooling": HP("str", "avg", allowed=_POOLING, doc="global pooling: avg, max or avgmax"),
    # fidelity (automl.fidelity): a stratified subset of the splits; 0 = all images. In a
    # space only where it sets them (OPT_IN_KEYS): every hyperparameter, fixed or not, takes
    # one of the random oracle's draws, so adding them everywhere would change which values
    # a seeded search of an existing space tries.
    "train_images": HP("int", 0, 0, 10**9, doc="training images a trial uses (0: all)"),
    "val_images": HP("int", 0, 0, 10**9, doc="validation images epochs are scored on (0: all)"),
    # Imbalance (automl.imbalance): "balanced" weighs each class n / (classes * count)
    # (classification) or each image by its labels' positive weights (multi-label). Opt-in
    # like the fidelity keys: the data-aware default space adds it for imbalanced data.
    "class_weight": HP(
        "str",
        "none",
        allowed=("none", "balanced"),
        doc="loss weights against class imbalance: none or balanced (not for regression)",
    ),
}
OPT_IN_KEYS = ("train_images", "val_images", "class_weight")


@dataclass
class ModelParts:
    """The full model and handles on its parts (the layers are shared, not copies).

    ``backbone`` and ``features`` are None for a family without a frozen backbone (scratch).
    """

    model: Any  # keras.Model: raw RGB 0-255 images of any size -> class probabilities
    backbone: Any = None  # keras.Model: (image_size, image_size, 3) -> features
    head: Any = None  # keras.Sequential: pooled features -> class probabilities
    features: Any = None  # keras.Model: raw images -> pooled features (resize + backbone)


class Family:
    """A model family: its hyperparameters, how it builds and trains, and its policies.

    Subclass it in one module and decorate the class with
    :func:`automl.families.register_family`; the space, the default space, the trial and the
    refit ask the registry. The base class is a one-phase family trained for ``epochs``.
    """

    name: str = ""
    description: str = ""
    # Its own hyperparameters (beside SHARED_HYPERPARAMETERS), in the order a trial logs them.
    hyperparameters: dict[str, HP] = {}
    # Policies.
    refit_pays: bool = False  # a refit on train + validation is worth one more trial
    no_refit_reason: str = "its refit is not measured"  # said when a winner is not refit
    head_on_embeddings: bool = False  # phase 1 trains only the head, on cacheable features
    phase1_augment: bool = True  # phase 1 trains on augmented images (``augment``)
    phase1_patience: int = 2  # phase-1 early stopping, times the search's patience (0: none)
    # The tasks (automl.tasks names) its build() takes a fitted Task for; for any other task
    # a search refuses it. A family that lists classification only gets ``task.units_`` (an
    # int, the number of classes), as every family did before tasks.
    tasks: tuple[str, ...] = ("classification",)

    def build(self, cfg, num_classes) -> ModelParts:
        """The model of ``cfg`` (a :class:`automl.trial.TrialConfig`) for ``num_classes``
        classes, or for a fitted :class:`automl.tasks.Task` where :attr:`tasks` lists more
        than classification (see :func:`output_layer`)."""
        raise NotImplementedError(f"family {self.name!r} does not define build()")

    def schedule(self, cfg, budget: int | None = None) -> tuple[int, int]:
        """Epochs of (phase 1, phase 2); ``budget`` (Hyperband's resource) is their total."""
        return (cfg.epochs if budget is None else budget), 0

    def max_epochs(self, upper: Callable[[str], Any]) -> int:
        """The most epochs a trial can run, given ``upper(name)``: a name's largest value."""
        return int(upper("epochs"))

    def start_phase2(self, parts: ModelParts, cfg) -> None:
        """Make the model ready for phase 2 (a two-phase family: unfreeze part of it)."""
        raise NotImplementedError(f"family {self.name!r} has no phase 2")

    def phase2_learning_rate(self, cfg) -> float:
        """Phase 2's learning rate (logged as the trial's ``phase2_learning_rate``)."""
        raise NotImplementedError(f"family {self.name!r} has no phase 2")

    def end_phase2(self, parts: ModelParts) -> None:
        """Undo what phase 2 changed that the saved model must not keep."""

    def space_problem(self, name: str, lowest: Any) -> str | None:
        """Why a space whose ``name`` goes as low as ``lowest`` does not fit (None: it fits)."""
        return None

    def default_space(self, data: dict[str, Any]) -> tuple[float, dict, dict] | None:
        """This family in the data-aware default space: ``(rank, section, seed trial)``.

        ``data`` is :func:`automl.autospace.describe`'s plus the shared choices (``gpu``,
        ``photo``, ``augment``, ``batch``). Families sort by rank; None leaves it out.
        """
        return None


def output_layer(target, name: str = "head_dense"):
    """The model's last layer: ``target.head()`` for a fitted task (softmax, sigmoid or
    linear units), else a float32 softmax ``Dense(target)`` for ``target`` classes."""
    if hasattr(target, "head"):
        return target.head(name=name)
    import keras

    return keras.layers.Dense(int(target), activation="softmax", dtype="float32", name=name)


def global_pool(x, pooling: str, prefix: str = ""):
    """Global avg, max, or both concatenated (``avgmax``) over a feature map."""
    import keras

    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name=f"{prefix}gap")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name=f"{prefix}gmp")(x)
    return keras.layers.Concatenate(name=f"{prefix}avgmax")(
        [
            keras.layers.GlobalAveragePooling2D(name=f"{prefix}gap")(x),
            keras.layers.GlobalMaxPooling2D(name=f"{prefix}gmp")(x),
        ]
    )
