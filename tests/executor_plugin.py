"""A test plugin (``--plugin tests.executor_plugin``): backbones whose trials succeed, fail,
or kill the worker process that runs them, for the executor contract suite
(tests/test_executors.py). Worker processes import it through ``AUTOML_PLUGINS``."""

from __future__ import annotations

import os

from automl.backbones import register_backbone

SEARCH_PID = "AUTOML_TEST_SEARCH_PID"  # the search's own process: never killed


def _tiny(input_shape, name: str):
    import keras

    inputs = keras.Input(input_shape)
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, x, name=name)


@register_backbone("contract_ok", default_size=32, family="plugin")
def contract_ok(input_shape, weights=None, include_top=False):
    """One strided convolution: a trial of a second or so."""
    return _tiny(input_shape, "contract_ok")


@register_backbone("contract_fail", default_size=32, family="plugin")
def contract_fail(input_shape, weights=None, include_top=False):
    """A trial that fails (its process lives on)."""
    raise RuntimeError("contract_fail: this trial fails on purpose")


@register_backbone("contract_die", default_size=32, family="plugin")
def contract_die(input_shape, weights=None, include_top=False):
    """A trial whose worker process dies (as under the out-of-memory killer)."""
    if str(os.getpid()) != os.environ.get(SEARCH_PID):
        os._exit(3)
    raise RuntimeError("contract_die: no worker process to kill in the search's own process")
