"""A third-party backbone, registered when automl imports this package's entry point."""

from automl.backbones import register_backbone


def tiny_conv(input_shape, weights=None, include_top=False, name="tiny_conv"):
    """Two strided convolutions and global average pooling (built-in Keras layers only)."""
    import keras

    if weights not in (None, "random"):
        raise ValueError(f"{name} has no pretrained weights (got {weights!r})")
    inputs = keras.Input(input_shape)
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    if include_top:
        x = keras.layers.Dense(1000, activation="softmax")(x)
    return keras.Model(inputs, x, name=name)


@register_backbone("plugin_tiny", default_size=32, family="plugin")
def plugin_tiny(input_shape, weights=None, include_top=False):
    """A tiny conv net from an installed plugin package (entry point)."""
    return tiny_conv(input_shape, weights, include_top, "plugin_tiny")
