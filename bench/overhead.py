"""Overhead of a default multi-trial automl search vs the same trials written by hand in Keras.

automl runs a default search: several trials, each in a trial worker process (what
``automl search`` does), with MLflow logging, top-k checkpoints, the embedding cache, the
test-split score and the best model logged. The hand-written arm is what a user would write
for the same work: one script that loads the demo data and loops over the same trial
configurations (the learning rates the search tried, in its order), each doing the same
two-phase training (phase 1 on the frozen backbone's features, then the top 10 % of the
backbone fine-tuned), and saves each model. The two arms alternate in one process.

    .venv/bin/python bench/overhead.py [--trials 4] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import _common

import automl


def hand_written_trial(data, cfg) -> float:
    """What a user would write in plain Keras for one two-phase fine-tuning."""
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
    print(
        f"    hand-written trial lr={cfg['learning_rate']:.4g}: {time.perf_counter() - t0:.1f}s "
        f"test_accuracy={acc:.3f}",
        flush=True,
    )
    return time.perf_counter() - t0


def hand_written(lrs: list[float]) -> float:
    """The same trials by hand: load the data once, then one two-phase training per config."""
    t0 = time.perf_counter()
    data = automl.load_data("demo", seed=0, store_size=96)
    for lr in lrs:
        hand_written_trial(data, {**_common.FIXED, "learning_rate": lr})
    took = time.perf_counter() - t0
    print(f"  hand-written, {len(lrs)} trials: {took:.1f}s", flush=True)
    return took


STORE = tempfile.mkdtemp(prefix="automl-bench-")  # one MLflow store, as a user has
LEARNING_RATES = [1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3, 7e-3, 8e-3]


def through_automl(i: int, trials: int) -> tuple[float, list[float]]:
    """A default search (trial workers) of ``trials`` trials; returns (seconds, their lrs)."""
    import keras

    t0 = time.perf_counter()
    r = automl.search(
        data="demo",
        space=_common.fixed_space(learning_rate={"choice": LEARNING_RATES[:trials]}),
        max_trials=trials,
        tuner="random",
        experiment=f"overhead{i}",
        tracking_uri=f"sqlite:///{STORE}/mlflow.db",
        workdir=STORE,
        verbose=0,
    )
    took = time.perf_counter() - t0
    board = r.leaderboard()
    lrs = [
        float(v) for v in board.sort_values("trial", key=lambda s: s.astype(int))["learning_rate"]
    ]
    keras.backend.clear_session()
    print(
        f"  automl search, {len(board)} trials in workers: {took:.1f}s "
        f"test_accuracy={r.test_metrics['test_accuracy']:.3f}",
        flush=True,
    )
    return took, lrs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=4, help="trials per search (2-8)")
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    # warm-up: weight conversion cache, imports, MLflow schema code paths, both arms
    _, lrs = through_automl(-1, 2)
    hand_written(lrs[:1])
    ours, theirs = [], []
    for i in range(a.repeats):
        took, lrs = through_automl(i, a.trials)
        ours.append(took)
        theirs.append(hand_written(lrs))
    m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
    print(
        f"automl default search, {a.trials} trials in trial workers (incl. MLflow logging): "
        f"median {m_ours:.1f}s of {[round(v, 1) for v in ours]}"
    )
    print(
        f"hand-written Keras loop, same {a.trials} trials:                              "
        f"median {m_theirs:.1f}s of {[round(v, 1) for v in theirs]}"
    )
    print(f"overhead ratio automl / hand-written: {m_ours / m_theirs:.3f}")


if __name__ == "__main__":
    main()
