"""Run one trial: phase 1 trains the head on a frozen backbone, phase 2 fine-tunes its top.

This is the only module that calls ``fit()``. It knows nothing of MLflow or KerasTuner:
progress leaves through the ``on_epoch`` callable, results through :class:`TrialOutcome`.
"""

from __future__ import annotations

import gc
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from automl.data import DataBundle
from automl.model import build_model, unfreeze_top

log = logging.getLogger("automl")


class DivergedError(Exception):
    """The loss became NaN or inf; the trial must not be retried."""


@dataclass(frozen=True)
class TrialConfig:
    """The hyperparameters of one trial (see ``automl.space.HYPERPARAMETERS``)."""

    backbone: str
    weights: str
    image_size: int
    learning_rate: float
    batch_size: int
    dropout: float
    fine_tune_depth: float
    head_epochs: int
    fine_tune_epochs: int
    augment: str = "none"
    fine_tune_lr_factor: float = 0.1
    label_smoothing: float = 0.0

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> TrialConfig:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in values.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def schedule(self, budget: int | None = None) -> tuple[int, int]:
        """Epochs of (phase 1, phase 2). ``budget`` (Hyperband's resource) is the total of both."""
        p2 = self.fine_tune_epochs if self.fine_tune_depth > 0 else 0
        if budget is None:
            return self.head_epochs, p2
        if p2 == 0:
            return budget, 0
        p1 = min(self.head_epochs, budget)
        return p1, budget - p1


@dataclass
class TrialOutcome:
    """What a finished trial hands back."""

    model: Any
    metrics: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_by_deadline: bool = False


@dataclass
class RunOptions:
    """How trials run (not searched): caches, accelerator settings, budget."""

    embedding_cache: bool = True
    jit_compile: bool | str = "auto"
    early_stopping_patience: int = 3
    deadline: float | None = None  # time.time() after which a running fit stops at its epoch end
    verbose: int = 0


def _keras():
    import keras

    return keras


def _augmenter(kind: str):
    keras = _keras()
    if kind == "none":
        return None
    layers = [
        keras.layers.RandomRotation(0.05, fill_mode="constant"),
        keras.layers.RandomTranslation(0.08, 0.08, fill_mode="constant"),
        keras.layers.RandomZoom(0.1, fill_mode="constant"),
    ]
    if kind == "flip":
        layers.insert(0, keras.layers.RandomFlip("horizontal"))
    return keras.Sequential(layers, name=f"augment_{kind}")


