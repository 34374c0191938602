"""Run one trial: build the model of its family, then train it phase by phase.

A family (:mod:`automl.families`) says what a phase does: ``pretrained`` trains the head on a
frozen backbone (phase 1), then fine-tunes its top (phase 2); ``scratch`` trains the whole net
in one phase. This is the only module that calls ``fit()``. It knows nothing of MLflow or
KerasTuner: progress leaves through the ``on_epoch`` callable, results through
:class:`TrialOutcome`.
"""

from __future__ import annotations

import functools
import gc
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from automl.data import DataBundle
from automl.families.pretrained import (  # noqa: F401 (re-exported: phase 2's bounds)
    PHASE2_MAX_FACTOR,
    PHASE2_MAX_LR,
    phase2_learning_rate,
)
from automl.families.registry import DEFAULT_FAMILY, default_of, family_keys, family_of
from automl.task_training import epoch_objectives, fit_weights
from automl.tasks import is_classification, task_of

log = logging.getLogger("automl")


class DivergedError(Exception):
    """The loss became NaN or inf; the trial must not be retried."""


def _default(name: str) -> Any:
    return default_of(DEFAULT_FAMILY, name)  # the registry's (the default family's)


@dataclass(frozen=True)
class TrialConfig:
    """The hyperparameters of one trial (see ``automl.space.HYPERPARAMETERS``).

    Every default is the registry's (:mod:`automl.families`), the one a search fills in
    for a hyperparameter its space leaves out. A family from a plugin keeps its own
    hyperparameters in ``extra`` (``(name, value)`` pairs), read as attributes too.
    """

    backbone: str = _default("backbone")
    weights: str = _default("weights")
    image_size: int = _default("image_size")
    learning_rate: float = _default("learning_rate")
    batch_size: int = _default("batch_size")
    dropout: float = _default("dropout")
    fine_tune_depth: float = _default("fine_tune_depth")
    head_epochs: int = _default("head_epochs")
    fine_tune_epochs: int = _default("fine_tune_epochs")
    augment: str = _default("augment")
    fine_tune_lr_factor: float = _default("fine_tune_lr_factor")
    label_smoothing: float = _default("label_smoothing")
    family: str = _default("family")
    weight_decay: float = _default("weight_decay")
    lr_schedule: str = _default("lr_schedule")
    pooling: str = _default("pooling")
    head_layers: int = _default("head_layers")
    head_units: int = _default("head_units")
    head_batchnorm: bool = _default("head_batchnorm")
    epochs: int = _default("epochs")
    blocks: int = _default("blocks")
    conv_layers: int = _default("conv_layers")
    filters: int = _default("filters")
    width_multiplier: float = _default("width_multiplier")
    kernel_size: int = _default("kernel_size")
    separable: bool = _default("separable")
    residual: bool = _default("residual")
    train_images: int = 0  # a stratified subset of the training split (0: all; automl.fidelity)
    val_images: int = 0  # and of the validation split, for scoring epochs (0: all)
    class_weight: str = "none"  # "balanced": loss weights against imbalance (automl.imbalance)
    extra: tuple = ()  # a plugin family's own hyperparameters: ((name, value), ...)

    def __getattr__(self, name: str) -> Any:  # only called for names that are not fields
        for k, v in self.__dict__.get("extra", ()):
            if k == name:
                return v
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> TrialConfig:
        """From KerasTuner values (``family.name`` keys of the chosen family win) or a dict.

        A hyperparameter of the family that ``values`` leaves out takes the family's default.
        """
        family = values.get("family", DEFAULT_FAMILY)
        own = family_of({"family": family}).hyperparameters
        flat: dict[str, Any] = {k: spec.default for k, spec in own.items()}
        for k, v in values.items():
            if "." not in k and "/" not in k:
                flat[k] = v
        prefix = f"{family}."
        for k, v in values.items():
            if k.startswith(prefix):
                flat[k[len(prefix) :]] = v
        fields = cls.__dataclass_fields__
        out: dict[str, Any] = {}
        extra = []
        for k, v in flat.items():
            kind = fields[k].type if k in fields else own[k].kind if k in own else None
            if kind == "bool" and not isinstance(v, bool):
                v = str(v).lower() in ("1", "true", "yes")
            if k in fields and k != "extra":
                out[k] = v
            elif k in own:
                extra.append((k, v))
        return cls(**out, extra=tuple(extra))

    def to_dict(self) -> dict[str, Any]:
        """The hyperparameters this trial's family uses (what MLflow logs as params)."""
        keys = family_keys(self.family)
        d = asdict(self)
        d.update(d.pop("extra"))
        if d.get("class_weight") == "none":  # opt-in: logged only where a space sets it
            keys = tuple(k for k in keys if k != "class_weight")
        return {k: d[k] for k in d if k in keys}

    def schedule(self, budget: int | None = None) -> tuple[int, int]:
        """Epochs of (phase 1, phase 2). ``budget`` (Hyperband's resource) is the total of both.

        A one-phase family (scratch) has no phase 2.
        """
        return family_of(self).schedule(self, budget)


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


