"""Model quality: the default ``automl search`` against two baselines, per dataset.

For each offline dataset (see bench/datasets.py: digits, textures, photos, tiny_photos) it
runs the README's command, ``automl search --data SRC`` with no other option (the default
space, budget and ensemble), as a subprocess, and times it; then, on exactly the same
train/val/test split:

* ``SVC()``: scikit-learn's default SVM on raw pixels resized to 32x32 (train + val);
* ``keras transfer``: the plain-Keras recipe a user writes by hand: EfficientNet-Lite0
  ImageNet (automl.create_backbone, weights shipped) at 128 px, a Dropout(0.2) + softmax
  head trained 10 epochs on the frozen backbone (Adam 1e-3), then the top 20 % of the
  backbone's layers (BatchNorm frozen) fine-tuned 5 epochs at 1e-5 (train; val monitors).

Prints one row per dataset: test accuracy of each, and automl's wall time.

    PYTHONPATH=. python bench/quality.py [--only digits textures photos tiny_photos lfw] \
        | tee bench/quality.txt
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from bench.datasets import DATASETS, DEFAULT, as_source, automl_split  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def run_automl(src: str, workdir: Path) -> tuple[float, float, str]:
    """The README command in a fresh folder: (test accuracy, wall seconds, last lines)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "automl", "search", "--data", src],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    m = re.search(r"test_accuracy=([0-9.]+)", proc.stdout)
    if proc.returncode != 0 or not m:
        raise RuntimeError(f"automl search failed ({proc.returncode}): {proc.stderr[-2000:]}")
    board = "\n".join(proc.stdout.strip().splitlines()[-14:])
    return float(m.group(1)), wall, board


def svc_baseline(b) -> float:
    from sklearn.svm import SVC

    from automl.data.bundle import resize_batch

    def feats(x):
        return resize_batch(x, 32).reshape(len(x), -1).astype(np.float32) / 255.0

    clf = SVC().fit(
        feats(np.concatenate([b.x_train, b.x_val])), np.concatenate([b.y_train, b.y_val])
    )
    return float(np.mean(clf.predict(feats(b.x_test)) == b.y_test))


def keras_transfer_baseline(b, size: int = 128) -> float:
    import keras

    import automl

    keras.utils.set_random_seed(0)
    bb = automl.create_backbone(
        "efficientnet_lite0", weights="imagenet", include_top=False, input_size=size
    )
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Resizing(size, size)(inputs)
    bb.trainable = False
    feats = bb(x, training=False)
    head = keras.Sequential(
        [keras.layers.Dropout(0.2), keras.layers.Dense(b.num_classes, activation="softmax")]
    )
    model = keras.Model(inputs, head(feats))
    xtr, xva = b.x_train.astype("float32"), b.x_val.astype("float32")
    # Phase 1 on the frozen backbone: its features are computed once (the same numbers the
    # frozen model computes every epoch, minus the wait).
    fmodel = keras.Model(inputs, feats)
    ftr, fva = fmodel.predict(xtr, verbose=0), fmodel.predict(xva, verbose=0)
    hin = keras.Input(ftr.shape[1:])
    hm = keras.Model(hin, head(hin))
    hm.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    hm.fit(ftr, b.y_train, validation_data=(fva, b.y_val), epochs=10, batch_size=32, verbose=0)
    # Phase 2: the top 20 % of the backbone's layers, BatchNorm frozen, at 1e-5.
    bb.trainable = True
    layers = [la for la in bb.layers if la.weights]
    for i, la in enumerate(layers):
        la.trainable = i >= int(len(layers) * 0.8) and not isinstance(
            la, keras.layers.BatchNormalization
        )
    model.compile(
        keras.optimizers.Adam(1e-5), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(xtr, b.y_train, validation_data=(xva, b.y_val), epochs=5, batch_size=32, verbose=0)
    p = model.predict(b.x_test.astype("float32"), verbose=0)
    return float(np.mean(p.argmax(1) == b.y_test))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="+", default=list(DEFAULT), choices=list(DATASETS))
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="automl-quality-") as tmp:
        for name in a.only:
            src = as_source(name, Path(tmp) / "data")
            work = Path(tmp) / "run" / name
            work.mkdir(parents=True)
            # the split automl makes of this source (same seed, same stored size)
            b, _ = automl_split(src)
            svc = svc_baseline(b)
            t0 = time.perf_counter()
            tl = keras_transfer_baseline(b)
            tl_s = time.perf_counter() - t0
            print(f"{name}: SVC {svc:.4f} | keras transfer {tl:.4f} ({tl_s:.0f} s)", flush=True)
            acc, wall, board = run_automl(src, work)
            print(f"--- {name}: automl search --data {src}\n{board}\n", flush=True)
            rows.append((name, b, acc, wall, svc, tl, tl_s))
            print(
                f"{name}: automl {acc:.4f} ({wall:.0f} s) | SVC {svc:.4f} | keras transfer "
                f"{tl:.4f} ({tl_s:.0f} s)",
                flush=True,
            )
    print(
        "\n| dataset | images (train/val/test) | classes | automl test acc | automl wall time "
        "| SVC() test acc | Keras transfer test acc |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, b, acc, wall, svc, tl, _ in rows:
        n = f"{len(b.y_train)}/{len(b.y_val)}/{len(b.y_test)}"
        print(
            f"| {name} | {n} | {b.num_classes} | **{acc:.4f}** | {wall / 60:.1f} min "
            f"| {svc:.4f} | {tl:.4f} |"
        )


if __name__ == "__main__":
    main()
