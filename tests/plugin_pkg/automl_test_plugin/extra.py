"""A backbone no entry point names: known only after ``--plugin automl_test_plugin.extra``."""

from automl.backbones import register_backbone
from automl_test_plugin import tiny_conv


@register_backbone("plugin_tiny_cli", default_size=32, family="plugin")
def plugin_tiny_cli(input_shape, weights=None, include_top=False):
    """A tiny conv net loaded by --plugin."""
    return tiny_conv(input_shape, weights, include_top, "plugin_tiny_cli")
