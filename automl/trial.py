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
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from automl.data import DataBundle
from automl.families import build as build_family
from automl.families.pretrained import unfreeze_top

log = logging.getLogger("automl")


class DivergedError(Exception):
    """The loss became NaN or inf; the trial must not be retried."""


@dataclass(frozen=True)
class TrialConfig:
    """The hyperparameters of one trial (see ``automl.space.HYPERPARAMETERS``).

    Defaults reproduce what automl did before a field existed, so a configuration logged
    by an older version trains the same way again.
    """

    backbone: str = "efficientnet_lite0"
    weights: str = "imagenet"
    image_size: int = 96
    learning_rate: float = 1e-3
    batch_size: int = 32
    dropout: float = 0.2
    fine_tune_depth: float = 0.0
    head_epochs: int = 5
    fine_tune_epochs: int = 2
    augment: str = "none"
    fine_tune_lr_factor: float = 0.1
    label_smoothing: float = 0.0
    family: str = "pretrained"
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    pooling: str = "avg"
    head_layers: int = 0
    head_units: int = 128
    head_batchnorm: bool = False
    epochs: int = 20
    blocks: int = 3
    conv_layers: int = 2
    filters: int = 32
    width_multiplier: float = 2.0
    kernel_size: int = 3
    separable: bool = False
    residual: bool = False
    train_images: int = 0  # a stratified subset of the training split (0: all; automl.fidelity)
    val_images: int = 0  # and of the validation split, for scoring epochs (0: all)

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> TrialConfig:
        """From KerasTuner values (``family.name`` keys of the chosen family win) or a dict."""
        family = values.get("family", "pretrained")
        flat: dict[str, Any] = {}
        for k, v in values.items():
            if "." not in k and "/" not in k:
                flat[k] = v
        prefix = f"{family}."
        for k, v in values.items():
            if k.startswith(prefix):
                flat[k[len(prefix) :]] = v
        fields = cls.__dataclass_fields__
        out = {}
        for k, v in flat.items():
            if k not in fields:
                continue
            if fields[k].type == "bool" and not isinstance(v, bool):
                v = str(v).lower() in ("1", "true", "yes")
            out[k] = v
        return cls(**out)

    def to_dict(self) -> dict[str, Any]:
        """The hyperparameters this trial's family uses (what MLflow logs as params)."""
        from automl.space import family_keys

        d = asdict(self)
        return {k: d[k] for k in d if k in family_keys(self.family)}

    def schedule(self, budget: int | None = None) -> tuple[int, int]:
        """Epochs of (phase 1, phase 2). ``budget`` (Hyperband's resource) is the total of both.

        A scratch trial has one phase of ``epochs``.
        """
        if self.family == "scratch":
            return (self.epochs if budget is None else budget), 0
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
    tags: dict[str, str] = field(default_factory=dict)  # e.g. automl.phase2_guard


@dataclass
class RunOptions:
    """How trials run (not searched): caches, accelerator settings, budget."""

    embedding_cache: bool = True
    jit_compile: bool | str = "auto"
    early_stopping_patience: int = 3
    # time.time() after which a running fit stops at its epoch end: the search's
    # automl.search.deadline.Deadline.trials_end (a float, so the options stay JSON-able).
    deadline: float | None = None
    verbose: int = 0
    objective: str = "val_accuracy"  # what the best-epoch keeper and early stopping watch
    # Phase 2 stops (phase-1 best weights stand) after this many epochs worse than phase 1's best.
    phase2_guard_patience: int = 2
    deterministic: bool = False  # TensorFlow's deterministic ops (slower, reproducible)


def _keras():
    import keras

    return keras


def _augmenter(kind: str):
    keras = _keras()
    if kind == "none":
        return None
    # Reflected borders (Keras's default): a black fill draws edges into textures and photos
    # (measured: textures at 128 px, val 0.950 -> 0.978; see bench/README.md).
    layers = [
        keras.layers.RandomRotation(0.05, fill_mode="reflect"),
        keras.layers.RandomTranslation(0.08, 0.08, fill_mode="reflect"),
        keras.layers.RandomZoom(0.1, fill_mode="reflect"),
    ]
    if kind == "flip":
        layers.insert(0, keras.layers.RandomFlip("horizontal"))
    return keras.Sequential(layers, name=f"augment_{kind}")


