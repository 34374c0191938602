"""The hand-written Keras transfer recipe on the issue-18 sets: frozen EfficientNet-Lite0
(ImageNet weights shipped in pip) + one Dense head, 20 epochs, per task.

What a user would write by hand, on the split automl makes of the same targets
(automl.data.splits.task_split, seed 0; scores on the test split): images resized to
``--size`` (default 224, the backbone's native size), pooled features of the frozen backbone
computed once, then the task's head (automl.tasks: softmax / sigmoid / linear on standardised
targets) trained 20 epochs with Adam (1e-3, batch 32), the weights of the epoch with the best
validation loss kept. Multi-label is scored at 0.5 and with thresholds tuned on validation;
the imbalanced set without and with balanced class weights.

    python -m bench.tasks_recipe                 # every set
    python -m bench.tasks_recipe --only count    # one set
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from bench import _common  # noqa: F401  (path and quiet logs)

EPOCHS = 20


def _embed(x: np.ndarray, size: int) -> np.ndarray:
    import tensorflow as tf

    from automl.backbones import create_backbone

    net = create_backbone("efficientnet_lite0", weights="imagenet", include_top=False,
                          input_size=size)  # fmt: skip
    out = []
    for i in range(0, len(x), 64):
        batch = tf.image.resize(tf.convert_to_tensor(x[i : i + 64], tf.float32), (size, size))
        out.append(np.asarray(net(batch, training=False)))
    return np.concatenate(out)


def _head(task, f, y_enc, tr, va, class_weight=None):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((f.shape[1],))
    model = keras.Model(inputs, task.head()(keras.layers.Dropout(0.2)(inputs)))
    model.compile(keras.optimizers.Adam(1e-3), loss=task.keras_loss())
    with tempfile.TemporaryDirectory(prefix="tasks_recipe-") as tmp:
        path = f"{tmp}/best.weights.h5"
        best = keras.callbacks.ModelCheckpoint(path, save_best_only=True, save_weights_only=True)
        model.fit(f[tr], y_enc[tr], validation_data=(f[va], y_enc[va]), epochs=EPOCHS,
                  batch_size=32, verbose=0, class_weight=class_weight, callbacks=[best])  # fmt: skip
        model.load_weights(path)
    return model


def run(name: str, size: int) -> None:
    from automl import metrics as m
    from automl.data.splits import task_split
    from automl.imbalance import class_weights
    from automl.tasks import resolve_task
    from bench.datasets import TASK_DATASETS

    x, y, names, kind = TASK_DATASETS[name]()
    task = resolve_task(y, kind)
    y_enc = task.encode(y)
    tr, va, te = task_split(y_enc, kind, seed=0)
    start = time.perf_counter()
    f = _embed(x, size)
    print(f"\n{name} ({task.describe()}; {len(tr)}/{len(va)}/{len(te)} images; "
          f"features {f.shape[1]} in {time.perf_counter() - start:.0f} s)")  # fmt: skip
    if kind == "regression":
        model = _head(task, f, y_enc, tr, va)
        pred = task.decode(model.predict(f[te], verbose=0))
        print(f"  frozen Lite0 + Dense, {EPOCHS} epochs: MAE {m.mae(y[te], pred):.3f}  "
              f"RMSE {m.rmse(y[te], pred):.3f}  R2 {m.r2(y[te], pred):.3f}")  # fmt: skip
    elif kind == "multilabel":
        model = _head(task, f, y_enc, tr, va)
        p_va, p_te = model.predict(f[va], verbose=0), model.predict(f[te], verbose=0)
        t = m.tune_thresholds(y_enc[va], p_va)
        for label, pred in (("0.5", p_te >= 0.5), ("tuned thresholds", p_te >= t)):
            print(f"  frozen Lite0 + Dense, {EPOCHS} epochs, {label}: macro-F1 "
                  f"{m.macro_f1(y[te], pred):.3f}  micro-F1 {m.micro_f1(y[te], pred):.3f}  "
                  f"AUC {m.auc(y[te], p_te):.3f}")  # fmt: skip
    else:
        minority = int(np.argmin(np.bincount(y_enc)))
        for label, cw in (
            ("no weights", None),
            ("balanced class weights", class_weights(y_enc[tr])),
        ):
            model = _head(task, f, y_enc, tr, va, class_weight=cw)
            pred = model.predict(f[te], verbose=0)
            recall = m.per_class_precision_recall(y_enc[te], pred, len(names))[1][minority]
            print(f"  frozen Lite0 + Dense, {EPOCHS} epochs, {label}: accuracy "
                  f"{m.accuracy(y_enc[te], pred):.3f}  balanced {m.balanced_accuracy(y_enc[te], pred):.3f}"
                  f"  minority recall {recall:.3f}")  # fmt: skip
    print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)


def main() -> None:
    from bench.datasets import TASK_DATASETS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", default=list(TASK_DATASETS), choices=list(TASK_DATASETS))
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args()
    for name in args.only:
        run(name, args.size)


if __name__ == "__main__":
    main()
