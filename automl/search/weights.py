"""Refuse, before a search starts, a weights file in the space that is missing or does not fit."""

from __future__ import annotations

import warnings
from pathlib import Path

from automl.errors import AutoMLError
from automl.space import SearchSpace


def check_weights_files(space: SearchSpace) -> None:
    """Refuse, before the search starts, a local weights file that is missing or does not fit.

    Each backbone of the space is built once (at the smallest image size) and the file loaded
    into it, exactly as a trial will.
    """
    from automl.backbones.registry import create_backbone
    from automl.errors import WeightsUnavailableError

    files = [w for w in space.values_of("weights") if w not in ("imagenet", "random", "none")]
    if not files:
        return
    for w in files:
        if not Path(w).is_file():
            raise WeightsUnavailableError(
                f"weights file {w!r} in the search space does not exist; pass an existing "
                ".weights.h5 file, or weights: imagenet / random"
            )
    import keras

    size = int(min(space.values_of("image_size")))
    for w in files:
        for name in space.values_of("backbone"):
            try:
                with warnings.catch_warnings():  # Keras warns once per layer it cannot match
                    warnings.simplefilter("ignore")
                    create_backbone(name, weights=w, include_top=False, input_size=size)
            except AutoMLError:
                raise
            except Exception as e:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
                raise WeightsUnavailableError(
                    f"weights file {w!r} does not fit backbone {name} ({first}); "
                    "use a file saved from the same backbone"
                ) from None
            finally:
                keras.backend.clear_session()