def make_dataset(
    x, y, batch_size: int, *, shuffle: bool = False, augment: str = "none", seed: int = 0
):
    """A streaming input pipeline over ``x`` (an :class:`~automl.data.images.ImageView` or
    an array): shuffle the indices, batch them, read each batch's images, augment, prefetch.

    Only indices are shuffled (8 bytes per image), and only a few batches of images are in
    memory at a time, whatever the size of the data. Where TensorFlow is absent (a JAX-only
    machine) it returns a ``keras.utils.PyDataset`` that reads the same way (no augmentation).
    """
    from automl.data.images import as_view

    view = as_view(x)
    y = np.asarray(y)
    try:
        import tensorflow as tf
    except ImportError:  # JAX/PyTorch-only machine: a PyDataset over the view
        return _view_sequence(view, y, batch_size, shuffle, seed)
    shape = view.shape[1:]

    def read(positions):
        return view.read(positions)

    def load(pos, lbl):
        img = tf.numpy_function(read, [pos], tf.uint8, stateful=False)
        img.set_shape((None, *shape))
        return img, lbl

    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(view), dtype=np.int64), y))
    if shuffle:
        ds = ds.shuffle(len(view), seed=seed, reshuffle_each_iteration=True)  # indices only
    ds = ds.batch(batch_size).map(load, num_parallel_calls=tf.data.AUTOTUNE)
    aug = _augmenter(augment)
    if aug is not None:
        ds = ds.map(
            lambda a, b: (aug(tf.cast(a, "float32"), training=True), b),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return ds.prefetch(tf.data.AUTOTUNE)


def _view_sequence(view, y, batch_size: int, shuffle: bool, seed: int):
    keras = _keras()

    class ViewSequence(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.order = np.arange(len(view))
            self.rng = np.random.default_rng(seed)
            self.on_epoch_end()

        def __len__(self):
            return max(math.ceil(len(view) / batch_size), 1)

        def __getitem__(self, i):
            pos = self.order[i * batch_size : (i + 1) * batch_size]
            return view.read(pos), y[pos]

        def on_epoch_end(self):
            if shuffle:
                self.rng.shuffle(self.order)

    return ViewSequence()


# Phase 2's learning rate is phase 1's times fine_tune_lr_factor, with the factor capped here
# and the result capped at PHASE2_MAX_LR: a fine-tuning rate above that wrecks pretrained
# features (a trial collapsed to chance at 3e-3).
PHASE2_MAX_FACTOR = 0.3
PHASE2_MAX_LR = 5e-4


def phase2_learning_rate(cfg: TrialConfig) -> float:
    """Phase 2's learning rate, bounded relative to phase 1's and absolutely."""
    return min(cfg.learning_rate * min(cfg.fine_tune_lr_factor, PHASE2_MAX_FACTOR), PHASE2_MAX_LR)


def rank(logs: dict[str, float], objective: str = "val_accuracy") -> tuple[float, float]:
    """Sort key of an epoch's scores, higher is better (ties: the other score)."""
    acc = logs.get("val_accuracy", 0.0)
    loss = logs.get("val_loss", float("inf"))
    if objective == "val_loss":
        return (-loss, acc)
    return (acc, -loss)


class _EpochWatch:
    """Keras callback pieces folded into one: report, keep the best weights, NaN guard,
    deadline, and phase 2's guard."""

    def __new__(cls, *args, **kwargs):  # build the subclass lazily so importing needs no keras
        keras = _keras()

        class EpochWatch(keras.callbacks.Callback):
            def __init__(self, target, phase, on_epoch, tracker, deadline, guard=None):
                super().__init__()
                self.target, self.phase, self.on_epoch = target, phase, on_epoch
                self.tracker, self.deadline = tracker, deadline
                self.diverged = False
                self.deadline_hit = False
                # guard: (baseline rank, patience): stop after `patience` epochs in a row that
                # rank below the baseline, unless an epoch has beaten it already.
                self.guard = guard
                self.worse_in_a_row = 0
                self.beat_baseline = False
                self.guard_hit = False

            # The batch hook only reads the loss and sets stop_training: safe to run on Keras's
            # async dispatch thread, so the accelerator's queue stays full (without this flag,
            # any batch hook makes Keras sync the device after every batch).
            async_safe = True

            def on_train_batch_end(self, batch, logs=None):
                loss = (logs or {}).get("loss")
                if loss is not None and not math.isfinite(float(loss)):
                    self.diverged = True
                    self.model.stop_training = True
                # On a large data set one epoch can outlast the budget: the deadline also
                # ends an epoch part-way (Keras still validates it, and on_epoch_end offers
                # it as a best epoch, so a trial stopped by the budget keeps its best one).
                if self.deadline is not None and time.time() > self.deadline:
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
                    self._check_guard(logs)
                if self.on_epoch is not None:
                    self.on_epoch(entry)
                if self.deadline is not None and time.time() > self.deadline:
                    self.deadline_hit = True
                    self.model.stop_training = True

            def _check_guard(self, logs):
                if self.guard is None or self.beat_baseline:
                    return
                baseline, patience = self.guard
                if rank(logs, self.tracker.objective) > baseline:
                    self.beat_baseline = True
                    return
                if rank(logs, self.tracker.objective) < baseline:
                    self.worse_in_a_row += 1
                else:
                    self.worse_in_a_row = 0
                if self.worse_in_a_row >= patience:
                    self.guard_hit = True
                    self.model.stop_training = True

        return EpochWatch(*args, **kwargs)


class BestEpoch:
    """Keeps the best epoch across both phases by the objective; its weights in memory.

    ``val_accuracy`` ranks by accuracy (ties: lower val_loss); ``val_loss`` by loss (ties:
    higher accuracy). :meth:`restore` puts the best epoch's weights back into the model.
    """

    def __init__(self, objective: str = "val_accuracy", keep_last: bool = False):
        self.objective = objective
        self.keep_last = keep_last  # a replay: every epoch replaces the one before
        self.score: tuple[float, float] | None = None
        self.epoch: int = -1
        self.logs: dict[str, float] = {}
        self.weights: list[tuple[Any, np.ndarray]] | None = None
        self.history: list[dict[str, Any]] = []

    def offer(self, epoch: int, logs: dict[str, float], target) -> bool:
        """Keep ``target``'s weights if this epoch ranks above the best so far. True if kept."""
        score = rank(logs, self.objective)
        if self.score is None or score > self.score or self.keep_last:
            self.score, self.epoch, self.logs = score, epoch, dict(logs)
            # Pair each variable with its value: robust to trainable flags changing between phases.
            self.weights = [(v, np.array(v)) for v in target.weights]
            return True
        return False

    def restore(self, target) -> None:
        for v, value in self.weights or []:
            v.assign(value)


def _optimizer(cfg: TrialConfig, lr: float, steps: int, steps_per_epoch: int):
    """AdamW (plain Adam at weight_decay 0); with ``lr_schedule: cosine``, linear warm-up from
    lr/10 over one epoch (at most a fifth of the phase), then cosine decay to lr/100."""
    keras = _keras()
    if cfg.lr_schedule == "cosine" and steps > 1:
        warm = min(steps_per_epoch, steps // 5)
        lr = keras.optimizers.schedules.CosineDecay(
            lr / 10.0 if warm else lr,
            decay_steps=max(steps - warm, 1),
            alpha=0.01,
            warmup_target=lr if warm else None,
            warmup_steps=warm,
        )
    if cfg.weight_decay > 0:
        return keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay)
    return keras.optimizers.Adam(lr)


def _compile(model, cfg: TrialConfig, lr: float, jit_compile, steps: int = 0, per_epoch: int = 1):
    keras = _keras()
    loss = (
        keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)
        if cfg.label_smoothing > 0
        else keras.losses.SparseCategoricalCrossentropy()
    )
    model.compile(
        optimizer=_optimizer(cfg, lr, steps, per_epoch),
        loss=loss,
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )


def _fit(model, train, val, batch_size: int, **kw):
    """``fit`` on a tf.data pipeline, or on NumPy arrays where TensorFlow is absent."""
    if isinstance(train, tuple):  # arrays (a caller's own)
        return model.fit(
            train[0], train[1], validation_data=val, batch_size=batch_size, shuffle=True, **kw
        )
    return model.fit(train, validation_data=val, shuffle=False, **kw)  # the pipeline shuffles


def _labels(y, num_classes: int, label_smoothing: float):
    if label_smoothing > 0:
        return np.eye(num_classes, dtype="float32")[y]
    return y


def _enable_determinism() -> None:
    try:
        import tensorflow as tf

        # Also runs tf.data maps with stateful random ops (the augmentation) in sequence.
        tf.config.experimental.enable_op_determinism()
    except (ImportError, AttributeError):  # not TensorFlow: seeds are all there is
        pass


def full_data(data: DataBundle) -> DataBundle:
    """``data`` with the validation split added to the training split (for a refit on both).

    The validation split stays as it is: a refit's validation scores are on images it trained
    on, so they only tell a collapsed fit from a working one. The images are not copied: the
    training view's indices are the train and validation indices together.
    """
    from automl.data.images import concat

    return DataBundle(
        name=data.name,
        source=data.source,
        class_names=data.class_names,
        x_train=concat(data.x_train, data.x_val),
        y_train=np.concatenate([data.y_train, data.y_val]),
        x_val=data.x_val,
        y_val=data.y_val,
        x_test=data.x_test,
        y_test=data.y_test,
    )


def refit_epochs(best_epoch: float | None) -> int | None:
    """A refit's ``stop_after``: the original trial's epochs up to its best one."""
    return int(best_epoch) + 1 if best_epoch is not None and best_epoch == best_epoch else None


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
    stop_after: int | None = None,
) -> TrialOutcome:
    """Train one configuration on ``data`` and return the model at its best epoch.

    A ``pretrained`` trial trains the head on the frozen backbone (phase 1), then fine-tunes
    the top of the backbone (phase 2, guarded: if it only makes validation worse, it stops
    and phase 1's best weights stand). A ``scratch`` trial trains the whole net in one phase.

    Args:
        cfg: the trial's hyperparameters.
        data: the split data; validation scores the epochs, test is not touched here.
        options: how to run (embedding cache, XLA, early stopping, deadline, objective).
        embeddings: an :class:`automl.embeddings.EmbeddingCache` shared across trials.
        on_epoch: called after every epoch with ``{"step", "phase", loss, accuracy, ...}``.
        budget: total epochs across both phases (Hyperband's resource); None = the config's.
        initial_epoch: epochs already done by ``initial_weights`` (a Hyperband continuation).
        initial_weights: a ``.keras`` / ``.weights.h5`` file to start from.
        seed: seeds Keras, NumPy and the shuffling.
        stop_after: a replay (a refit): the same schedules, stopped after this many epochs in
            all; no early stopping, no phase-2 guard, and the model is the last epoch's.
    """
    from automl.fidelity import subset

    keras = _keras()
    options = options or RunOptions()
    # The trial's fidelity: index subsets of the splits (the test split is not touched here).
    data = subset(data, cfg.train_images, cfg.val_images)
    if options.deterministic:
        _enable_determinism()
    keras.utils.set_random_seed(seed)
    parts = build_family(cfg, data.num_classes)
    model = parts.model
    if initial_weights:
        model.load_weights(initial_weights)
    p1, p2 = cfg.schedule(budget)
    # The learning-rate schedules span p1 and p2 epochs; a replay stops after stop_after.
    end1, end2 = (p1, p1 + p2) if stop_after is None else (min(p1, stop_after), stop_after)
    if stop_after is not None:
        options = replace(options, early_stopping_patience=0, phase2_guard_patience=0)
    best = BestEpoch(options.objective, keep_last=stop_after is not None)
    y_tr = _labels(data.y_train, data.num_classes, cfg.label_smoothing)
    y_va = _labels(data.y_val, data.num_classes, cfg.label_smoothing)
    steps_per_epoch = max(math.ceil(len(data.y_train) / cfg.batch_size), 1)
    stopped = False
    times = {"phase1_seconds": 0.0, "phase2_seconds": 0.0}
    tags: dict[str, str] = {}
    scratch = cfg.family == "scratch"
    mode = "min" if options.objective == "val_loss" else "max"

    def watch(phase, guard=None):
        return _EpochWatch(model, phase, on_epoch, best, options.deadline, guard)

    def check(w):
        if w.diverged:
            raise DivergedError(f"diverged: loss became NaN or inf in {w.phase}")
        return w.deadline_hit

    if initial_epoch > 0:  # a continued trial: its starting point is a candidate best
        _compile(model, cfg, cfg.learning_rate, options.jit_compile)
        loss, acc = model.evaluate(make_dataset(data.x_val, y_va, cfg.batch_size), verbose=0)
        best.offer(initial_epoch - 1, {"val_loss": float(loss), "val_accuracy": float(acc)}, model)

    # Phase 1: the head on a frozen backbone (on cached embeddings by default), or the whole
    # scratch net, with augmentation and early stopping.
    t0 = time.perf_counter()
    if initial_epoch < p1:
        w = watch("phase1")
        steps = steps_per_epoch * (p1 - initial_epoch)
        if not scratch and options.embedding_cache and embeddings is not None:
            f_tr, f_va = embeddings.get(parts.features, cfg, data, seed=seed)
            head_model = keras.Sequential([keras.Input(shape=f_tr.shape[1:]), parts.head])
            _compile(
                head_model, cfg, cfg.learning_rate, options.jit_compile, steps, steps_per_epoch
            )
            head_model.fit(
                f_tr,
                y_tr,
                validation_data=(f_va, y_va),
                batch_size=cfg.batch_size,
                epochs=end1,
                initial_epoch=initial_epoch,
                shuffle=True,
                verbose=options.verbose,
                callbacks=[w],
            )
        else:
            _compile(model, cfg, cfg.learning_rate, options.jit_compile, steps, steps_per_epoch)
            callbacks = [w]
            if scratch and options.early_stopping_patience:
                callbacks.append(
                    keras.callbacks.EarlyStopping(
                        monitor=options.objective,
                        patience=2 * options.early_stopping_patience,
                        mode=mode,
                    )
                )
            _fit(
                model,
                make_dataset(
                    data.x_train,
                    y_tr,
                    cfg.batch_size,
                    shuffle=True,
                    augment=cfg.augment if scratch else "none",
                    seed=seed,
                ),
                make_dataset(data.x_val, y_va, cfg.batch_size),
                cfg.batch_size,
                epochs=end1,
                initial_epoch=initial_epoch,
                verbose=options.verbose,
                callbacks=callbacks,
            )
        stopped = check(w)
        best.restore(model)
    times["phase1_seconds"] = time.perf_counter() - t0

    # Phase 2: unfreeze the top of the backbone, a bounded lower learning rate, augmentation,
    # early stopping, and the guard against fine-tuning that only makes validation worse.
    t0 = time.perf_counter()
    if p2 > 0 and not stopped and end2 > p1:
        n = unfreeze_top(parts.backbone, cfg.fine_tune_depth)
        lr2 = phase2_learning_rate(cfg)
        log.debug("phase 2: %d backbone layers unfrozen, learning rate %.2g", n, lr2)
        _compile(model, cfg, lr2, options.jit_compile, steps_per_epoch * p2, steps_per_epoch)
        guard = (
            (best.score, options.phase2_guard_patience)
            if options.phase2_guard_patience and best.score is not None
            else None
        )
        w = watch("phase2", guard)
        callbacks = [w]
        if options.early_stopping_patience:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor=options.objective, patience=options.early_stopping_patience, mode=mode
                )
            )
        _fit(
            model,
            make_dataset(
                data.x_train, y_tr, cfg.batch_size, shuffle=True, augment=cfg.augment, seed=seed
            ),
            make_dataset(data.x_val, y_va, cfg.batch_size),
            cfg.batch_size,
            epochs=min(p1 + p2, end2),
            initial_epoch=max(initial_epoch, p1),
            verbose=options.verbose,
            callbacks=callbacks,
        )
        stopped = check(w)
        if guard is not None:
            tags["automl.phase2_guard"] = (
                f"stopped phase 2 after {w.worse_in_a_row} epochs worse than phase 1's best "
                f"{options.objective}; phase-1 best weights kept"
                if w.guard_hit
                else "not triggered"
            )
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
        "train_images": float(len(data.y_train)),  # the fidelity: images it trained on
        "val_images": float(len(data.y_val)),
        **times,
    }
    if p2 > 0:
        metrics["phase2_learning_rate"] = phase2_learning_rate(cfg)
        metrics["phase2_guard"] = float(tags.get("automl.phase2_guard", "").startswith("stopped"))
    best.weights = None  # release the snapshot before the next trial
    gc.collect()
    return TrialOutcome(
        model=model,
        metrics=metrics,
        history=best.history,
        stopped_by_deadline=stopped,
        tags=tags,
    )
