"""The ``pretrained`` family: registry backbone (frozen, BatchNorm in inference mode) + searched head.

The head is: pooling (avg, max or both concatenated) -> optional BatchNorm -> 0-2 hidden
Dense layers (ReLU, dropout) -> dropout -> softmax. With ``pooling="avg"`` and no hidden
layers it is exactly the head automl has always built (same layer names).

Two phases: phase 1 trains the head on the frozen backbone (on cached embeddings where the
search keeps them), phase 2 fine-tunes the top ``fine_tune_depth`` of the backbone at a
bounded lower learning rate (:func:`phase2_learning_rate`). Its winners are refit.
"""

from __future__ import annotations

import logging
from typing import Any

from automl.backbones.registry import get_backbone
from automl.errors import SpaceError, UnknownBackboneError, quoted
from automl.families.base import HP, Family, ModelParts, global_pool, output_layer
from automl.families.registry import register_family

log = logging.getLogger("automl")

_WEIGHTS = ("imagenet", "random")
MIN_IMAGE_SIZE = 32  # pretrained backbones take this many pixels or more
# Below this native size the default space leaves the family out (8x8 digit scans: ImageNet
# features of a few upscaled pixels do not fit).
MIN_NATIVE_SIZE = 20
# Phase 2's learning rate is phase 1's times fine_tune_lr_factor, with the factor capped here
# and the result capped at PHASE2_MAX_LR: a fine-tuning rate above that wrecks pretrained
# features (a trial collapsed to chance at 3e-3).
PHASE2_MAX_FACTOR = 0.3
PHASE2_MAX_LR = 5e-4


def _check_backbone(value: str, where: str) -> None:
    try:
        get_backbone(value)
    except UnknownBackboneError as e:
        raise SpaceError(f"search space: {where}: {e}") from None


def _check_weights(value: str, where: str) -> None:
    if value not in _WEIGHTS and not value.endswith(".h5"):
        raise SpaceError(
            f"search space: {where}={quoted(value)} is not allowed; use 'imagenet', 'random', "
            "or a path ending in .weights.h5"
        )


def phase2_learning_rate(cfg) -> float:
    """Phase 2's learning rate, bounded relative to phase 1's and absolutely."""
    return min(cfg.learning_rate * min(cfg.fine_tune_lr_factor, PHASE2_MAX_FACTOR), PHASE2_MAX_LR)


def _weights_arg(weights: str | None) -> str | None:
    return None if weights in (None, "random", "none") else weights


def _spatial(bb):
    """The backbone without its final global average pooling (shares its layers)."""
    import keras

    last = bb.layers[-1]
    if not isinstance(last, keras.layers.GlobalAveragePooling2D):
        raise ValueError(f"backbone {bb.name} does not end in global average pooling")
    return keras.Model(bb.inputs, last.input, name=f"{bb.name}_spatial")