def make_dataset(
    x, y, batch_size: int, *, shuffle: bool = False, augment: str = "none", seed: int = 0
):
    """A tf.data pipeline (shuffle, batch, parallel augmentation, prefetch) over in-memory images.

    Where TensorFlow is absent (a JAX-only machine) it returns ``(x, y)`` and ``fit``
    batches the NumPy arrays itself (no augmentation there).
    """
    try:
        import tensorflow as tf
    except ImportError:  # JAX/PyTorch-only machine: plain arrays
        return (x, y)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    aug = _augmenter(augment)
    if aug is not None:
        ds = ds.map(
            lambda a, b: (aug(tf.cast(a, "float32"), training=True), b),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return ds.prefetch(tf.data.AUTOTUNE)


class _EpochWatch:
    """Keras callback pieces folded into one: report, keep the best weights, NaN guard, deadline."""

    def __new__(cls, *args, **kwargs):  # build the subclass lazily so importing needs no keras
        keras = _keras()

        class EpochWatch(keras.callbacks.Callback):
            def __init__(self, target, phase, on_epoch, tracker, deadline):
                super().__init__()
                self.target, self.phase, self.on_epoch = target, phase, on_epoch
                self.tracker, self.deadline = tracker, deadline
                self.diverged = False
                self.deadline_hit = False

            # The batch hook only reads the loss and sets stop_training: safe to run on Keras's
            # async dispatch thread, so the accelerator's queue stays full (without this flag,
            # any batch hook makes Keras sync the device after every batch).
            async_safe = True

            def on_train_batch_end(self, batch, logs=None):
                loss = (logs or {}).get("loss")
                if loss is not None and not math.isfinite(float(loss)):
                    self.diverged = True
                    self.model.stop_training = True

            def on_epoch_end(self, epoch, logs=None):
                logs = {k: float(v) for k, v in (logs or {}).items()}
                entry = {"step": epoch, "phase": self.phase, **logs}
                self.tracker.history.append(entry)
                if any(not math.isfinite(v) for k, v in logs.items() if "loss" in k):
                    self.diverged = True
                    self.model.stop_training = True
                else:
                    self.tracker.offer(epoch, logs, self.target)
                if self.on_epoch is not None:
                    self.on_epoch(entry)
                if self.deadline is not None and time.time() > self.deadline:
                    self.deadline_hit = True
                    self.model.stop_training = True

        return EpochWatch(*args, **kwargs)


class _Best:
    """Best epoch across both phases by val_accuracy (ties: lower val_loss); its weights in memory."""

    def __init__(self):
        self.score: tuple[float, float] | None = None
        self.epoch: int = -1
        self.logs: dict[str, float] = {}
        self.weights: list[tuple[Any, np.ndarray]] | None = None
        self.history: list[dict[str, Any]] = []

    def offer(self, epoch: int, logs: dict[str, float], target) -> None:
        score = (logs.get("val_accuracy", 0.0), -logs.get("val_loss", 0.0))
        if self.score is None or score > self.score:
            self.score, self.epoch, self.logs = score, epoch, dict(logs)
            # Pair each variable with its value: robust to trainable flags changing between phases.
            self.weights = [(v, np.array(v)) for v in target.weights]

    def restore(self, target) -> None:
        for v, value in self.weights or []:
            v.assign(value)


def _compile(model, lr: float, label_smoothing: float, jit_compile):
    keras = _keras()
    loss = (
        keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
        if label_smoothing > 0
        else keras.losses.SparseCategoricalCrossentropy()
    )
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss=loss,
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )


def _fit(model, train, val, batch_size: int, **kw):
    """``fit`` on a tf.data pipeline, or on NumPy arrays where TensorFlow is absent."""
    if isinstance(train, tuple):
        return model.fit(
            train[0], train[1], validation_data=val, batch_size=batch_size, shuffle=True, **kw
        )
    return model.fit(train, validation_data=val, shuffle=False, **kw)  # the pipeline shuffles


def _labels(y, num_classes: int, label_smoothing: float):
    if label_smoothing > 0:
        return np.eye(num_classes, dtype="float32")[y]
    return y


