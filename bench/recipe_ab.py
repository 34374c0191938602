"""A/B of the training recipe, one change at a time, on fixed trial configurations.

Each variant adds one change to the previous one: AdamW weight decay, warm-up + cosine
decay, label smoothing, then phase 2's bounded learning rate + guard. Runs one trial per
(dataset, family, variant, seed) with automl.trial.run_trial and prints validation and
test accuracy. The "old" variant is the recipe before issue 11 (Adam, constant learning
rate, no smoothing, phase 2 at learning_rate * fine_tune_lr_factor, no guard).

    PYTHONPATH=. python bench/recipe_ab.py [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import automl.trial as trial_mod  # noqa: E402
from automl.data import load_data  # noqa: E402
from automl.embeddings import EmbeddingCache  # noqa: E402
from automl.trial import RunOptions, TrialConfig, run_trial  # noqa: E402
from bench.datasets import digits, lfw, photos  # noqa: E402

VARIANTS = [
    ("old", dict(weight_decay=0.0, lr_schedule="constant", label_smoothing=0.0), False),
    ("+adamw", dict(weight_decay=1e-2, lr_schedule="constant", label_smoothing=0.0), False),
    ("+cosine", dict(weight_decay=1e-2, lr_schedule="cosine", label_smoothing=0.0), False),
    ("+smoothing", dict(weight_decay=1e-2, lr_schedule="cosine", label_smoothing=0.1), False),
    ("+p2 bound+guard", dict(weight_decay=1e-2, lr_schedule="cosine", label_smoothing=0.1), True),
]
PRETRAINED = dict(
    family="pretrained",
    backbone="efficientnet_lite0",
    weights="imagenet",
    image_size=96,
    learning_rate=3e-3,
    batch_size=32,
    dropout=0.2,
    head_epochs=10,
    fine_tune_depth=0.2,
    fine_tune_epochs=4,
    fine_tune_lr_factor=0.3,
    augment="light",
)
SCRATCH = dict(
    family="scratch",
    image_size=16,
    epochs=15,
    blocks=3,
    filters=32,
    conv_layers=2,
    residual=True,
    learning_rate=3e-3,
    batch_size=32,
    dropout=0.2,
    augment="light",
)
RUNS = [("lfw", lfw, PRETRAINED), ("photos", photos, PRETRAINED), ("digits", digits, SCRATCH)]
RUNS += [("lfw", lfw, dict(SCRATCH, image_size=32, epochs=30))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    a = ap.parse_args()
    print("dataset family variant seed val_acc test_acc seconds guard")
    for name, fn, base in RUNS:
        x, y, _ = fn()
        data = load_data((x, y), seed=0)
        cache = EmbeddingCache()
        for vname, recipe, bounded in VARIANTS:
            if base["family"] == "scratch" and vname.startswith("+p2"):
                continue  # no phase 2
            trial_mod.PHASE2_MAX_FACTOR = 0.3 if bounded else 1.0
            trial_mod.PHASE2_MAX_LR = 5e-4 if bounded else 1.0
            opts = dict(jit_compile=False, phase2_guard_patience=2 if bounded else 0)
            for seed in a.seeds:
                cfg = TrialConfig.from_values({**base, **recipe})
                t0 = time.perf_counter()
                out = run_trial(cfg, data, options=RunOptions(**opts), embeddings=cache, seed=seed)
                p = out.model.predict(data.x_test, verbose=0)
                test = float(np.mean(p.argmax(1) == data.y_test))
                print(
                    f"{name} {base['family']} {vname!r} {seed} {out.metrics['val_accuracy']:.4f} "
                    f"{test:.4f} {time.perf_counter() - t0:.0f} "
                    f"{out.tags.get('automl.phase2_guard', '-')[:30]!r}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
