"""What a process that trains needs from its accelerator: mixed precision, XLA, memory growth."""

from __future__ import annotations

from typing import Any


def setup_accelerator(mixed_precision: bool = True, xla: bool = True) -> dict[str, Any]:
    """Mixed precision and XLA where a GPU helps; no grabbing all GPU memory up front.

    Returns ``{"gpus", "mixed_precision", "jit_compile"}`` for this process.
    """
    import keras

    gpus = []
    try:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        for g in gpus:
            try:
                tf.config.experimental.set_memory_growth(g, True)
            except RuntimeError:  # already initialised
                pass
    except ImportError:
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
    use_mp = bool(gpus) and mixed_precision
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mp else "float32")
    return {
        "gpus": len(gpus),
        "mixed_precision": use_mp,
        "jit_compile": "auto" if (gpus and xla) else False,
    }
