"""The executor boundary: the search submits a trial job and gets back a result or a failure.

An executor runs :class:`TrialJob` s somewhere (this process, a recycled worker process, a Ray
cluster) and hands back a :class:`concurrent.futures.Future` that resolves to a
:class:`JobResult` or a :class:`JobFailure`; it never raises for a failed trial. The search
loop knows nothing else about it. An executor is an object that owns its options (sklearn
style: the constructor only checks and stores them, e.g. ``RayExecutor(workers=4)``); the
search hands it the set-up and the data with :meth:`Executor.bind`. A new executor is one
module that defines a subclass of :class:`Executor` decorated with
:func:`automl.executors.register_executor`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from automl.errors import SearchError


@dataclass
class TrialJob:
    """One trial to run: everything a worker needs besides the data (JSON-able)."""

    trial_id: str
    run_id: str  # the MLflow run the search created for it; the worker logs into it
    config: dict[str, Any]  # :class:`automl.trial.TrialConfig` as a dict
    seed: int
    split_seed: int
    options: dict[str, Any]  # :class:`automl.trial.RunOptions` as a dict
    budget: int | None = None  # Hyperband: total epochs of this trial
    initial_epoch: int = 0
    initial_weights: str | None = None  # a .keras file to start from (Hyperband parent)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class JobResult:
    """A trained and recorded trial."""

    metrics: dict[str, float]
    kept: bool = False  # its model file is among the top k
    stopped: bool = False  # stopped early by the time budget
    rss_mb: float = 0.0  # resident memory of the process that ran it, after it
    predict_per_s: float = 0.0  # images/s its model predicted its validation images at (0: ?)
    where: dict[str, str] = field(default_factory=dict)  # node, pid, GPU ids
    model: Any = None  # the keras.Model, only when it ran in the search's own process
    model_file: bytes | None = None  # its .keras export, when it ran on another machine

    @property
    def score(self) -> dict[str, float]:
        """val_accuracy, val_loss and the task's objectives it has (val_mae, ...)."""
        from automl.task_training import trial_scores

        return trial_scores(self.metrics)


@dataclass
class JobFailure:
    """A trial that failed; ``final`` ones (diverged, out of memory, bad input) are not retried."""

    reason: str
    details: str = ""
    final: bool = False


@dataclass
class WorkerSetup:
    """What every process that runs trials receives once (JSON-able)."""

    tracking_uri: str
    experiment: str
    checkpoint_folder: str
    keep_top_k: int
    objective: str
    embedding_dir: str | None = None  # the embedding cache on disk; None: off
    embedding_cache: bool = True
    mixed_precision: bool = True
    xla: bool = True
    log_level: int = logging.INFO
    data_dir: str | None = None  # where the process executor saved the data
    project_dir: str | None = None  # the search's folder (state an executor keeps for resume)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v


def _count(v, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


# The executors' options, each checked once, here: by the executor that takes it (at its
# construction) and by :class:`automl.search.SearchSettings` (the old ``search()`` keywords).
# ``(ok, message)``; the message is formatted with ``v``, the bad value.
OPTION_RULES: dict[str, tuple[Any, str]] = {
    "trials_per_worker": (
        lambda v: isinstance(v, int) and v >= 0,
        "trials_per_worker={v!r} must be 0 or more; pass --trials-per-worker 0 to run trials "
        "in the search's own process",
    ),
    "workers": (
        lambda v: _count(v, 1),
        "workers={v!r} must be a positive integer; pass --workers 1 or more",
    ),
    "cpus_per_trial": (
        lambda v: _number(v) and v > 0,
        "cpus_per_trial={v!r} must be a positive number; pass --cpus-per-trial 1 or more",
    ),
    "gpus_per_trial": (
        lambda v: _number(v) and v >= 0,
        "gpus_per_trial={v!r} must be 0 or more (fractions allowed, e.g. 0.25); "
        "pass --gpus-per-trial 0.25",
    ),
    "ray_address": (
        lambda v: v is None or (isinstance(v, str) and bool(v.strip())),
        "ray_address={v!r} must be a cluster address such as HEAD:6379 or auto",
    ),
}


def check_option(name: str, value: Any) -> None:
    """Raise :class:`SearchError` (one line naming the value and the fix) for a bad option."""
    ok, message = OPTION_RULES[name]
    if not ok(value):
        raise SearchError(message.format(v=value))


class Executor(ABC):
    """Runs trial jobs; up to :attr:`slots` at once.

    Subclasses take their options as keyword arguments (checked with :func:`check_option`
    and stored as attributes of the same name, so :meth:`options` can report them).
    """

    name: ClassVar[str] = ""  # its name in the registry (set by ``register_executor``)
    # Runs trials in the search's own process: nothing to share on disk with workers.
    in_process: ClassVar[bool] = False
    slots: int = 1
    # Called with each epoch's entry where the executor can report it (the progress display);
    # the search sets it before the first submit.
    on_epoch: Any = None
    setup: WorkerSetup | None = None
    data: Any = None

    def bind(self, setup: WorkerSetup, data: Any) -> Executor:
        """Hand the executor the search's set-up and data (before :meth:`start`); returns it."""
        self.setup, self.data = setup, data
        return self

    def options(self) -> dict[str, Any]:
        """Its options, as passed to the constructor."""
        import inspect

        names = inspect.signature(type(self)).parameters
        return {k: getattr(self, k) for k in names if hasattr(self, k)}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"

    @abstractmethod
    def start(self) -> dict[str, Any]:
        """Get ready to run trials; returns the accelerator set-up (``gpus``, ``jit_compile``...)."""

    @abstractmethod
    def submit(self, job: TrialJob) -> Future:
        """Start ``job``; the future resolves to a :class:`JobResult` or :class:`JobFailure`.

        A synchronous executor may run the job before returning a done future; Ctrl-C
        (KeyboardInterrupt) then propagates from here.
        """

    @abstractmethod
    def close(self, kill: bool = False) -> None:
        """Stop: between trials, or at once (running trials are abandoned) with ``kill``."""


def done_future(value: JobResult | JobFailure) -> Future:
    """A future that already holds ``value``."""
    f: Future = Future()
    f.set_result(value)
    return f