READ_GROUP_BYTES = 8 * 2**20  # images per read of make_dataset: whole batches up to this
READ_GROUP_MAX = 16  # batches per read at most (the first batch waits for its group's reads)


def read_group(batch_size: int, image_shape) -> int:
    """Batches of ``batch_size`` images of ``image_shape`` that one read of
    :func:`make_dataset` fetches. Each read is a ``numpy_function`` call, which costs ~50 µs
    on a 2-core machine whatever it reads, as much as 32 images' reads at 96 px; measured in
    bench/README.md ("Input pipeline: reads of several batches")."""
    batch_bytes = max(int(batch_size) * int(np.prod(image_shape)), 1)
    return int(min(max(READ_GROUP_BYTES // batch_bytes, 1), READ_GROUP_MAX))


def make_dataset(
    x,
    y,
    batch_size: int,
    *,
    shuffle: bool = False,
    augment: str = "none",
    seed: int = 0,
    weights=None,
):
    """A streaming input pipeline over ``x`` (an :class:`~automl.data.images.ImageView` or
    an array): shuffle the indices, batch them, read each batch's images, augment, prefetch.

    Small batches are read several at a time (up to :data:`READ_GROUP_BYTES` of images per
    read, then split back by ``rebatch``): the batches are the same, in the same order.

    Only indices are shuffled (8 bytes per image), and only a few batches of images are in
    memory at a time, whatever the size of the data. Where TensorFlow is absent (a JAX-only
    machine) it returns a ``keras.utils.PyDataset`` that reads the same way (no augmentation).
    ``weights``: one sample weight per image, yielded as a third element.
    """
    from automl.data.images import as_view, batch_buffers

    view = as_view(x)
    y = np.asarray(y)
    try:
        import tensorflow as tf
    except ImportError:  # JAX/PyTorch-only machine: a PyDataset over the view
        return _view_sequence(view, y, batch_size, shuffle, seed, weights)
    shape = view.shape[1:]
    buffers = batch_buffers(shape)  # aligned, reused: TensorFlow wraps them without a copy
    group = read_group(batch_size, shape)  # batches per read

    def read(positions):
        return view.read(positions, out=buffers.get(len(positions)))

    def load(pos, lbl):
        img = tf.numpy_function(read, [pos], tf.uint8, stateful=False)
        img.set_shape((None, *shape))
        return img, lbl

    if weights is not None:  # (image, target, sample weight) triples, e.g. multi-label weights
        pos = np.arange(len(view), dtype=np.int64)
        ds = tf.data.Dataset.from_tensor_slices((pos, y, np.asarray(weights, np.float32)))
    else:
        ds = tf.data.Dataset.from_tensor_slices((np.arange(len(view), dtype=np.int64), y))
    if shuffle:
        ds = ds.shuffle(len(view), seed=seed, reshuffle_each_iteration=True)  # indices only
    ds = ds.batch(batch_size * group)
    if weights is not None:
        ds = ds.map(lambda p, b, w: (*load(p, b), w), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    if group > 1:  # the group split into the batches it was made of; rebatch leaves their
        # number unknown, and Keras then runs a step past an epoch's end: say it
        batches = math.ceil(len(view) / batch_size)
        ds = ds.rebatch(batch_size).apply(tf.data.experimental.assert_cardinality(batches))
    aug = _augmenter(augment)
    if aug is not None:
        ds = ds.map(
            lambda a, *rest: (aug(tf.cast(a, "float32"), training=True), *rest),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return ds.prefetch(tf.data.AUTOTUNE)


def _view_sequence(view, y, batch_size: int, shuffle: bool, seed: int, weights=None):
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
            if weights is not None:
                return view.read(pos), y[pos], np.asarray(weights)[pos]
            return view.read(pos), y[pos]

        def on_epoch_end(self):
            if shuffle:
                self.rng.shuffle(self.order)

    return ViewSequence()


def rank(logs: dict[str, float], objective: str = "val_accuracy") -> tuple[float, float]:
    """Sort key of an epoch's scores, higher is better: :func:`automl.metrics.rank_key`."""
    from automl.metrics import rank_key

    return rank_key(logs, objective)


class _EpochWatchBase:
    """Keras callback pieces folded into one: report, keep the best weights, NaN guard,
    deadline, and phase 2's guard. :func:`_EpochWatch` makes it a Keras callback."""

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


@functools.cache
def _epoch_watch_class():
    """The Keras callback class, made on first use so that importing needs no keras."""
    return type("EpochWatch", (_EpochWatchBase, _keras().callbacks.Callback), {})


def _EpochWatch(*args, **kwargs):  # noqa: N802 - used as the class it makes
    return _epoch_watch_class()(*args, **kwargs)


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


def _compile(
    model,
    cfg: TrialConfig,
    lr: float,
    jit_compile,
    steps: int = 0,
    per_epoch: int = 1,
    task=None,
):
    """Compile with the task's loss: classification's (sparse) cross-entropy with label
    smoothing and the accuracy metric, as always; otherwise ``task.keras_loss()`` and no
    Keras metric (TaskMetrics adds the task's objectives to each epoch's logs)."""
    keras = _keras()
    if task is None or is_classification(task):
        loss = (
            keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)
            if cfg.label_smoothing > 0
            else keras.losses.SparseCategoricalCrossentropy()
        )
        metrics = ["accuracy"]
    else:
        loss, metrics = task.keras_loss(), []
    model.compile(
        optimizer=_optimizer(cfg, lr, steps, per_epoch),
        loss=loss,
        metrics=metrics,
        jit_compile=jit_compile,
    )


def _fit(model, train, val, batch_size: int, **kw):
    """``fit`` on a tf.data pipeline, or on NumPy arrays where TensorFlow is absent."""
    if isinstance(train, tuple):  # arrays (a caller's own)
        return model.fit(
            train[0], train[1], validation_data=val, batch_size=batch_size, shuffle=True, **kw
        )
    return model.fit(train, validation_data=val, shuffle=False, **kw)  # the pipeline shuffles


def _labels(y, num_classes: int, label_smoothing: float, task=None):
    """The targets ``fit`` takes: one-hot rows for label smoothing (classification only)."""
    if label_smoothing > 0 and (task is None or is_classification(task)):
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

    out = DataBundle(
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
    if getattr(data, "task", None) is not None:
        out.task = data.task
    return out


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
    What each phase does is the family's (:class:`automl.families.Family`).

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

    options = options or RunOptions()
    # The trial's fidelity: index subsets of the splits (the test split is not touched here).
    data = subset(data, cfg.train_images, cfg.val_images)
    if options.deterministic:
        _enable_determinism()
    _keras().utils.set_random_seed(seed)
    from automl.families import build

    task = task_of(data)
    task.check_objective(options.objective)
    parts = build(cfg, task)
    if initial_weights:
        parts.model.load_weights(initial_weights)
    if stop_after is not None:
        options = replace(options, early_stopping_patience=0, phase2_guard_patience=0)
    run = _TrialRun(cfg, data, parts, options, on_epoch, seed)
    run.plan(budget, stop_after)
    if initial_epoch > 0:  # a continued trial: its starting point is a candidate best
        run.offer_start(initial_epoch)
    run.timed("phase1", initial_epoch < run.p1, run.phase1, initial_epoch, embeddings)
    phase2 = run.p2 > 0 and not run.stopped and run.end2 > run.p1
    run.timed("phase2", phase2, run.phase2, initial_epoch)
    return run.outcome()


class _TrialRun:
    """One trial's training, phase by phase (the body of :func:`run_trial`)."""

    def __init__(
        self, cfg: TrialConfig, data: DataBundle, parts, options: RunOptions, on_epoch, seed
    ):
        self.cfg, self.data, self.parts, self.options = cfg, data, parts, options
        self.family = family_of(cfg)
        self.model = parts.model
        self.on_epoch, self.seed = on_epoch, seed
        self.task = task_of(data)
        self.y_tr = _labels(data.y_train, data.num_classes, cfg.label_smoothing, self.task)
        self.y_va = _labels(data.y_val, data.num_classes, cfg.label_smoothing, self.task)
        # The objectives TaskMetrics adds per epoch (none for a classification on
        # val_accuracy/val_loss); the class weights or per-image weights of class_weight.
        self.extra = epoch_objectives(self.task, options.objective)
        self.class_weight, self.sample_weight = fit_weights(
            getattr(cfg, "class_weight", "none"), self.task, data.y_train
        )
        self.steps_per_epoch = max(math.ceil(len(data.y_train) / cfg.batch_size), 1)
        self.stopped = False
        self.times = {"phase1_seconds": 0.0, "phase2_seconds": 0.0}
        self.tags: dict[str, str] = {}
        from automl.metrics import direction

        self.mode = direction(options.objective)

    def plan(self, budget: int | None, stop_after: int | None) -> None:
        """Each phase's epochs; the learning-rate schedules span them, a replay stops early."""
        self.p1, self.p2 = self.cfg.schedule(budget)
        p1, p2 = self.p1, self.p2
        self.end1, self.end2 = (
            (p1, p1 + p2) if stop_after is None else (min(p1, stop_after), stop_after)
        )
        self.best = BestEpoch(self.options.objective, keep_last=stop_after is not None)

    def timed(self, phase: str, due: bool, step, *args) -> None:
        """Run ``step(*args)`` where ``due``; its seconds are the ``{phase}_seconds`` metric."""
        t0 = time.perf_counter()
        if due:
            step(*args)
        self.times[f"{phase}_seconds"] = time.perf_counter() - t0

    def watch(self, phase: str, guard=None):
        o = self.options
        return _EpochWatch(self.model, phase, self.on_epoch, self.best, o.deadline, guard)

    def check(self, w) -> bool:
        """Raises on a diverged phase; whether the deadline stopped it."""
        if w.diverged:
            raise DivergedError(f"diverged: loss became NaN or inf in {w.phase}")
        return w.deadline_hit

    def early_stopping(self, patience: int) -> list:
        if not patience:
            return []
        keras = _keras()
        return [
            keras.callbacks.EarlyStopping(
                monitor=self.options.objective, patience=patience, mode=self.mode
            )
        ]

    def train_sets(self, augment: str):
        cfg, data = self.cfg, self.data
        train = make_dataset(
            data.x_train,
            self.y_tr,
            cfg.batch_size,
            shuffle=True,
            augment=augment,
            seed=self.seed,
            weights=self.sample_weight,
        )
        return train, make_dataset(data.x_val, self.y_va, cfg.batch_size)

    def compile(self, model, lr: float, steps: int = 0, per_epoch: int = 1) -> None:
        _compile(model, self.cfg, lr, self.options.jit_compile, steps, per_epoch, self.task)

    def task_metrics(self, x_val) -> list:
        """[a TaskMetrics callback adding :attr:`extra` to the logs] ([] when none)."""
        if not self.extra:
            return []
        from automl.task_metrics import TaskMetrics

        return [TaskMetrics(self.task, x_val, self.data.y_val, objectives=self.extra)]

    def fit_kwargs(self) -> dict:
        """``class_weight`` for ``fit`` where the config weighs classes (else nothing)."""
        return {} if self.class_weight is None else {"class_weight": self.class_weight}

    def offer_start(self, initial_epoch: int) -> None:
        """The weights a continued trial starts from, as a candidate best epoch."""
        cfg, model = self.cfg, self.model
        self.compile(model, cfg.learning_rate)
        val = make_dataset(self.data.x_val, self.y_va, cfg.batch_size)
        scores = model.evaluate(val, verbose=0, return_dict=True)
        logs = {f"val_{k}": float(v) for k, v in scores.items()}
        if self.extra:
            from automl.metrics import score

            out = np.asarray(model.predict(val, verbose=0))
            logs.update({o: score(self.task, self.data.y_val, out, o) for o in self.extra})
        self.best.offer(initial_epoch - 1, logs, model)

    def phase1(self, initial_epoch: int, embeddings) -> None:
        """The head on the frozen backbone (on cached embeddings where the family and the
        search allow), or the whole net; augmentation and early stopping as the family says."""
        cfg, o, fam = self.cfg, self.options, self.family
        w = self.watch("phase1")
        steps = self.steps_per_epoch * (self.p1 - initial_epoch)
        if fam.head_on_embeddings and o.embedding_cache and embeddings is not None:
            self.fit_head(w, steps, initial_epoch, embeddings)
        else:
            self.compile(self.model, cfg.learning_rate, steps, self.steps_per_epoch)
            train, val = self.train_sets(cfg.augment if fam.phase1_augment else "none")
            callbacks = [*self.task_metrics(val), w]
            if fam.phase1_patience and o.early_stopping_patience:
                callbacks += self.early_stopping(fam.phase1_patience * o.early_stopping_patience)
            _fit(
                self.model,
                train,
                val,
                cfg.batch_size,
                epochs=self.end1,
                initial_epoch=initial_epoch,
                verbose=o.verbose,
                callbacks=callbacks,
                **self.fit_kwargs(),
            )
        self.stopped = self.check(w)
        self.best.restore(self.model)

    def fit_head(self, w, steps: int, initial_epoch: int, embeddings) -> None:
        """Phase 1 on the backbone's cached features: only the head trains."""
        cfg, o = self.cfg, self.options
        f_tr, f_va = embeddings.get(self.parts.features, cfg, self.data, seed=self.seed)
        head_model = _keras().Sequential([_keras().Input(shape=f_tr.shape[1:]), self.parts.head])
        self.compile(head_model, cfg.learning_rate, steps, self.steps_per_epoch)
        weights = {} if self.sample_weight is None else {"sample_weight": self.sample_weight}
        head_model.fit(
            f_tr,
            self.y_tr,
            validation_data=(f_va, self.y_va),
            batch_size=cfg.batch_size,
            epochs=self.end1,
            initial_epoch=initial_epoch,
            shuffle=True,
            verbose=o.verbose,
            callbacks=[*self.task_metrics(f_va), w],
            **self.fit_kwargs(),
            **weights,
        )

    def phase2(self, initial_epoch: int) -> None:
        """Fine-tuning as the family prepares it: a bounded lower learning rate, augmentation,
        early stopping, and the guard against fine-tuning that only makes validation worse."""
        cfg, o, fam, best = self.cfg, self.options, self.family, self.best
        fam.start_phase2(self.parts, cfg)
        lr2 = fam.phase2_learning_rate(cfg)
        per = self.steps_per_epoch
        self.compile(self.model, lr2, per * self.p2, per)
        guard = (
            (best.score, o.phase2_guard_patience)
            if o.phase2_guard_patience and best.score is not None
            else None
        )
        w = self.watch("phase2", guard)
        train, val = self.train_sets(cfg.augment)
        callbacks = [*self.task_metrics(val), w, *self.early_stopping(o.early_stopping_patience)]
        _fit(
            self.model,
            train,
            val,
            cfg.batch_size,
            epochs=min(self.p1 + self.p2, self.end2),
            initial_epoch=max(initial_epoch, self.p1),
            verbose=o.verbose,
            callbacks=callbacks,
            **self.fit_kwargs(),
        )
        self.stopped = self.check(w)
        if guard is not None:
            self.tags["automl.phase2_guard"] = (
                f"stopped phase 2 after {w.worse_in_a_row} epochs worse than phase 1's best "
                f"{o.objective}; phase-1 best weights kept"
                if w.guard_hit
                else "not triggered"
            )
        best.restore(self.model)
        fam.end_phase2(self.parts)

    def outcome(self) -> TrialOutcome:
        """The model at its best epoch and the trial's metrics."""
        best, data = self.best, self.data
        if best.weights is None:
            raise DivergedError("diverged: no epoch produced finite validation scores")
        metrics = {
            "val_accuracy": best.logs.get("val_accuracy", float("nan")),
            "val_loss": best.logs.get("val_loss", float("nan")),
            # the best epoch's task objectives (val_mae, val_macro_f1, ...) where TaskMetrics
            # added them: the scores the search ranks by
            **{k: best.logs.get(k, float("nan")) for k in self.extra},
            "accuracy": best.logs.get("accuracy", float("nan")),
            "loss": best.logs.get("loss", float("nan")),
            "best_epoch": float(best.epoch),
            "epochs_run": float(len(best.history)),
            "train_images": float(len(data.y_train)),  # the fidelity: images it trained on
            "val_images": float(len(data.y_val)),
            **self.times,
        }
        if self.p2 > 0:
            metrics["phase2_learning_rate"] = self.family.phase2_learning_rate(self.cfg)
            guard = self.tags.get("automl.phase2_guard", "")
            metrics["phase2_guard"] = float(guard.startswith("stopped"))
        best.weights = None  # release the snapshot before the next trial
        gc.collect()
        return TrialOutcome(
            model=self.model,
            metrics=metrics,
            history=best.history,
            stopped_by_deadline=self.stopped,
            tags=self.tags,
        )
