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
Built-in Keras layers only. One phase of ``epochs`` on augmented images, with early stopping.
Its winners are not refit (a replay stops mid-schedule, where a scratch net's epoch-to-epoch
validation scores swing; measured on three sets and two seeds, the refit scored worse than
the trial: mean test 0.9556 -> 0.9181, five of six worse; bench/README.md).
"""

from __future__ import annotations

from typing import Any

from automl.families.base import HP, Family, ModelParts, global_pool, output_layer
from automl.families.registry import register_family


def block_filters(filters: int, width_multiplier: float, block: int) -> int:
    """Filters of block ``block`` (0-based), a multiple of 8, at least 8."""
    return max(8, int(round(filters * width_multiplier**block / 8.0)) * 8)


def build_scratch(cfg, num_classes) -> ModelParts:
    """Build the scratch model of ``cfg`` (see the module docstring for its shape) for
    ``num_classes`` classes or a fitted task (its output layer: softmax, sigmoid, linear)."""
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
    outputs = output_layer(num_classes)(x)
    model = keras.Model(inputs, outputs, name="automl_scratch")
    return ModelParts(model=model)


@register_family
class Scratch(Family):
    """A compact conv net trained from random init at the data's own resolution."""

    name = "scratch"
    description = "compact conv net from random init (one phase)"
    hyperparameters = {
        "image_size": HP(
            "int", 32, 8, 1024, doc="square input size (pretrained backbones need 32 or more)"
        ),
        "epochs": HP("int", 20, 1, 1000, doc="scratch: training epochs (one phase)"),
        "blocks": HP("int", 3, 1, 6, doc="scratch: conv blocks (each halves the resolution)"),
        "conv_layers": HP("int", 2, 1, 4, doc="scratch: conv layers per block"),
        "filters": HP("int", 32, 8, 512, doc="scratch: filters of the first block"),
        "width_multiplier": HP("float", 2.0, 1.0, 4.0, doc="scratch: filter growth per block"),
        "kernel_size": HP("int", 3, 1, 9, doc="scratch: convolution kernel size"),
        "separable": HP("bool", False, doc="scratch: depthwise-separable convolutions"),
        "residual": HP("bool", False, doc="scratch: residual connection around each block"),
    }
    no_refit_reason = "a scratch net's replay scored worse"
    tasks = ("classification", "multilabel", "regression")

    def build(self, cfg, num_classes) -> ModelParts:
        return build_scratch(cfg, num_classes)

    def default_space(self, data: dict[str, Any]) -> tuple[float, dict, dict] | None:
        """The net at the data's own size (in steps of 8), at most 48 px for photos; first
        for low-resolution or grayscale images."""
        native, photo = data["native_size"], data["photo"]
        # At 64 px its seed trial took 152 s of the 3-minute CPU budget (700 photos, idle
        # 2 cores).
        size = int(min(max(8 * -(-native // 8), 16), 64 if not photo else 48))
        epochs = [30, 45] if data["images"] < 600 else [20, 30]
        seed = {
            "family": "scratch",
            "image_size": size,
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
            "epochs": epochs[0],
            "augment": data["augment"][0],
            "batch_size": data["batch"],
        }
        section = {
            "image_size": size,
            "learning_rate": {"min": 1.0e-3, "max": 1.0e-2, "sampling": "log"},
            "epochs": {"choice": epochs},
            "blocks": {"choice": [3, 2, 4]},
            "conv_layers": {"choice": [2, 1]},
            "filters": {"choice": [32, 16, 48]},
            "width_multiplier": {"choice": [2.0, 1.5]},
            "kernel_size": {"choice": [3, 5]},
            "separable": {"choice": [False, True]},
            "residual": {"choice": [True, False]},
        }
        return (1 if photo else 0), section, seed