def build_head(
    num_classes,
    *,
    dropout: float = 0.2,
    head_layers: int = 0,
    head_units: int = 128,
    head_batchnorm: bool = False,
):
    """Pooled features -> the task's outputs (a ``keras.Sequential`` named ``head``).

    ``num_classes``: a number of classes (softmax), or a fitted task (its own head).
    """
    import keras

    layers = []
    if head_batchnorm:
        layers.append(keras.layers.BatchNormalization(name="head_bn"))
    for i in range(int(head_layers)):
        units = max(int(head_units) // (2**i), 8)
        layers.append(keras.layers.Dense(units, activation="relu", name=f"head_hidden{i}"))
        layers.append(keras.layers.Dropout(dropout, name=f"head_hidden{i}_dropout"))
    layers += [
        keras.layers.Dropout(dropout, name="head_dropout"),
        output_layer(num_classes),
    ]
    return keras.Sequential(layers, name="head")


def build_model(
    backbone: str,
    *,
    num_classes,
    image_size: int,
    dropout: float = 0.2,
    weights: str | None = "imagenet",
    pooling: str = "avg",
    head_layers: int = 0,
    head_units: int = 128,
    head_batchnorm: bool = False,
) -> ModelParts:
    """Build the model: resize -> backbone (frozen, BatchNorm in inference mode) -> head.

    ``num_classes``: a number of classes, or a fitted task (its head: see :func:`build_head`).
    """
    import keras

    info = get_backbone(backbone)
    inputs = keras.Input(shape=(None, None, 3), name="image")
    x = keras.layers.Resizing(image_size, image_size, interpolation="bilinear", name="resize")(
        inputs
    )
    bb = info.build((image_size, image_size, 3), weights=_weights_arg(weights), include_top=False)
    if pooling != "avg":
        bb = _spatial(bb)
    bb.trainable = False
    feats = bb(x, training=False)  # BatchNorm stays in inference mode, also when unfrozen
    if pooling != "avg":
        feats = global_pool(feats, pooling, prefix="pool_")
    head = build_head(
        num_classes,
        dropout=dropout,
        head_layers=head_layers,
        head_units=head_units,
        head_batchnorm=head_batchnorm,
    )
    outputs = head(feats)
    model = keras.Model(inputs, outputs, name=f"automl_{backbone}")
    return ModelParts(model=model, backbone=bb, head=head, features=keras.Model(inputs, feats))


def unfreeze_top(backbone, fraction: float) -> int:
    """Make the top ``fraction`` of the backbone's weighted layers trainable (BatchNorm stays frozen).

    Returns the number of layers unfrozen.
    """
    import keras

    weighted = [layer for layer in backbone.layers if layer.weights]
    n = int(round(len(weighted) * fraction))
    backbone.trainable = True
    for i, layer in enumerate(weighted):
        frozen = i < len(weighted) - n or isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = not frozen
    for layer in backbone.layers:
        if not layer.weights:
            layer.trainable = False
    return n


@register_family
class Pretrained(Family):
    """A registry backbone, frozen, with a searched head; phase 2 fine-tunes its top."""

    name = "pretrained"
    description = "registry backbone + searched head, optional fine-tuning (two phases)"
    hyperparameters = {
        "backbone": HP(
            "str", "efficientnet_lite0", doc="a registered backbone name", check=_check_backbone
        ),
        "weights": HP(
            "str",
            "imagenet",
            doc="'imagenet', 'random', or a path to a .weights.h5 file",
            check=_check_weights,
        ),
        "image_size": HP(
            "int", 96, 8, 1024, doc="square input size (pretrained backbones need 32 or more)"
        ),
        "fine_tune_depth": HP(
            "float", 0.0, 0.0, 1.0, doc="fraction of backbone layers unfrozen in phase 2"
        ),
        "fine_tune_lr_factor": HP(
            "float", 0.1, 1e-4, 1.0, doc="phase-2 learning rate = learning_rate * this"
        ),
        "head_epochs": HP("int", 5, 1, 1000, doc="phase-1 epochs (frozen backbone)"),
        "fine_tune_epochs": HP("int", 2, 0, 1000, doc="phase-2 epochs (fine-tuning)"),
        "head_layers": HP("int", 0, 0, 2, doc="hidden Dense layers in the head"),
        "head_units": HP("int", 128, 8, 4096, doc="width of the first hidden Dense layer"),
        "head_batchnorm": HP("bool", False, doc="BatchNorm on the pooled features"),
    }
    # Measured (bench/README.md, "Refit on train + validation"): test 0.9765 -> 0.9817.
    refit_pays = True
    head_on_embeddings = True
    phase1_augment = False  # phase 1 sees the backbone's features of the plain images
    phase1_patience = 0
    tasks = ("classification", "multilabel", "regression")

    def build(self, cfg, num_classes) -> ModelParts:
        return build_model(
            cfg.backbone,
            num_classes=num_classes,
            image_size=cfg.image_size,
            dropout=cfg.dropout,
            weights=cfg.weights,
            pooling=cfg.pooling,
            head_layers=cfg.head_layers,
            head_units=cfg.head_units,
            head_batchnorm=cfg.head_batchnorm,
        )

    def schedule(self, cfg, budget: int | None = None) -> tuple[int, int]:
        """Phase 2 runs only where ``fine_tune_depth`` unfreezes something; a budget fills
        phase 1 first."""
        p2 = cfg.fine_tune_epochs if cfg.fine_tune_depth > 0 else 0
        if budget is None:
            return cfg.head_epochs, p2
        if p2 == 0:
            return budget, 0
        p1 = min(cfg.head_epochs, budget)
        return p1, budget - p1

    def max_epochs(self, upper) -> int:
        return int(upper("head_epochs") + upper("fine_tune_epochs"))

    def start_phase2(self, parts: ModelParts, cfg) -> None:
        n = unfreeze_top(parts.backbone, cfg.fine_tune_depth)
        log.debug(
            "phase 2: %d backbone layers unfrozen, learning rate %.2g",
            n,
            phase2_learning_rate(cfg),
        )

    def phase2_learning_rate(self, cfg) -> float:
        return phase2_learning_rate(cfg)

    def end_phase2(self, parts: ModelParts) -> None:
        parts.backbone.trainable = False  # the saved model reloads frozen, as exported

    def space_problem(self, name: str, lowest: Any) -> str | None:
        if name == "image_size" and lowest < MIN_IMAGE_SIZE:
            return f"pretrained backbones take {MIN_IMAGE_SIZE} px or more"
        return None

    def default_space(self, data: dict[str, Any]) -> tuple[float, dict, dict] | None:
        """EfficientNet-Lite0 at 96-128 px on a CPU (160-224 for photos on a GPU); first
        for photos. Regression: see :func:`_regression_part`."""
        if data["native_size"] < MIN_NATIVE_SIZE:
            return None
        # ImageNet features want ImageNet-like scales: low-resolution images are upsampled to
        # 96-128 px too (textures 32 px, one trial: 64 px 0.917, 96 px 0.933, 128 px 0.950).
        sizes = [160, 224] if data["gpu"] and data["photo"] else [96, 128]
        seed = {
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
            # seeds 0-1: 3 epochs + augmentation 0.972-0.978 / 0.967, this 0.983-0.989 /
            # 0.967-0.980)
            "fine_tune_epochs": 5,
            "augment": "none",
            "batch_size": data["batch"],
        }
        section = {
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
        }
        if data.get("task") == "regression":
            return 0, *_regression_part(section, seed, data)
        return (0 if data["photo"] else 1), section, seed


def _regression_part(section: dict, seed: dict, data: dict[str, Any]) -> tuple[dict, dict]:
    """Regression's section and seed: first, the frozen backbone at its native 224 px with a
    40-epoch head at a learning rate of 3e-3 on its cached features (the hand-written
    transfer recipe, trained further).

    A linear head has to fit a value, not only rank a class first, and on a frozen backbone's
    cached features an epoch costs a fraction of a second. Measured on both regression sets
    of bench/datasets.py (frozen Lite0 features, a linear head, AdamW with the cosine
    schedule, val MAE, mean of 2 seeds; bench/tasks_regression_head.py): 128 -> 224 px
    (40 epochs at 1e-3), rotation 9.32 -> 8.53 deg, count 0.917 -> 0.668; at 224 px, 10
    epochs at 1e-3 (the classification seed) 11.87 / 0.827, 40 at 1e-3 8.53 / 0.668, 40 at
    3e-3 7.26 / 0.627. A Huber loss instead of squared error: 7.21 / 0.631 at 3e-3, no gain,
    not used.
    """
    sizes = [160, 224] if data["gpu"] and data["photo"] else [128, 224]
    section = {**section, "image_size": {"choice": sizes}, "head_epochs": {"choice": [40, 20]}}
    seed = {**seed, "image_size": 224, "fine_tune_depth": 0.0, "head_epochs": 40}
    seed["learning_rate"] = 3.0e-3
    return section, seed
