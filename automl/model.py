"""Backbone + classification head; freezing and unfreezing for the two training phases."""

from __future__ import annotations

from dataclasses import dataclass

from automl.backbones.registry import get_backbone


@dataclass
class ModelParts:
    """The full model and handles on its parts (the layers are shared, not copies)."""

    model: object  # keras.Model: raw RGB 0-255 images of any size -> class probabilities
    backbone: object  # keras.Model: (image_size, image_size, 3) -> pooled features
    head: object  # keras.Sequential: pooled features -> class probabilities
    features: object  # keras.Model: raw images -> pooled features (resize + backbone)


def _weights_arg(weights: str | None) -> str | None:
    return None if weights in (None, "random", "none") else weights


def build_model(
    backbone: str,
    *,
    num_classes: int,
    image_size: int,
    dropout: float = 0.2,
    weights: str | None = "imagenet",
) -> ModelParts:
    """Build the classifier: resize -> backbone (frozen, BatchNorm in inference mode) -> head."""
    import keras

    info = get_backbone(backbone)
    inputs = keras.Input(shape=(None, None, 3), name="image")
    x = keras.layers.Resizing(image_size, image_size, interpolation="bilinear", name="resize")(
        inputs
    )
    bb = info.build((image_size, image_size, 3), weights=_weights_arg(weights), include_top=False)
    bb.trainable = False
    feats = bb(x, training=False)  # BatchNorm stays in inference mode, also when unfrozen
    head = keras.Sequential(
        [
            keras.layers.Dropout(dropout, name="head_dropout"),
            keras.layers.Dense(
                num_classes, activation="softmax", dtype="float32", name="head_dense"
            ),
        ],
        name="head",
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
