"""The ``scratch`` family: a compact convolutional net trained from random init.

For small or low-resolution images where ImageNet features do not fit. It searches what
AutoKeras's ConvBlock searches (blocks, layers per block, filters, kernel size, separable
or plain convolutions, max pooling, dropout) plus residual connections and a width
multiplier, at the data's own resolution::

    resize -> [-1, 1] -> stem conv -> blocks x (conv_layers x [conv -> BN -> ReLU]
    (+ 1x1-projected shortcut if residual) -> 2x2 max pool while >= 8 px)
    -> global pooling -> dropout -> softmax

Filters of block ``b`` are ``filters * width_multiplier ** b`` (rounded to 8). BatchNorm
trains (momentum 0.9: short runs of a few hundred steps need its averages to settle).
Built-in Keras layers only.
"""

from __future__ import annotations

from automl.families.base import ModelParts, global_pool


def block_filters(filters: int, width_multiplier: float, block: int) -> int:
    """Filters of block ``block`` (0-based), a multiple of 8, at least 8."""
    return max(8, int(round(filters * width_multiplier**block / 8.0)) * 8)


def build_scratch(cfg, num_classes: int) -> ModelParts:
    """Build the scratch model of ``cfg`` (see the module docstring for its shape)."""
    import keras

    L = keras.layers
    size = int(cfg.image_size)
    conv_cls = L.SeparableConv2D if cfg.separable else L.Conv2D
    inputs = keras.Input(shape=(None, None, 3), name="image")
    x = L.Resizing(size, size, interpolation="bilinear", name="resize")(inputs)
    x = L.Rescaling(1.0 / 127.5, offset=-1.0, name="normalize")(x)
    x = L.Conv2D(int(cfg.filters), 3, padding="same", use_bias=False, name="stem_conv")(x)
    x = L.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    x = L.ReLU(name="stem_relu")(x)
    spatial = size
    for b in range(int(cfg.blocks)):
        f = block_filters(int(cfg.filters), float(cfg.width_multiplier), b)
        p = f"block{b}_"
        shortcut = x
        for i in range(int(cfg.conv_layers)):
            x = conv_cls(
                f, int(cfg.kernel_size), padding="same", use_bias=False, name=f"{p}conv{i}"
            )(x)
            x = L.BatchNormalization(momentum=0.9, name=f"{p}bn{i}")(x)
            if not (cfg.residual and i == int(cfg.conv_layers) - 1):
                x = L.ReLU(name=f"{p}relu{i}")(x)
        if cfg.residual:
            if shortcut.shape[-1] != f:
                shortcut = L.Conv2D(f, 1, use_bias=False, name=f"{p}proj")(shortcut)
                shortcut = L.BatchNormalization(momentum=0.9, name=f"{p}proj_bn")(shortcut)
            x = L.Add(name=f"{p}add")([x, shortcut])
            x = L.ReLU(name=f"{p}out_relu")(x)
        if spatial >= 8:
            x = L.MaxPooling2D(2, name=f"{p}pool")(x)
            spatial //= 2
    x = global_pool(x, cfg.pooling, prefix="head_")
    x = L.Dropout(float(cfg.dropout), name="head_dropout")(x)
    outputs = L.Dense(num_classes, activation="softmax", dtype="float32", name="head_dense")(x)
    model = keras.Model(inputs, outputs, name="automl_scratch")
    return ModelParts(model=model)
