"""Model families the search space chooses between: ``pretrained``, ``scratch``, and plugins.

A family is one :class:`Family` subclass in one module, registered with
:func:`register_family`: it owns its hyperparameters and their defaults, ``build``, its
training schedule (one phase or two) and its policies (e.g. whether a refit pays). Each
built-in family builds a :class:`ModelParts` only from built-in Keras layers, so every
model loads with ``keras.models.load_model(..., safe_mode=True)`` and exports to every
format. ``--plugin MODULE`` registers a family from a module of the user's, as it does
backbones.
"""

from __future__ import annotations

from automl.families.base import HP, Family, ModelParts, global_pool
from automl.families.registry import (
    DEFAULT_FAMILY,
    family_names,
    family_of,
    get_family,
    register_family,
)


def build(cfg, num_classes: int) -> ModelParts:
    """Build the model of ``cfg`` (a :class:`automl.trial.TrialConfig`) for ``num_classes``."""
    return family_of(cfg).build(cfg, num_classes)


def __getattr__(name: str):
    if name == "FAMILIES":  # the registered families' names, as they stand now
        return family_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_FAMILY",
    "FAMILIES",
    "HP",
    "Family",
    "ModelParts",
    "build",
    "family_names",
    "family_of",
    "get_family",
    "global_pool",
    "register_family",
]
