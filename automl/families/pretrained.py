"""The ``pretrained`` family: registry backbone (frozen, BatchNorm in inference mode) + searched head.

The head is: pooling (avg, max or both concatenated) -> optional BatchNorm -> 0-2 hidden
Dense layers (ReLU, dropout) -> dropout -> softmax. With ``pooling="avg"`` and no hidden
layers it is exactly the head automl has always built (same layer names).
"""

from __future__ import annotations

from automl.backbones.registry import get_backbone
from automl.families.base import ModelParts, global_pool


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
    num_classes: int,
    *,
    dropout: float = 0.2,
    head_layers: int = 0,
    head_units: int = 128,
    head_batchnorm: bool = False,
):
    """Pooled features -> class probabilities (a ``keras.Sequential`` named ``head``)."""
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
        keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="head_dense"),
    ]
    return keras.Sequential(layers, name="head")


def build_model(
    backbone: str,
    *,
    num_classes: int,
    image_size: int,
    dropout: float = 0.2,
    weights: str | None = "imagenet",
    pooling: str = "avg",
    head_layers: int = 0,
    head_units: int = 128,
    head_batchnorm: bool = False,
) -> ModelParts:
    """Build the classifier: resize -> backbone (frozen, BatchNorm in inference mode) -> head."""
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
