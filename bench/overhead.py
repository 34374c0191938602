"""Overhead of one trial through automl vs a hand-written Keras script doing the same training.

Both do the same two-phase training (phase 1 on the frozen backbone's features computed
once, then the top 10% of the backbone fine-tuned) on the demo data with the same
hyperparameters; automl also logs everything to MLflow, saves the checkpoint, scores the
test split and logs the best model. They run alternately in one process.

    .venv/bin/python bench/overhead.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import _common

import automl


def hand_written(data, cfg) -> float:
    """What a user would write in plain Keras for the same two-phase fine-tuning."""
    import keras
    import numpy as np

    t0 = time.perf_counter()
    keras.utils.set_random_seed(0)
    from automl.backbones.efficientnet_lite import efficientnet_lite0

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Resizing(cfg["image_size"], cfg["image_size"])(inputs)
    backbone = efficientnet_lite0(
        (cfg["image_size"],) * 2 + (3,), weights="imagenet", include_top=False
    )
    backbone.trainable = False
    feats = backbone(x, training=False)
    head = keras.Sequential(
        [
            keras.layers.Dropout(cfg["dropout"]),
            keras.layers.Dense(data.num_classes, activation="softmax"),
        ]
    )
    model = keras.Model(inputs, head(feats))
    extractor = keras.Model(inputs, feats)
    f_tr = extractor.predict(data.x_train, batch_size=64, verbose=0)
    f_va = extractor.predict(data.x_val, batch_size=64, verbose=0)
    head_model = keras.Sequential([keras.Input(f_tr.shape[1:]), head])
    head_model.compile(
        keras.optimizers.Adam(cfg["learning_rate"]),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    head_model.fit(
        f_tr,
        data.y_train,
        validation_data=(f_va, data.y_val),
        batch_size=cfg["batch_size"],
        epochs=cfg["head_epochs"],
        verbose=0,
    )
    layers = [layer for layer in backbone.layers if layer.weights]
    backbone.trainable = True
    n = round(len(layers) * cfg["fine_tune_depth"])
    for i, layer in enumerate(layers):
        layer.trainable = i >= len(layers) - n and not isinstance(
            layer, keras.layers.BatchNormalization
        )
    model.compile(
        keras.optimizers.Adam(cfg["learning_rate"] * 0.1),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        batch_size=cfg["batch_size"],
        epochs=cfg["fine_tune_epochs"],
        verbose=0,
    )
    acc = float(np.mean(np.argmax(model.predict(data.x_test, verbose=0), 1) == data.y_test))
    model.save(tempfile.mktemp(suffix=".keras"))
    keras.backend.clear_session()
    print(f"  hand-written: {time.perf_counter() - t0:.1f}s test_accuracy={acc:.3f}", flush=True)
    return time.perf_counter() - t0


STORE = tempfile.mkdtemp(prefix="automl-bench-")  # one MLflow store, as a user has


def through_automl(i: int, embedding_cache: bool = True) -> float:
    import keras

    t0 = time.perf_counter()
    r = automl.search(
        data="demo",
        space=_common.fixed_space(),
        max_trials=1,
        tuner="random",
        experiment=f"overhead{i}",
        tracking_uri=f"sqlite:///{STORE}/mlflow.db",
        workdir=STORE,
        embedding_cache=embedding_cache,
    )
    acc = r.test_metrics["test_accuracy"]
    keras.backend.clear_session()
    print(f"  automl:       {time.perf_counter() - t0:.1f}s test_accuracy={acc:.3f}", flush=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    data = automl.load_data("demo", seed=0)
    through_automl(-1)  # warm-up: weight conversion cache, imports, MLflow schema code paths
    ours, theirs = [], []
    for i in range(a.repeats):
        ours.append(through_automl(i))
        theirs.append(hand_written(data, _common.FIXED))
    m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
    print(
        f"automl one trial (incl. MLflow logging): median {m_ours:.1f}s of {[round(v, 1) for v in ours]}"
    )
    print(
        f"hand-written Keras, same training:       median {m_theirs:.1f}s of {[round(v, 1) for v in theirs]}"
    )
    print(f"overhead ratio automl / hand-written: {m_ours / m_theirs:.3f}")


if __name__ == "__main__":
    main()
