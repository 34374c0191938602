"""Backbone registry: one decorated builder function per backbone.

A builder has the signature ``build(input_shape, weights, include_top) -> keras.Model``.
The model it returns takes raw RGB images, float values in 0-255, of ``input_shape``
and applies the backbone's own normalisation inside, using only built-in Keras layers
(so saved models load in safe mode with no custom objects). With ``include_top=False``
it returns the globally average-pooled feature vector ``(batch, channels)``; with
``include_top=True`` the 1000-class ImageNet softmax probabilities.

``weights`` is ``"imagenet"``, ``None`` (random init) or a path to a Keras weights
file (``*.weights.h5``) saved from the same builder.

Third-party backbones (no fork needed) come from plugin modules that call
:func:`register_backbone` when imported:

- an installed package's entry point in the group ``automl.backbones``, e.g. in its
  pyproject.toml ``[project.entry-points."automl.backbones"] my_net = "my_pkg.backbones"``;
  entry points are imported when a name is not known yet and when the backbones are listed;
- ``--plugin MODULE`` on the command line (:func:`load_plugins`), or a backbone registered
  from an importable module of the user's own.

Plugin modules are recorded in the ``AUTOML_PLUGINS`` environment variable (module names,
comma-separated), which the registry reads: trial worker processes (and Ray workers) inherit
it, so they import the same plugins without any change to what the search sends them.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from automl.errors import PluginError, UnknownBackboneError, quoted

log = logging.getLogger("automl")

ENTRY_POINT_GROUP = "automl.backbones"
PLUGINS_ENV = "AUTOML_PLUGINS"

Builder = Callable[..., "object"]


@dataclass(frozen=True)
class BackboneInfo:
    """What the registry knows about one backbone."""

    name: str
    build: Builder
    default_size: int
    min_size: int = 32
    family: str = ""
    description: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


_REGISTRY: dict[str, BackboneInfo] = {}
_FAMILIES = ("automl.backbones.keras_apps", "automl.backbones.efficientnet_lite")


def register_backbone(
    name: str,
    *,
    default_size: int,
    min_size: int = 32,
    family: str = "",
    description: str = "",
) -> Callable[[Builder], Builder]:
    """Decorator that registers ``build`` under ``name``."""

    def deco(build: Builder) -> Builder:
        if name in _REGISTRY:
            if _REGISTRY[name].build is build:  # the same module imported again
                return build
            raise ValueError(f"backbone {name!r} is registered twice")
        note_registered("backbone", name, build)
        _REGISTRY[name] = BackboneInfo(
            name=name,
            build=build,
            default_size=default_size,
            min_size=min_size,
            family=family,
            description=description or (build.__doc__ or "").strip().partition("\n")[0],
        )
        return build

    return deco


def plugin_modules() -> list[str]:
    return [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]


def note_registered(kind: str, name: str, obj: Any) -> None:
    """What registering a plugin ``obj`` (a backbone's build or a family class) implies for
    trial workers: one defined outside automl is remembered so that workers import its
    module too; one defined in ``__main__`` cannot be imported there, which is warned."""
    module = getattr(obj, "__module__", "") or ""
    if module == "__main__":
        log.warning(
            "%s %r is registered in __main__, which trial worker processes cannot "
            "import: move it into a module (then pass --plugin MODULE, or just import it)",
            kind,
            name,
        )
    elif module.partition(".")[0] != "automl":
        remember_plugin(module)  # trial workers import it too


def remember_plugin(module: str) -> None:
    """Add ``module`` to ``AUTOML_PLUGINS`` (inherited by worker processes)."""
    mods = plugin_modules()
    if module not in mods:
        os.environ[PLUGINS_ENV] = ",".join([*mods, module])


def _import_plugin(module: str, how: str) -> None:
    try:
        importlib.import_module(module)
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise PluginError(
            f"plugin {module!r} ({how}) cannot be imported ({type(e).__name__}: "
            f"{first}); install it or fix the module name"
        ) from None


def load_plugins(modules: list[str] | tuple[str, ...] | str) -> None:
    """Import plugin modules (``--plugin MODULE``: backbones, families, executors) and record them in
    ``AUTOML_PLUGINS``, so trial worker processes import them too."""
    for module in [modules] if isinstance(modules, str) else modules:
        _import_plugin(module, "--plugin")
        remember_plugin(module)


_LOADED_ENTRY_POINTS: set[str] = set()


def _load_entry_points() -> None:
    """Import the ``automl.backbones`` entry points of installed packages not imported yet."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        key = f"{ep.name}={ep.value}"
        if key in _LOADED_ENTRY_POINTS:
            continue
        _LOADED_ENTRY_POINTS.add(key)
        try:
            ep.load()  # importing the module runs its @register_backbone decorators
        except Exception as e:
            first = (str(e).strip().splitlines() or [""])[0][:200]
            raise PluginError(
                f"plugin {ep.value!r} (entry point {ep.name!r} in group "
                f"{ENTRY_POINT_GROUP!r}) cannot be loaded ({type(e).__name__}: {first}); "
                "fix or uninstall the package that provides it"
            ) from None


def _ensure_loaded() -> None:
    # Importing the family modules runs their @register_backbone decorators.
    for module in _FAMILIES:
        importlib.import_module(module)
    for module in plugin_modules():
        _import_plugin(module, f"${PLUGINS_ENV}")


def list_backbones() -> list[str]:
    """Names of every registered backbone (plugins included), sorted."""
    _ensure_loaded()
    _load_entry_points()
    return sorted(_REGISTRY)


def get_backbone(name: str) -> BackboneInfo:
    """The registry entry for ``name``; an error listing the known names otherwise."""
    _ensure_loaded()
    if name not in _REGISTRY:
        _load_entry_points()  # a plugin package may provide it
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownBackboneError(
            f"unknown backbone {quoted(name)}; choose one of: {', '.join(sorted(_REGISTRY))} "
            f"(third-party backbones: install a package with an {ENTRY_POINT_GROUP!r} entry "
            "point, or pass --plugin MODULE)"
        ) from None


def create_backbone(
    name: str,
    weights: str | None = "imagenet",
    include_top: bool = True,
    input_size: int | None = None,
):
    """Build a registered backbone on its own.

    Args:
        name: registry name, e.g. ``"efficientnet_lite0"``.
        weights: ``"imagenet"``, ``None`` for random init, or a local weights file.
        include_top: return the 1000-class ImageNet classifier (softmax) instead of
            pooled features.
        input_size: square input size; the backbone's native size by default.

    Returns:
        A ``keras.Model`` that takes raw RGB images in 0-255.
    """
    info = get_backbone(name)
    size = input_size or info.default_size
    return info.build((size, size, 3), weights=weights, include_top=include_top)
