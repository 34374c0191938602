"""A third model family, as a user would write one: one module, one decorated class.

``tests/test_families.py`` registers it with ``--plugin tests.plugin_family`` and runs a
search with it. ``units`` is a hyperparameter no built-in family has.
"""

from __future__ import annotations

from automl.families import HP, Family, ModelParts, register_family


@register_family
class Dense(Family):
    """A one-hidden-layer perceptron on the downscaled pixels (one phase)."""

    name = "dense"
    hyperparameters = {
        "image_size": HP("int", 8, 8, 1024, doc="square input size"),
        "epochs": HP("int", 2, 1, 1000, doc="training epochs"),
        "units": HP("int", 16, 4, 512, doc="hidden units"),
    }

    def build(self, cfg, num_classes: int) -> ModelParts:
        import keras

        L = keras.layers
        size = int(cfg.image_size)
        inputs = keras.Input(shape=(None, None, 3), name="image")
        x = L.Resizing(size, size, name="resize")(inputs)
        x = L.Rescaling(1.0 / 255.0, name="normalize")(x)
        x = L.Flatten(name="flatten")(x)
        x = L.Dense(int(cfg.units), activation="relu", name="hidden")(x)
        x = L.Dropout(float(cfg.dropout), name="head_dropout")(x)
        outputs = L.Dense(num_classes, activation="softmax", dtype="float32", name="head_dense")(x)
        return ModelParts(model=keras.Model(inputs, outputs, name="automl_dense"))
