"""The executor boundary: the search submits a trial job and gets back a result or a failure.

An executor runs :class:`TrialJob` s somewhere (this process, a recycled worker process, a Ray
cluster) and hands back a :class:`concurrent.futures.Future` that resolves to a
:class:`JobResult` or a :class:`JobFailure`; it never raises for a failed trial. The search
loop knows nothing else about it. A new executor is one module in this package that defines
a subclass of :class:`Executor` named ``EXECUTOR``.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Any


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
    where: dict[str, str] = field(default_factory=dict)  # node, pid, GPU ids
    model: Any = None  # the keras.Model, only when it ran in the search's own process
    model_file: bytes | None = None  # its .keras export, when it ran on another machine

    @property
    def score(self) -> dict[str, float]:
        return {k: self.metrics[k] for k in ("val_accuracy", "val_loss")}


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


class Executor(ABC):
    """Runs trial jobs; up to :attr:`slots` at once."""

    slots: int = 1
    # Called with each epoch's entry where the executor can report it (the progress display);
    # the search sets it before the first submit.
    on_epoch: Any = None

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
