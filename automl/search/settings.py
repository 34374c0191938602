"""What defines a search besides its space and its data, validated before anything runs."""

from __future__ import annotations

import os
from dataclasses import dataclass

from automl.errors import SearchError, quoted
from automl.paths import check_experiment_name

TUNERS = ("random", "bayesian", "hyperband")
DEFAULT_EXPERIMENT = "automl"
# The default search (the data-aware space, no ``space``/``--space``): the budget, not the
# trial count, ends it. Start-up, the ensemble and test scoring add 1-1.5 min, under 5
# minutes in all on 2 CPU cores. A search with a given space: 6 trials, no budget.
DEFAULT_TIME_BUDGET = 3.0  # minutes
DEFAULT_MAX_TRIALS = 100
DEFAULT_ENSEMBLE = 3
SEED_MAX = 2**32 - 1  # NumPy's seeds (and so Keras's set_random_seed) stop there


@dataclass
class SearchSettings:
    """Everything that defines a search besides the space and the data."""

    experiment: str = DEFAULT_EXPERIMENT
    tracking_uri: str | None = None
    tuner: str = "bayesian"
    max_trials: int = 6
    seed: int = 0
    time_budget: float | None = None  # minutes
    keep_top_k: int = 3
    embedding_cache: bool = True
    max_retries: int = 1
    max_consecutive_failures: int = 3
    overwrite: bool = False
    workdir: str | None = None
    mixed_precision: bool = True
    xla: bool = True
    register: str | None = None  # Model Registry name for the best model
    # Trials run in a worker process, replaced after this many trials or once its memory
    # grew 10 % over its first trial (bounded memory); 0 runs them in the search's own
    # process. A one-trial search always runs in-process. With Ray: trials per Ray worker.
    trials_per_worker: int = 10
    # Up to this many trials at once, on Ray (a local runtime, or the cluster at ray_address).
    workers: int = 1
    ray_address: str | None = None  # default: $RAY_ADDRESS when workers > 1
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    verbose: int = 1  # progress display (automl.progress): 0 shows nothing
    # A greedy ensemble of up to this many kept trials after the search (0 = off; the CLI's
    # --ensemble defaults to 3); TensorFlow deterministic ops.
    ensemble: int = 0
    deterministic: bool = False
    # Train the winning trial again on train + validation (automl.refit); on by default for
    # the data-aware search, off with a given space. Trials leave it 15 % of a time budget.
    refit: bool = False

    def validate(self) -> None:
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, int)
            or not (0 <= self.seed <= SEED_MAX)
        ):
            raise SearchError(
                f"seed={quoted(self.seed)} is out of range; pass --seed from 0 to {SEED_MAX}"
            )
        if self.tuner not in TUNERS:
            raise SearchError(f"unknown tuner {self.tuner!r}; choose one of: {', '.join(TUNERS)}")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise SearchError(
                f"max_retries={self.max_retries!r} must be 0 or more; pass --max-retries 0 to never retry"
            )
        if not isinstance(self.max_consecutive_failures, int) or self.max_consecutive_failures < 1:
            raise SearchError(
                f"max_consecutive_failures={self.max_consecutive_failures!r} must be 1 or more; "
                "pass --max-consecutive-failures 1 or more"
            )
        if not isinstance(self.ensemble, int) or self.ensemble < 0:
            raise SearchError(
                f"ensemble={self.ensemble!r} must be 0 (off) or more; pass --ensemble 0 to turn it off"
            )
        if not isinstance(self.refit, bool):
            raise SearchError(f"refit={self.refit!r} must be True or False")
        if not isinstance(self.trials_per_worker, int) or self.trials_per_worker < 0:
            raise SearchError(
                f"trials_per_worker={self.trials_per_worker!r} must be 0 or more; pass "
                "--trials-per-worker 0 to run trials in the search's own process"
            )
        if not isinstance(self.max_trials, int) or self.max_trials < 1:
            raise SearchError(
                f"max_trials={self.max_trials!r} must be a positive integer; pass --max-trials 1 or more"
            )
        if self.time_budget is not None and not self.time_budget > 0:
            raise SearchError(
                f"time_budget={self.time_budget!r} minutes must be positive; omit it for no budget"
            )
        if self.keep_top_k < 1:
            raise SearchError(
                f"keep_top_k={self.keep_top_k!r} must be at least 1 (the best model is always kept)"
            )
        if self.register is not None and (
            not isinstance(self.register, str) or not self.register.strip()
        ):
            raise SearchError(f"register={self.register!r} must be a non-empty model name")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise SearchError(
                f"workers={self.workers!r} must be a positive integer; pass --workers 1 or more"
            )
        if not _number(self.cpus_per_trial) or self.cpus_per_trial <= 0:
            raise SearchError(
                f"cpus_per_trial={self.cpus_per_trial!r} must be a positive number; "
                "pass --cpus-per-trial 1 or more"
            )
        if not _number(self.gpus_per_trial) or self.gpus_per_trial < 0:
            raise SearchError(
                f"gpus_per_trial={self.gpus_per_trial!r} must be 0 or more (fractions allowed, "
                "e.g. 0.25); pass --gpus-per-trial 0.25"
            )
        if self.ray_address is not None and (
            not isinstance(self.ray_address, str) or not self.ray_address.strip()
        ):
            raise SearchError(
                f"ray_address={self.ray_address!r} must be a cluster address such as "
                "HEAD:6379 or auto"
            )
        check_experiment_name(self.experiment, SearchError)

    @property
    def cluster_address(self) -> str | None:
        """The Ray cluster to join: ``ray_address``, else ``$RAY_ADDRESS``, else None (local)."""
        return self.ray_address or os.environ.get("RAY_ADDRESS") or None

    @property
    def executor(self) -> str:
        """Which :mod:`automl.executors` module runs the trials."""
        if self.workers > 1 or self.ray_address:
            return "ray"
        if self.trials_per_worker > 0 and self.max_trials > 1:
            return "process"
        return "inprocess"


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v
