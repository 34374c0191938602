"""Transfer learning pays: EfficientNet-Lite0 from ImageNet weights vs from random init.

Demo data (handwritten digits) with 10 labelled training images per class, 20 per class for
validation and the rest (1,397 images) for test. Both arms get the same budget: the same
search space (weights aside), the same tuner, seed and number of trials.

    .venv/bin/python bench/pretrained_vs_scratch.py [--trials 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import _common
import numpy as np

import automl
from automl.data import DataBundle
from automl.data.sources import load_demo


def few_shot(per_class: int = 10, val_per_class: int = 20, seed: int = 0) -> DataBundle:
    x, y, names, _ = load_demo()
    rng = np.random.default_rng(seed)
    tr, va, te = [], [], []
    for c in range(len(names)):
        idx = rng.permutation(np.flatnonzero(y == c))
        tr += list(idx[:per_class])
        va += list(idx[per_class : per_class + val_per_class])
        te += list(idx[per_class + val_per_class :])
    return DataBundle(
        "demo-10-shot",
        "sklearn.datasets.load_digits",
        names,
        x[tr],
        y[tr],
        x[va],
        y[va],
        x[te],
        y[te],
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=4)
    a = ap.parse_args()
    data = few_shot()
    space = lambda weights: _common.fixed_space(  # noqa: E731
        weights=weights,
        image_size=96,
        learning_rate={"min": 1e-3, "max": 3e-2, "sampling": "log"},
        batch_size=16,
        fine_tune_depth={"choice": [0.0, 0.25, 1.0]},
        head_epochs=15,
        fine_tune_epochs=10,
        augment="light",
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for weights in ("imagenet", "random"):
            t0 = time.perf_counter()
            r = automl.search(
                data=data,
                space=space(weights),
                max_trials=a.trials,
                tuner="random",
                seed=0,
                experiment=f"fewshot-{weights}",
                tracking_uri=f"sqlite:///{tmp}/mlflow.db",
                workdir=tmp,
            )
            rows.append(
                (
                    weights,
                    r.best_trial["metrics"]["val_accuracy"],
                    r.test_metrics["test_accuracy"],
                    time.perf_counter() - t0,
                )
            )
    print(
        f"efficientnet_lite0 @ 96px, {len(data.y_train)} train ({len(data.y_train) // 10}/class), "
        f"{len(data.y_val)} val, {len(data.y_test)} test images; {a.trials} random-search trials each"
    )
    for w, val, test, sec in rows:
        print(
            f"  weights={w:8s} best val_accuracy={val:.3f}  its test_accuracy={test:.3f}  ({sec:.0f}s)"
        )


if __name__ == "__main__":
    main()
