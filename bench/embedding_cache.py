"""Phase 1 on cached embeddings vs the naive frozen-backbone fit, same epochs, same data.

Phase 1 only (fine_tune_depth 0), EfficientNet-Lite0 ImageNet weights at 96 px on the
demo data. Times are phase 1's wall time (model building excluded); "cold" includes computing the embeddings; "warm" is a second trial that shares
them (same backbone and image size), as in a search.

    .venv/bin/python bench/embedding_cache.py [--epochs 10]
"""

from __future__ import annotations

import argparse

import _common

import automl
from automl.embeddings import EmbeddingCache
from automl.trial import RunOptions, TrialConfig, run_trial


def timed(cfg, data, cache, use_cache: bool) -> tuple[float, float]:
    import keras

    out = run_trial(cfg, data, options=RunOptions(embedding_cache=use_cache), embeddings=cache)
    keras.backend.clear_session()
    return out.metrics["phase1_seconds"], out.metrics["val_accuracy"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    a = ap.parse_args()
    data = automl.load_data("demo", seed=0)
    cfg = TrialConfig.from_values(
        {**_common.FIXED, "fine_tune_depth": 0.0, "head_epochs": a.epochs}
    )
    timed(cfg, data, EmbeddingCache(), True)  # warm-up: weight conversion cache, imports
    cache = EmbeddingCache()
    cold, acc_c = timed(cfg, data, cache, True)
    warm, acc_w = timed(cfg, data, cache, True)
    naive, acc_n = timed(cfg, data, None, False)
    print(
        f"phase 1, {a.epochs} head epochs, {len(data.y_train)} train + {len(data.y_val)} val images, "
        f"{cfg.backbone} @ {cfg.image_size}px"
    )
    print(f"  naive frozen-backbone fit: {naive:6.1f}s  val_accuracy={acc_n:.3f}")
    print(
        f"  cached, cold (computes):   {cold:6.1f}s  val_accuracy={acc_c:.3f}  speed-up {naive / cold:.1f}x"
    )
    print(
        f"  cached, warm (shared):     {warm:6.1f}s  val_accuracy={acc_w:.3f}  speed-up {naive / warm:.1f}x"
    )


if __name__ == "__main__":
    main()
