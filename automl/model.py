"""Backbone + classification head (kept for importers; the code lives in automl.families)."""

from automl.families import ModelParts
from automl.families.pretrained import build_model, unfreeze_top

__all__ = ["ModelParts", "build_model", "unfreeze_top"]
