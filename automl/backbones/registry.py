"""Backbone registry: one decorated builder function per backbone.

A builder has the signature ``build(input_shape, weights, include_top) -> keras.Model``.
The model it returns takes raw RGB images, float values in 0-255, of ``input_shape``
and applies the backbone's own normalisation inside, using only built-in Keras layers
(so saved models load in safe mode with no custom objects). With ``include_top=False``
it returns the globally average-pooled feature vector ``(batch, channels)``; with
``include_top=True`` the 1000-class ImageNet softmax probabilities.

``weights`` is ``"imagenet"``, ``None`` (random init) or a path to a Keras weights
file (``*.weights.h5``) saved from the same builder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from automl.errors import UnknownBackboneError

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
            raise ValueError(f"backbone {name!r} is registered twice")
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


def _ensure_loaded() -> None:
    # Importing the family modules runs their @register_backbone decorators.
    import importlib

    for module in _FAMILIES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:  # a family not installed in this checkout
            if e.name != module:
                raise


def list_backbones() -> list[str]:
    """Names of every registered backbone, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def get_backbone(name: str) -> BackboneInfo:
    """The registry entry for ``name``; an error listing the known names otherwise."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownBackboneError(
            f"unknown backbone {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}"
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
