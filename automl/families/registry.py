"""The model-family registry: one decorated :class:`~automl.families.base.Family` class each.

A family is one module with one class (timm's ``@register_model``)::

    @register_family
    class Tiny(Family):
        name = "tiny"
        hyperparameters = {"epochs": HP("int", 5, 1, 1000), "units": HP("int", 16, 1, 4096)}

        def build(self, cfg, num_classes):
            ...

The space (which keys a family takes and their defaults), the data-aware default space,
the trial (build, schedule, phase policies) and the refit ask the registry; nothing else
compares family names. :data:`HYPERPARAMETERS` is every registered family's hyperparameters
and the shared ones, in the order a space declares them to KerasTuner.

A family from a plugin module (``--plugin MODULE``, or any module of the user's that
registers one) is recorded in ``AUTOML_PLUGINS`` as backbones are
(:mod:`automl.backbones.registry`), so trial worker processes import it too.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any

from automl.backbones.registry import load_plugins, note_registered, plugin_modules
from automl.errors import SpaceError, quoted
from automl.families.base import HP, OPT_IN_KEYS, SHARED_HYPERPARAMETERS, Family

DEFAULT_FAMILY = "pretrained"  # a configuration that names no family
# The built-in families: every other module of this package (base and registry aside).
_BUILTIN = tuple(
    f"automl.families.{m.name}"
    for m in pkgutil.iter_modules([str(Path(__file__).parent)])
    if m.name not in ("base", "registry")
)
# The order hyperparameters are declared to KerasTuner in. Each one takes one draw of the
# random oracle in this order, so a seeded search repeats its trials only while it stays
# the same: a new hyperparameter (of any family) goes after these.
_DRAW_ORDER = (
    *("backbone", "weights", "image_size", "learning_rate", "fine_tune_lr_factor"),
    *("batch_size", "dropout", "fine_tune_depth", "head_epochs", "fine_tune_epochs"),
    *("augment", "label_smoothing", "family", "weight_decay", "lr_schedule", "pooling"),
    *("train_images", "val_images", "head_layers", "head_units", "head_batchnorm"),
    *("epochs", "blocks", "conv_layers", "filters", "width_multiplier", "kernel_size"),
    *("separable", "residual", "class_weight"),
)

_REGISTRY: dict[str, Family] = {}
# name -> spec, kept up to date as families register (the same dict object throughout).
HYPERPARAMETERS: dict[str, HP] = {}


def register_family(cls: type[Family]) -> type[Family]:
    """Class decorator that registers a :class:`Family` subclass under its ``name``."""
    name = getattr(cls, "name", "")
    if not name or "." in name or "/" in name:
        raise ValueError(f"family class {cls.__name__} needs a name without '.' or '/'")
    if name in _REGISTRY:
        old = type(_REGISTRY[name])
        if (old.__module__, old.__qualname__) == (cls.__module__, cls.__qualname__):
            return cls  # the same module imported again
        raise ValueError(f"model family {name!r} is registered twice")
    _check_hyperparameters(name, cls.hyperparameters)
    _REGISTRY[name] = cls()
    _rebuild()
    note_registered("model family", name, cls)
    return cls


def _check_hyperparameters(name: str, own: dict[str, HP]) -> None:
    for key, spec in own.items():
        if key == "family" or key in SHARED_HYPERPARAMETERS:
            raise ValueError(f"family {name!r} declares {key!r}, which every family shares")
        for other in _REGISTRY.values():
            theirs = other.hyperparameters.get(key)
            if theirs is not None and not theirs.same_check(spec):
                raise ValueError(
                    f"family {name!r} declares {key!r} as {spec}, family {other.name!r} as "
                    f"{theirs}: a shared name needs the same kind and bounds"
                )


def _rebuild() -> None:
    names = family_names()
    specs: dict[str, HP] = {
        "family": HP(
            "str", DEFAULT_FAMILY, allowed=names, doc=f"model family: {' | '.join(names)}"
        ),
        **SHARED_HYPERPARAMETERS,
    }
    for f in names:
        for key, spec in _REGISTRY[f].hyperparameters.items():
            specs.setdefault(key, spec)
    order = [k for k in _DRAW_ORDER if k in specs]
    order += [k for f in names for k in _REGISTRY[f].hyperparameters if k not in order]
    HYPERPARAMETERS.clear()
    HYPERPARAMETERS.update({k: specs[k] for k in dict.fromkeys(order)})


def family_names() -> tuple[str, ...]:
    """The registered families: the built-in ones by module name, then plugins in the order
    they registered."""
    order = list(_REGISTRY)

    def key(name: str) -> tuple:
        module = type(_REGISTRY[name]).__module__
        return (0, module, 0) if module in _BUILTIN else (1, "", order.index(name))

    return tuple(sorted(_REGISTRY, key=key))


def get_family(name: str) -> Family:
    """The registered family ``name``; a one-line error naming the known ones otherwise."""
    if name not in _REGISTRY:
        load_plugins(plugin_modules())  # a worker process: the search's plugins
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise SpaceError(
            f"unknown model family {quoted(name)}; choose one of: {', '.join(family_names())} "
            "(a family from a plugin: pass --plugin MODULE)"
        ) from None


def family_of(cfg: Any) -> Family:
    """The family of a trial configuration (a TrialConfig or a mapping of its values)."""
    name = cfg.get("family") if isinstance(cfg, dict) else getattr(cfg, "family", None)
    return get_family(name or DEFAULT_FAMILY)


def shared_keys() -> tuple[str, ...]:
    """The hyperparameters every family takes (``family`` aside), in declaration order."""
    return tuple(k for k in HYPERPARAMETERS if k in SHARED_HYPERPARAMETERS)


def family_keys(family: str) -> tuple[str, ...]:
    """Every hyperparameter a trial of ``family`` uses (``family`` included)."""
    return ("family", *shared_keys(), *get_family(family).hyperparameters)


def owners(key: str) -> list[str]:
    """The families whose own hyperparameter ``key`` is (none for a shared one)."""
    return [f for f in family_names() if key in _REGISTRY[f].hyperparameters]


def uses(family: str | None, key: str) -> bool:
    """Whether a trial of ``family`` (None: the default family) uses hyperparameter ``key``."""
    return key in family_keys(family or DEFAULT_FAMILY)


def default_of(family: str, key: str) -> Any:
    """``family``'s default value of hyperparameter ``key``."""
    own = get_family(family).hyperparameters.get(key)
    return (own or HYPERPARAMETERS[key]).default


def refit_refusal(family: str) -> str | None:
    """Why a search's winner of ``family`` is not refit on train + validation (None: it is)."""
    fam = get_family(family)
    if fam.refit_pays:
        return None
    refit = [f for f in family_names() if _REGISTRY[f].refit_pays]
    return f"only {', '.join(refit)} trials are refit ({fam.no_refit_reason})"


for _module in _BUILTIN:  # their @register_family decorators fill the registry
    importlib.import_module(_module)

__all__ = [
    "DEFAULT_FAMILY",
    "HYPERPARAMETERS",
    "OPT_IN_KEYS",
    "default_of",
    "family_keys",
    "family_names",
    "family_of",
    "get_family",
    "owners",
    "refit_refusal",
    "register_family",
    "shared_keys",
    "uses",
]
