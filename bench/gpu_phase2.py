"""Phase-2 (fine-tuning) throughput: automl's trial runner vs a plain Keras ``fit`` of the same model.

Both run in one process, alternately, on the same synthetic images, with the same model,
batch size and mixed-precision policy; images/second counts training plus validation
images per epoch, from the second epoch on (the first one compiles).

    KERAS_BACKEND=jax python bench/gpu_phase2.py --backbone resnet50_v2 --size 224   # on a GPU
    python bench/gpu_phase2.py --backbone mobilenet_v3_small --size 64 --n 256 --epochs 3  # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from automl.data.bundle import DataBundle  # noqa: E402
from automl.families.pretrained import build_model, unfreeze_top  # noqa: E402
from automl.trial import RunOptions, TrialConfig, run_trial  # noqa: E402


def synthetic(n: int, n_val: int, size: int, classes: int = 10) -> DataBundle:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n + n_val, size, size, 3), dtype=np.uint8)
    y = (np.arange(n + n_val) % classes).astype(np.int64)
    names = [str(i) for i in range(classes)]
    return DataBundle("synthetic", "bench", names, x[:n], y[:n], x[n:], y[n:], x[n:], y[n:])


def rate(stamps: list[float], per_epoch: int) -> float:
    """Images/second over epochs 2..N."""
    d = np.diff(stamps)[1:] if len(stamps) > 2 else np.diff(stamps)
    return per_epoch / float(np.median(d))


def via_automl(data, a) -> float:
    cfg = TrialConfig(
        backbone=a.backbone,
        weights="random",
        image_size=a.size,
        learning_rate=1e-3,
        batch_size=a.batch,
        dropout=0.1,
        fine_tune_depth=a.depth,
        head_epochs=1,
        fine_tune_epochs=a.epochs,
        fine_tune_lr_factor=0.1,
    )
    stamps: list[float] = []

    def on_epoch(entry):
        if entry["phase"] == "phase2":
            stamps.append(time.perf_counter())

    t0 = time.perf_counter()
    run_trial(
        cfg,
        data,
        options=RunOptions(embedding_cache=True, early_stopping_patience=0, jit_compile=a.jit),
        on_epoch=on_epoch,
    )
    stamps.insert(0, t0)  # crude start; epoch 1 (compile) is dropped by rate()
    keras.backend.clear_session()
    return rate(stamps, len(data.y_train) + len(data.y_val))


def plain_keras(data, a) -> float:
    parts = build_model(
        a.backbone, num_classes=data.num_classes, image_size=a.size, dropout=0.1, weights=None
    )
    unfreeze_top(parts.backbone, a.depth)
    m = parts.model
    m.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=a.jit,
    )
    stamps = [time.perf_counter()]
    cb = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda e, logs: stamps.append(time.perf_counter())
    )
    m.fit(
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        batch_size=a.batch,
        epochs=a.epochs,
        verbose=0,
        callbacks=[cb],
    )
    keras.backend.clear_session()
    return rate(stamps, len(data.y_train) + len(data.y_val))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="resnet50_v2")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--n-val", type=int, default=512)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--depth", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-mixed-precision", action="store_true")
    a = ap.parse_args()
    a.jit = "auto"
    mixed = not a.no_mixed_precision
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    data = synthetic(a.n, a.n_val, a.size)
    res = {"automl": [], "plain_keras": []}
    for _ in range(a.repeats):  # alternate, so drift hits both alike
        res["automl"].append(via_automl(data, a))
        res["plain_keras"].append(plain_keras(data, a))
    import platform

    device = "cpu"
    if keras.backend.backend() == "jax":
        import jax

        device = str(jax.devices()[0].device_kind)
    out = {
        "backend": keras.backend.backend(),
        "device": device,
        "host": platform.node(),
        "backbone": a.backbone,
        "size": a.size,
        "batch": a.batch,
        "mixed_precision": mixed,
        "fine_tune_depth": a.depth,
        "train_images": a.n,
        "val_images": a.n_val,
        "epochs": a.epochs,
        "images_per_s_automl": [round(v, 1) for v in res["automl"]],
        "images_per_s_plain_keras": [round(v, 1) for v in res["plain_keras"]],
        "ratio_automl_over_plain": round(
            float(np.median(res["automl"]) / np.median(res["plain_keras"])), 3
        ),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
