"""Backbone registry and the families registered in it."""

from automl.backbones.registry import (
    BackboneInfo,
    create_backbone,
    get_backbone,
    list_backbones,
    load_plugins,
    register_backbone,
)

__all__ = [
    "BackboneInfo",
    "create_backbone",
    "get_backbone",
    "list_backbones",
    "load_plugins",
    "register_backbone",
]
