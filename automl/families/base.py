"""What every model family shares: the parts a build returns, and global pooling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class ModelParts:
    """The full model and handles on its parts (the layers are shared, not copies).

    ``backbone`` and ``features`` are None for a family without a frozen backbone (scratch).
    """

    model: Any  # keras.Model: raw RGB 0-255 images of any size -> class probabilities
    backbone: Any = None  # keras.Model: (image_size, image_size, 3) -> features
    head: Any = None  # keras.Sequential: pooled features -> class probabilities
    features: Any = None  # keras.Model: raw images -> pooled features (resize + backbone)


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