def run_trial(
    cfg: TrialConfig,
    data: DataBundle,
    *,
    options: RunOptions | None = None,
    embeddings=None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    budget: int | None = None,
    initial_epoch: int = 0,
    initial_weights: str | None = None,
    seed: int = 0,
) -> TrialOutcome:
    """Train one configuration on ``data`` and return the model at its best epoch.

    Args:
        cfg: the trial's hyperparameters.
        data: the split data; validation scores the epochs, test is not touched here.
        options: how to run (embedding cache, XLA, early stopping, deadline).
        embeddings: an :class:`automl.embeddings.EmbeddingCache` shared across trials.
        on_epoch: called after every epoch with ``{"step", "phase", loss, accuracy, ...}``.
        budget: total epochs across both phases (Hyperband's resource); None = the config's.
        initial_epoch: epochs already done by ``initial_weights`` (a Hyperband continuation).
        initial_weights: a ``.keras`` / ``.weights.h5`` file to start from.
        seed: seeds Keras, NumPy and the shuffling.
    """
    keras = _keras()
    options = options or RunOptions()
    keras.utils.set_random_seed(seed)
    parts = build_model(
        cfg.backbone,
        num_classes=data.num_classes,
        image_size=cfg.image_size,
        dropout=cfg.dropout,
        weights=cfg.weights,
    )
    model = parts.model
    if initial_weights:
        model.load_weights(initial_weights)
    p1, p2 = cfg.schedule(budget)
    best = _Best()
    y_tr = _labels(data.y_train, data.num_classes, cfg.label_smoothing)
    y_va = _labels(data.y_val, data.num_classes, cfg.label_smoothing)
    stopped = False
    times = {"phase1_seconds": 0.0, "phase2_seconds": 0.0}

    def watch(phase):
        return _EpochWatch(model, phase, on_epoch, best, options.deadline)

    def check(w):
        if w.diverged:
            raise DivergedError(f"diverged: loss became NaN or inf in {w.phase}")
        return w.deadline_hit

    if initial_epoch > 0:  # a continued trial: its starting point is a candidate best
        _compile(model, cfg.learning_rate, cfg.label_smoothing, options.jit_compile)
        loss, acc = model.evaluate(data.x_val, y_va, batch_size=cfg.batch_size, verbose=0)
        best.offer(initial_epoch - 1, {"val_loss": float(loss), "val_accuracy": float(acc)}, model)

    # Phase 1: head only, backbone frozen. On cached embeddings by default.
    t0 = time.perf_counter()
    if initial_epoch < p1:
        w = watch("phase1")
        if options.embedding_cache and embeddings is not None:
            f_tr, f_va = embeddings.get(parts.features, cfg, data, seed=seed)
            head_model = keras.Sequential([keras.Input(shape=f_tr.shape[1:]), parts.head])
            _compile(head_model, cfg.learning_rate, cfg.label_smoothing, options.jit_compile)
            head_model.fit(
                f_tr,
                y_tr,
                validation_data=(f_va, y_va),
                batch_size=cfg.batch_size,
                epochs=p1,
                initial_epoch=initial_epoch,
                shuffle=True,
                verbose=options.verbose,
                callbacks=[w],
            )
        else:
            _compile(model, cfg.learning_rate, cfg.label_smoothing, options.jit_compile)
            _fit(
                model,
                make_dataset(data.x_train, y_tr, cfg.batch_size, shuffle=True, seed=seed),
                make_dataset(data.x_val, y_va, cfg.batch_size),
                cfg.batch_size,
                epochs=p1,
                initial_epoch=initial_epoch,
                verbose=options.verbose,
                callbacks=[w],
            )
        stopped = check(w)
        best.restore(model)
    times["phase1_seconds"] = time.perf_counter() - t0

    # Phase 2: unfreeze the top of the backbone, lower learning rate, augmentation.
    t0 = time.perf_counter()
    if p2 > 0 and not stopped:
        n = unfreeze_top(parts.backbone, cfg.fine_tune_depth)
        log.debug("phase 2: %d backbone layers unfrozen", n)
        _compile(
            model,
            cfg.learning_rate * cfg.fine_tune_lr_factor,
            cfg.label_smoothing,
            options.jit_compile,
        )
        w = watch("phase2")
        callbacks = [w]
        if options.early_stopping_patience:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_accuracy", patience=options.early_stopping_patience, mode="max"
                )
            )
        _fit(
            model,
            make_dataset(
                data.x_train, y_tr, cfg.batch_size, shuffle=True, augment=cfg.augment, seed=seed
            ),
            make_dataset(data.x_val, y_va, cfg.batch_size),
            cfg.batch_size,
            epochs=p1 + p2,
            initial_epoch=max(initial_epoch, p1),
            verbose=options.verbose,
            callbacks=callbacks,
        )
        stopped = check(w)
        best.restore(model)
        parts.backbone.trainable = False  # the saved model reloads frozen, as exported
    times["phase2_seconds"] = time.perf_counter() - t0

    if best.weights is None:
        raise DivergedError("diverged: no epoch produced finite validation scores")
    metrics = {
        "val_accuracy": best.logs.get("val_accuracy", float("nan")),
        "val_loss": best.logs.get("val_loss", float("nan")),
        "accuracy": best.logs.get("accuracy", float("nan")),
        "loss": best.logs.get("loss", float("nan")),
        "best_epoch": float(best.epoch),
        "epochs_run": float(len(best.history)),
        **times,
    }
    best.weights = None  # release the snapshot before the next trial
    gc.collect()
    return TrialOutcome(
        model=model, metrics=metrics, history=best.history, stopped_by_deadline=stopped
    )
