"""Shared set-up for the benchmarks: the path, quiet logs, one fixed trial configuration."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# One configuration from the default space: EfficientNet-Lite0 ImageNet weights at 96 px.
FIXED = {
    "backbone": "efficientnet_lite0",
    "weights": "imagenet",
    "image_size": 96,
    "learning_rate": 2e-3,
    "batch_size": 32,
    "dropout": 0.2,
    "fine_tune_depth": 0.1,
    "head_epochs": 5,
    "fine_tune_epochs": 2,
    "augment": "none",
}


def fixed_space(**overrides) -> dict:
    """A search space in which every hyperparameter is fixed (one possible trial)."""
    return {"name": "bench", "hyperparameters": {**FIXED, **overrides}}


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20
