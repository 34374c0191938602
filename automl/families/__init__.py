"""Model families the search space chooses between: ``pretrained`` and ``scratch``.

Each family builds a :class:`ModelParts` from a trial's configuration, only from built-in
Keras layers, so every model loads with ``keras.models.load_model(..., safe_mode=True)``
and exports to every format. The family's shape hyperparameters are listed in
:data:`automl.space.FAMILY_KEYS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FAMILIES = ("pretrained", "scratch")


@dataclass
class ModelParts:
    """The full model and handles on its parts (the layers are shared, not copies).

    ``backbone`` and ``features`` are None for a family without a frozen backbone (scratch).
    """

    model: Any  # keras.Model: raw RGB 0-255 images of any size -> class probabilities
    backbone: Any = None  # keras.Model: (image_size, image_size, 3) -> features
    head: Any = None  # keras.Sequential: pooled features -> class probabilities
    features: Any = None  # keras.Model: raw images -> pooled features (resize + backbone)


def build(cfg, num_classes: int) -> ModelParts:
    """Build the model of ``cfg`` (a :class:`automl.trial.TrialConfig`) for ``num_classes``."""
    family = getattr(cfg, "family", "pretrained")
    if family == "scratch":
        from automl.families.scratch import build_scratch

        return build_scratch(cfg, num_classes)
    from automl.families.pretrained import build_model

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


__all__ = ["FAMILIES", "ModelParts", "build", "global_pool"]
