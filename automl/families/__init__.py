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

from automl.errors import SearchError
from automl.families.base import HP, Family, ModelParts, global_pool, output_layer
from automl.families.registry import (
    DEFAULT_FAMILY,
    family_names,
    family_of,
    get_family,
    register_family,
)


def build(cfg, target) -> ModelParts:
    """Build the model of ``cfg`` (a :class:`automl.trial.TrialConfig`) for ``target``: a
    number of classes, or a fitted :class:`automl.tasks.Task`.

    A family gets the task where its ``tasks`` list that task beside classification, else
    the number of classes (``task.units_``, what every family took before tasks); a family
    that does not list the task is refused with a one-line error.
    """
    family = family_of(cfg)
    if not hasattr(target, "head"):  # a number of classes
        return family.build(cfg, int(target))
    if target.name not in family.tasks:
        raise SearchError(
            f"model family {family.name!r} does not build {target.name} models (it takes: "
            f"{', '.join(family.tasks)}); choose another family in the space"
        )
    if tuple(family.tasks) == ("classification",):
        return family.build(cfg, target.units_)
    return family.build(cfg, target)


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
    "output_layer",
    "register_family",
]
