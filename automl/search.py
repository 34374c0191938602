"""KerasTuner glue: an oracle proposes, :func:`automl.trial.run_trial` trains, MLflow records.

The oracle (random, Bayesian or Hyperband) and its state on disk come from KerasTuner, so
a search killed at any moment continues when the same command runs again: finished trials
are kept, the interrupted one runs again. Hyperband's resource is the total number of
epochs of a trial across both phases (see :meth:`automl.trial.TrialConfig.schedule`).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import tempfile
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from automl.data import DataBundle, load_data
from automl.embeddings import EmbeddingCache
from automl.errors import AutoMLError, SearchError
from automl.paths import check_experiment_name, inside, remove_owned
from automl.space import SearchSpace, load_space
from automl.tracking import (
    SCORES,
    TAG_TRIAL,
    Tracker,
    check_tracking_uri,
    rank_key,
    resolve_tracking_uri,
    sqlite_path,
)
from automl.trial import DivergedError, RunOptions, TrialConfig, run_trial

log = logging.getLogger("automl")

TUNERS = ("random", "bayesian", "hyperband")
DEFAULT_EXPERIMENT = "automl"
STATE_FILE = "automl_search.json"
MARKER = ".automl-search"  # marks a folder a search made; --overwrite clears only such folders
# What a search writes in its folder: all that --overwrite removes (nothing else is touched).
OWNED = (STATE_FILE, "automl_search.tmp", "tuner", "checkpoints", "worker_data", "embeddings")


@dataclass
class SearchSettings:
    """Everything that defines a search besides the space and the data."""

    experiment: str = "automl"
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
    # process. A one-trial search always runs in-process.
    trials_per_worker: int = 10
    # issue 11: greedy ensemble of up to this many kept trials after the search (0 = off;
    # the CLI's --ensemble defaults to 3); TensorFlow deterministic ops.
    ensemble: int = 0
    deterministic: bool = False

    def validate(self) -> None:
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
        if not isinstance(self.ensemble, int) or self.ensemble < 0:
            raise SearchError(
                f"ensemble={self.ensemble!r} must be 0 (off) or more; pass --ensemble 0 to turn it off"
            )
        if self.keep_top_k < 1:
            raise SearchError(
                f"keep_top_k={self.keep_top_k!r} must be at least 1 (the best model is always kept)"
            )
        if self.register is not None and (
            not isinstance(self.register, str) or not self.register.strip()
        ):
            raise SearchError(f"register={self.register!r} must be a non-empty model name")
        check_experiment_name(self.experiment, SearchError)


def _project_dir(settings: SearchSettings, uri: str) -> Path:
    if settings.workdir:
        base = Path(settings.workdir)
    else:
        db = sqlite_path(uri)
        base = (db.parent if db is not None else Path("mlruns")) / "automl"
    name = check_experiment_name(settings.experiment, SearchError)
    return inside(base, base / name, SearchError)


def _setup_accelerator(settings: SearchSettings) -> dict[str, Any]:
    """Mixed precision and XLA where a GPU helps; no grabbing all GPU memory up front."""
    import keras

    gpus = []
    try:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        for g in gpus:
            try:
                tf.config.experimental.set_memory_growth(g, True)
            except RuntimeError:  # already initialised
                pass
    except ImportError:
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
    use_mp = bool(gpus) and settings.mixed_precision
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mp else "float32")
    return {
        "gpus": len(gpus),
        "mixed_precision": use_mp,
        "jit_compile": "auto" if (gpus and settings.xla) else False,
    }


class _Checkpoints:
    """Model files of the best ``k`` trials; the others keep metrics and plots but no weights."""

    def __init__(self, folder: Path, k: int, objective: str, class_names: list[str]):
        self.folder, self.k, self.objective, self.class_names = folder, k, objective, class_names
        self.folder.mkdir(parents=True, exist_ok=True)
        self.index_file = folder / "index.json"
        self.reload()

    def reload(self) -> None:
        """Read the index again (a trial worker of the same search may have changed it)."""
        self.scores: dict[str, dict[str, float]] = (
            json.loads(self.index_file.read_text()) if self.index_file.exists() else {}
        )

    def path(self, trial_id: str) -> Path:
        return self.folder / f"trial_{trial_id}.keras"

    def _rank(self, scores: dict[str, float]) -> tuple[float, float]:
        return rank_key(scores, self.objective)

    def offer(self, trial_id: str, score: dict[str, float], model) -> bool:
        """Save ``model`` if it ranks in the top k; delete whatever falls out. True if kept."""
        ranked = sorted(self.scores.items(), key=lambda kv: self._rank(kv[1]), reverse=True)
        if len(ranked) >= self.k and self._rank(score) <= self._rank(ranked[self.k - 1][1]):
            return False
        from automl.export import export_model

        tmp = self.folder / f".trial_{trial_id}.tmp.keras"
        tmp.unlink(missing_ok=True)  # ours: left by a process killed while writing it
        export_model(model, tmp, class_names=self.class_names)  # a ready export
        tmp.replace(self.path(trial_id))
        self.scores[trial_id] = score
        ranked = sorted(self.scores.items(), key=lambda kv: self._rank(kv[1]), reverse=True)
        for tid, _ in ranked[self.k :]:
            self.path(tid).unlink(missing_ok=True)
            del self.scores[tid]
        tmp = self.index_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.scores))
        tmp.replace(self.index_file)
        return True


class _Session:
    """One search in progress: what the tuner callbacks need, in one place."""

    def __init__(
        self,
        space: SearchSpace,
        data: DataBundle,
        settings: SearchSettings,
        tracker: Tracker,
        parent_id: str,
        search_id: str,
        project: Path,
        options: RunOptions,
        worker=None,
        started: float | None = None,
    ):
        self.space, self.data, self.settings = space, data, settings
        self.tracker, self.parent_id, self.search_id = tracker, parent_id, search_id
        self.project, self.options = project, options
        self.worker = worker  # a TrialWorker, or None: trials run in this process
        self.embeddings = EmbeddingCache() if settings.embedding_cache and worker is None else None
        self.checkpoints = _Checkpoints(
            project / "checkpoints", settings.keep_top_k, space.objective, data.class_names
        )
        # The best finished trial's model stays in memory (one model), so the end of the
        # search neither reloads nor re-saves it.
        self.best_in_memory: tuple[str, dict[str, float], Any] | None = None
        started = time.time() if started is None else started
        self.deadline = started + settings.time_budget * 60 if settings.time_budget else None
        self.options.deadline = self.deadline
        self.consecutive_failures = 0  # trials failed for good in a row, in this process

    def _previous_runs(self, tid: str) -> list:
        """This search's MLflow runs of trial ``tid`` (earlier attempts, earlier processes)."""
        return [
            r for r in self.tracker.trial_runs(self.parent_id) if r.data.tags.get(TAG_TRIAL) == tid
        ]

    def run_one(self, trial) -> dict[str, float]:
        import keras_tuner as kt

        values = dict(trial.hyperparameters.values)
        cfg = TrialConfig.from_values(values)
        tid = trial.trial_id
        previous = self._previous_runs(tid)
        for r in previous:
            # Killed after its run finished but before KerasTuner saved its end: never run a
            # completed trial twice, hand KerasTuner the recorded scores instead.
            m = r.data.metrics
            if r.info.status == "FINISHED" and "best_val_accuracy" in m and "best_val_loss" in m:
                log.info(
                    "trial %s already finished (MLflow run %s): not run again", tid, r.info.run_id
                )
                return {"val_accuracy": m["best_val_accuracy"], "val_loss": m["best_val_loss"]}
        attempt = len(previous) + 1
        budget = values.get("tuner/epochs")
        initial_epoch = int(values.get("tuner/initial_epoch", 0) or 0)
        init_weights = None
        if values.get("tuner/trial_id"):
            ckpt = self.checkpoints.path(values["tuner/trial_id"])
            if ckpt.exists():
                init_weights = str(ckpt)
            else:  # the parent's weights were not kept (outside the top k): start over
                initial_epoch = 0
        # "lr" is the short alias the MLflow UI columns show next to batch_size and dropout.
        params = {
            **cfg.to_dict(),
            "lr": cfg.learning_rate,
            "trial_id": tid,
            "seed": self.settings.seed + int(tid),
        }
        if budget is not None:
            params.update(
                {
                    "hyperband_epochs": budget,
                    "hyperband_initial_epoch": initial_epoch,
                    "hyperband_parent": values.get("tuner/trial_id"),
                }
            )
        run_id = self.tracker.start_trial(
            self.parent_id, self.search_id, tid, params, attempt=attempt
        )
        log.info(
            "trial %s started (%d of at most %d): %s",
            tid,
            int(tid) + 1,
            self.settings.max_trials,
            ", ".join(f"{k}={v}" for k, v in cfg.to_dict().items()),
        )
        job = {
            "trial_id": tid,
            "run_id": run_id,
            "config": cfg.to_dict(),
            "budget": budget,
            "initial_epoch": initial_epoch,
            "initial_weights": init_weights,
            "seed": params["seed"],
            "split_seed": self.settings.seed,
            "options": asdict(self.options),
        }
        try:
            if self.worker is not None:
                out = self.worker.run(job)
            else:
                out = execute_trial(job, self._context())
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: close the run; it runs again on resume
            self.tracker.fail_trial(run_id, "interrupted (process stopped)", status="KILLED")
            raise
        except TrialFailed as e:
            self.tracker.fail_trial(run_id, e.reason, e.details)
            log.warning("trial %s failed: %s%s", tid, e.reason, " (not retried)" if e.final else "")
            if e.final:
                raise kt.errors.FailedTrialError(e.reason) from None
            raise
        m = out["metrics"]
        score = {k: m[k] for k in ("val_accuracy", "val_loss")}
        if "model" in out:  # run in this process: the best model so far stays in memory
            rank = self.checkpoints._rank
            if self.best_in_memory is None or rank(score) > rank(self.best_in_memory[1]):
                self.best_in_memory = (tid, score, out["model"])
            del out["model"]
        self.tracker.end_run(run_id, "FINISHED")
        log.info(
            "trial %s done: val_accuracy=%.4f val_loss=%.4f", tid, m["val_accuracy"], m["val_loss"]
        )
        return score

    def _context(self) -> TrialContext:
        return TrialContext(
            data=self.data,
            tracker=self.tracker,
            checkpoints=self.checkpoints,
            embeddings=self.embeddings,
        )


@dataclass
class TrialContext:
    """What a trial needs besides its job: the data, the store, checkpoints and the cache.

    The search's own process holds one; so does each trial worker (built from files).
    """

    data: DataBundle
    tracker: Tracker
    checkpoints: _Checkpoints
    embeddings: EmbeddingCache | None = None


class TrialFailed(Exception):
    """A trial failed; ``final`` ones (diverged, out of memory, bad input) are not retried."""

    def __init__(self, reason: str, details: str = "", final: bool = False):
        super().__init__(reason)
        self.reason, self.details, self.final = reason, details, final


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:300]


def _training_failure(e: Exception) -> TrialFailed:
    tb = traceback.format_exc()
    if isinstance(e, DivergedError):
        return TrialFailed("diverged", tb, final=True)
    oom = (
        isinstance(e, MemoryError)
        or "ResourceExhausted" in type(e).__name__
        or "out of memory" in str(e).lower()
    )
    if oom:
        return TrialFailed("out of memory", tb, final=True)
    return TrialFailed(f"{type(e).__name__}: {_first_line(e)}", tb, isinstance(e, AutoMLError))


def execute_trial(job: dict[str, Any], ctx: TrialContext) -> dict[str, Any]:
    """Train one trial and record it: per-epoch metrics, checkpoint (top k), scores, reports.

    Runs in the search's process or in a trial worker. Returns ``{"metrics", "kept",
    "stopped", "rss_mb"}`` (plus ``"model"``, which a worker does not send back); raises
    :class:`TrialFailed`, or KeyboardInterrupt when the process is stopped.
    """
    import keras
    import psutil

    cfg = TrialConfig.from_values(job["config"])
    tid, run_id, tracker = job["trial_id"], job["run_id"], ctx.tracker

    def on_epoch(entry):
        tracker.log_epoch(run_id, entry)
        log.info(
            "trial %s %s epoch %d: %s",
            tid,
            entry["phase"],
            entry["step"] + 1,
            " ".join(
                f"{k}={entry[k]:.4f}"
                for k in ("loss", "accuracy", "val_loss", "val_accuracy")
                if k in entry
            ),
        )

    emb = ctx.embeddings
    hits, misses = (emb.hits, emb.misses) if emb is not None else (0, 0)
    try:
        outcome = run_trial(
            cfg,
            ctx.data,
            options=RunOptions(**job["options"]),
            embeddings=ctx.embeddings,
            on_epoch=on_epoch,
            budget=job["budget"],
            initial_epoch=job["initial_epoch"],
            initial_weights=job["initial_weights"],
            seed=job["seed"],
        )
    except Exception as e:
        raise _training_failure(e) from None
    finally:
        keras.backend.clear_session()
        gc.collect()
    m = outcome.metrics
    try:
        score = {k: m[k] for k in ("val_accuracy", "val_loss")}
        kept = ctx.checkpoints.offer(tid, score, outcome.model)
        # The per-epoch series keep their names; the best epoch's scores are logged as best_*.
        tracker.log_metrics(run_id, {(f"best_{k}" if k in SCORES else k): v for k, v in m.items()})
        tracker.set_tags(
            run_id,
            {
                **outcome.tags,  # e.g. automl.phase2_guard (issue 11)
                "automl.checkpoint": str(ctx.checkpoints.path(tid)) if kept else "",
                "automl.stopped_by_budget": str(outcome.stopped_by_deadline),
                "automl.pid": str(os.getpid()),  # the process that trained it (a worker's)
                "automl.embeddings": (
                    "off"
                    if emb is None
                    else "computed"
                    if emb.misses > misses
                    else "cached"
                    if emb.hits > hits
                    else "unused"
                ),
            },
        )
        from automl.reports import log_trial_reports

        log_trial_reports(
            tracker,
            run_id,
            outcome,
            ctx.data,
            cfg,
            seed=job["seed"],
            split_seed=job["split_seed"],
            budget=job["budget"],
            trial_id=tid,
        )
    except Exception as e:  # e.g. disk full while saving the checkpoint: retried like a crash
        reason = f"{type(e).__name__} while saving the trial: {_first_line(e)}"
        raise TrialFailed(reason, traceback.format_exc()) from None
    model, stopped = outcome.model, outcome.stopped_by_deadline
    del outcome
    keras.backend.clear_session()
    gc.collect()
    # Resident memory of the process that ran the trial, after it: bounded across trials?
    rss = psutil.Process().memory_info().rss / 2**20
    tracker.log_metrics(run_id, {"process_rss_mb": rss})
    return {
        "metrics": m,
        "kept": kept,
        "stopped": stopped,
        "rss_mb": rss,
        "model": model,
    }


def _make_oracle(space: SearchSpace, settings: SearchSettings):
    import keras_tuner as kt

    objective = kt.Objective(space.objective, "min" if space.objective == "val_loss" else "max")
    common = dict(
        objective=objective,
        hyperparameters=space.to_keras_tuner(),
        seed=settings.seed,
        max_retries_per_trial=settings.max_retries,
        # Counted by AutoMLTuner instead: KerasTuner's own count spans resumed processes (a
        # resumed search would stop at its first trial end) and raises before saving its state.
        max_consecutive_failed_trials=None,
    )
    from automl.autospace import seeded_oracle  # issue 11: the space's seed trials run first

    if settings.tuner == "random":
        cls = seeded_oracle(kt.oracles.RandomSearchOracle, space.seed_trials)
        return cls(max_trials=settings.max_trials, **common)
    if settings.tuner == "bayesian":
        cls = seeded_oracle(kt.oracles.BayesianOptimizationOracle, space.seed_trials)
        return cls(
            max_trials=settings.max_trials,
            num_initial_points=min(3 + len(space.seed_trials), settings.max_trials),
            **common,
        )
    max_epochs = space.max_epochs()  # issue 11: across families
    oracle = kt.oracles.HyperbandOracle(max_epochs=max(max_epochs, 2), factor=3, **common)
    oracle.max_trials = settings.max_trials  # Hyperband has no max_trials of its own; cap it
    return oracle


class _TooManyFailures(Exception):
    """``max_consecutive_failures`` trials in a row failed for good."""


def _tuner_class():
    from keras_tuner.engine import base_tuner

    class AutoMLTuner(base_tuner.BaseTuner):
        """BaseTuner whose trials are run by an automl session (no hypermodel of its own)."""

        def __init__(self, oracle, session, **kwargs):
            self.session = session
            super().__init__(oracle=oracle, hypermodel=None, **kwargs)

        def run_trial(self, trial, *args, **kwargs):
            return self.session.run_one(trial)

        def on_trial_end(self, trial):
            import keras_tuner as kt

            super().on_trial_end(trial)  # the oracle records the end (and queues a retry)
            s = self.session
            status = self.oracle.trials[trial.trial_id].status
            if status == kt.engine.trial.TrialStatus.FAILED:
                s.consecutive_failures += 1
                if s.consecutive_failures >= s.settings.max_consecutive_failures:
                    raise _TooManyFailures(trial.message or "")
            elif status == kt.engine.trial.TrialStatus.COMPLETED:
                s.consecutive_failures = 0
            if s.deadline is not None and time.time() > s.deadline:
                log.info("time budget spent: no new trials")
                self.oracle.max_trials = len(self.oracle.trials)

        def save_model(self, trial_id, model, step=0):  # checkpoints are the session's job
            pass

    return AutoMLTuner


@dataclass
class SearchResult:
    """What a search leaves: its MLflow runs, the leaderboard, and the best model."""

    tracking_uri: str
    experiment: str
    parent_run_id: str
    objective: str = "val_accuracy"
    class_names: list[str] = field(default_factory=list)
    data: DataBundle | None = field(default=None, repr=False)
    test_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def tracker(self) -> Tracker:
        return Tracker(self.tracking_uri, self.experiment)

    def leaderboard(self):
        """pandas DataFrame, one row per trial run, best first."""
        return self.tracker.leaderboard(self.parent_run_id, self.objective)

    @property
    def best_trial(self) -> dict[str, Any]:
        """The best finished trial: ``trial_id``, ``run_id``, ``hyperparameters``, ``metrics``."""
        return best_trial(self.tracker, self.parent_run_id, self.objective)

    def best_model(self):
        """The best trial's model at its best epoch (``keras.Model``)."""
        from automl.export import load_best_model

        return load_best_model(self.tracker, self.parent_run_id)

    def export(self, path: str | Path, format: str = "keras", **kwargs) -> Path:
        """Write the best model to ``path`` in ``format`` (see :mod:`automl.export`).

        ``quantize="float16"`` / ``"int8"`` apply to ``format="tflite"``; int8 calibrates on
        this search's training images unless ``calibration_images=`` is given.
        """
        from automl.export import check_export_args, export_model

        check_export_args(
            path, format=format, force=kwargs.get("force", False), quantize=kwargs.get("quantize")
        )
        if kwargs.get("quantize") == "int8" and self.data is not None:
            kwargs.setdefault("calibration_images", self.data.x_train)
        return export_model(
            self.best_model(), path, format=format, class_names=self.class_names, **kwargs
        )


def best_trial(tracker: Tracker, parent_id: str, objective: str = "val_accuracy") -> dict[str, Any]:
    board = tracker.leaderboard(parent_id, objective)
    done = board[board["status"].eq("FINISHED")] if not board.empty else board
    if done.empty:
        raise SearchError(f"search {parent_id} has no completed trial; run `automl search` first")
    row = done.iloc[0]
    from automl.space import HYPERPARAMETERS

    return {
        "trial_id": row["trial"],
        "run_id": row["run_id"],
        "hyperparameters": {k: row[k] for k in HYPERPARAMETERS if k in row},
        "metrics": {
            k: row[k] for k in ("val_accuracy", "val_loss", "accuracy", "loss") if k in row
        },
    }


def search(
    data: Any = "demo",
    space: str | Path | dict | SearchSpace | None = None,
    *,
    max_trials: int = 6,
    tuner: str = "bayesian",
    experiment: str | None = None,
    tracking_uri: str | None = None,
    seed: int = 0,
    time_budget: float | None = None,
    embedding_cache: bool = True,
    keep_top_k: int = 3,
    overwrite: bool = False,
    strict_images: bool = False,
    **settings_kw: Any,
) -> SearchResult:
    """Run (or resume) a search and return its result.

    Args:
        data: ``"demo"``, a folder of class sub-folders, ``"tfds:NAME"`` or ``(x, y)`` arrays.
        space: a YAML file, a built-in space name ("default", "gpu"), a dict, or a SearchSpace;
            None (the default) chooses one from the data (see :mod:`automl.autospace`).
        max_trials: trials to run in all (a resumed search counts those already done).
        tuner: ``"random"``, ``"bayesian"`` or ``"hyperband"`` (KerasTuner oracles).
        experiment: MLflow experiment name; the same name resumes the search.
        tracking_uri: MLflow store; default ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlruns/mlflow.db``.
        seed: seeds the split, the oracle and every trial.
        time_budget: minutes; no new trial starts after it, a running one stops at its epoch end.
        embedding_cache: train phase 1 on cached backbone features.
        keep_top_k: model files kept for the best k trials only.
        overwrite: start over even if the experiment holds a search with another space or data.
        strict_images: refuse unreadable files in an image folder instead of skipping them.
        **settings_kw: the other :class:`SearchSettings`, e.g. ``trials_per_worker`` (trials
            run in a worker process replaced after that many, default 10, or once its memory
            grew 10 %, so memory stays bounded; 0 runs them in this process),
            ``max_retries``, ``register``, ``ensemble`` (a greedy ensemble of up to K kept
            trials after the search, kept only if it beats the best trial on validation;
            default 0 here, 3 from the CLI) and ``deterministic``.
    """
    settings = SearchSettings(
        experiment=DEFAULT_EXPERIMENT if experiment is None else experiment,
        tracking_uri=tracking_uri,
        tuner=tuner,
        max_trials=max_trials,
        seed=seed,
        time_budget=time_budget,
        embedding_cache=embedding_cache,
        keep_top_k=keep_top_k,
        overwrite=overwrite,
        **settings_kw,
    )
    settings.validate()
    uri = resolve_tracking_uri(settings.tracking_uri)
    check_tracking_uri(uri)
    if space is None:  # issue 11: a data-aware default space, chosen once the data is loaded
        from automl.autospace import default_space, probe_native_size, store_size_for

        native = probe_native_size(data)
        bundle = load_data(
            data, seed=seed, store_size=store_size_for(native), strict_images=strict_images
        )
        return run_search(default_space(bundle, native), bundle, settings)
    sp = load_space(space)
    check_weights_files(sp)
    bundle = load_data(
        data,
        seed=seed,
        store_size=min(int(sp.upper("image_size")), 256),
        strict_images=strict_images,
    )
    return run_search(sp, bundle, settings)


def _values(space: SearchSpace, name: str) -> list:
    return space.values_of(name)  # across families (issue 11)


def check_weights_files(space: SearchSpace) -> None:
    """Refuse, before the search starts, a local weights file that is missing or does not fit.

    Each backbone of the space is built once (at the smallest image size) and the file loaded
    into it, exactly as a trial will.
    """
    from automl.backbones.registry import create_backbone
    from automl.errors import WeightsUnavailableError

    files = [w for w in _values(space, "weights") if w not in ("imagenet", "random", "none")]
    if not files:
        return
    for w in files:
        if not Path(w).is_file():
            raise WeightsUnavailableError(
                f"weights file {w!r} in the search space does not exist; pass an existing "
                ".weights.h5 file, or weights: imagenet / random"
            )
    import keras

    size = int(min(_values(space, "image_size")))
    for w in files:
        for name in _values(space, "backbone"):
            try:
                with warnings.catch_warnings():  # Keras warns once per layer it cannot match
                    warnings.simplefilter("ignore")
                    create_backbone(name, weights=w, include_top=False, input_size=size)
            except AutoMLError:
                raise
            except Exception as e:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
                raise WeightsUnavailableError(
                    f"weights file {w!r} does not fit backbone {name} ({first}); "
                    "use a file saved from the same backbone"
                ) from None
            finally:
                keras.backend.clear_session()


def _start_worker(project: Path, data: DataBundle, settings: SearchSettings, uri: str, space):
    """A ready trial worker for this search (see :mod:`automl.worker`)."""
    from automl.worker import TrialWorker, save_bundle

    data_dir = project / "worker_data"
    meta = data_dir / "meta.json"
    if not (meta.exists() and json.loads(meta.read_text()).get("digest") == data.digest()):
        save_bundle(data, data_dir)
    init = {
        "data_dir": str(data_dir),
        "tracking_uri": uri,
        "experiment": settings.experiment,
        "checkpoints": {
            "folder": str(project / "checkpoints"),
            "k": settings.keep_top_k,
            "objective": space.objective,
        },
        "embedding_dir": str(project / "embeddings") if settings.embedding_cache else None,
        "mixed_precision": settings.mixed_precision,
        "xla": settings.xla,
        "log_level": logging.getLogger("automl").getEffectiveLevel(),
    }
    worker = TrialWorker(init, settings.trials_per_worker)
    worker.start()
    return worker


def run_search(space: SearchSpace, data: DataBundle, settings: SearchSettings) -> SearchResult:
    """Run a search on already-loaded data (``search`` loads and validates first)."""
    settings.validate()
    uri = resolve_tracking_uri(settings.tracking_uri)
    project = _project_dir(settings, uri)
    state_file = project / STATE_FILE
    identity = {
        "space_digest": space.digest(),
        "data_digest": data.digest(),
        "tuner": settings.tuner,
        "seed": settings.seed,
    }
    state = None
    if state_file.exists() and not settings.overwrite:
        try:
            state = json.loads(state_file.read_text())
        except ValueError:
            raise SearchError(
                f"search state {str(state_file)!r} is damaged; pass --overwrite to start "
                f"experiment {settings.experiment!r} over, or use a new --experiment name"
            ) from None
    if state is not None:
        names = {"space_digest": "search space", "data_digest": "data"}
        changed = [names.get(k, k) for k, v in identity.items() if state.get(k) != v]
        if changed:
            raise SearchError(
                f"experiment {settings.experiment!r} already holds a search with a different "
                f"{' and '.join(changed)}; use a new --experiment name or --overwrite"
            )
    if settings.overwrite and project.exists():
        removed = remove_owned(project, (MARKER, STATE_FILE), OWNED)
        log.info("--overwrite: removed %s from %s", ", ".join(removed) or "nothing", project)
    project.mkdir(parents=True, exist_ok=True)
    (project / MARKER).touch()
    tracker = Tracker(uri, settings.experiment)
    started = time.time()  # the time budget counts from here, the worker's start-up included
    worker = None
    if settings.trials_per_worker > 0 and settings.max_trials > 1:
        worker = _start_worker(project, data, settings, uri, space)
    try:
        return _run_search(
            space, data, settings, uri, project, state, identity, tracker, worker, started
        )
    finally:
        if worker is not None:
            worker.close(kill=True)


def _run_search(space, data, settings, uri, project, state, identity, tracker, worker, started):
    state_file = project / STATE_FILE
    if worker is not None:
        accel = worker.info["accelerator"]
    else:
        accel = _setup_accelerator(settings)
    options = RunOptions(
        embedding_cache=settings.embedding_cache,
        jit_compile=accel["jit_compile"],
        objective=space.objective,  # issue 11: the best-epoch keeper watches the objective
        deterministic=settings.deterministic,
    )
    search_id = state["search_id"] if state else f"{settings.experiment}-{int(time.time())}"
    params = {
        "tuner": settings.tuner,
        "max_trials": settings.max_trials,
        "seed": settings.seed,
        "time_budget_minutes": settings.time_budget,
        "keep_top_k": settings.keep_top_k,
        "embedding_cache": settings.embedding_cache,
        "space_name": space.name,
        "space_source": space.source,
        "searched": ",".join(space.searched()),
        "objective": space.objective,
        **{k: v for k, v in data.summary().items() if k != "train_class_counts"},
        **{f"accelerator_{k}": v for k, v in accel.items()},
    }
    if state:
        try:
            tracker.client.get_run(state["parent_run_id"])
        except Exception:
            raise SearchError(
                f"the search state in {str(state_file)!r} belongs to MLflow run "
                f"{state['parent_run_id']}, which is not in {uri}; pass the --tracking-uri it "
                f"used ({state.get('tracking_uri')}), or --overwrite to start over"
            ) from None
    parent_id = tracker.start_search(
        search_id,
        params,
        {"mlflow.runName": f"search-{settings.experiment}"},
        run_id=state["parent_run_id"] if state else None,
    )
    if state:  # a resumed search: runs left RUNNING by a killed process were interrupted
        for r in tracker.trial_runs(parent_id):
            if r.info.status == "RUNNING":
                tracker.fail_trial(
                    r.info.run_id,
                    "interrupted (process stopped); the trial runs again",
                    status="KILLED",
                )
    else:
        project.mkdir(parents=True, exist_ok=True)
        state = {
            **identity,
            "search_id": search_id,
            "parent_run_id": parent_id,
            "experiment": settings.experiment,
            "tracking_uri": uri,
        }
        tmp = state_file.with_suffix(".tmp")  # atomic: a kill never leaves half a state file
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(state_file)
        tracker.log_dict(parent_id, space.to_dict(), "search_space.yaml")
        tracker.log_dict(parent_id, data.summary(), "data_summary.json")
        tracker.log_dict(parent_id, {"class_names": data.class_names}, "class_names.json")
    session = _Session(
        space, data, settings, tracker, parent_id, search_id, project, options, worker, started
    )
    oracle = _make_oracle(space, settings)
    try:
        tuner = _tuner_class()(
            oracle, session, directory=str(project), project_name="tuner", overwrite=False
        )
        if not Path(tuner._get_tuner_fname()).exists():
            if Path(
                oracle._get_oracle_fname()
            ).exists():  # killed before the tuner file was written
                tuner.reload()
            tuner.save()  # from now on a resumed process always reloads the oracle
    except (ValueError, KeyError, RuntimeError) as e:  # JSONDecodeError is a ValueError
        raise SearchError(
            f"the KerasTuner state under {str(project / 'tuner')!r} cannot be reloaded "
            f"({type(e).__name__}); pass --overwrite to start experiment {settings.experiment!r} "
            "over, or use a new --experiment name"
        ) from None
    log.info(
        "search %s: %s tuner, up to %d trials; MLflow parent run %s in %s",
        settings.experiment,
        settings.tuner,
        settings.max_trials,
        parent_id,
        uri,
    )
    try:
        tuner.search(verbose=0)
    except KeyboardInterrupt:
        for r in tracker.trial_runs(parent_id):
            if r.info.status == "RUNNING":
                tracker.fail_trial(r.info.run_id, "interrupted (process stopped)", status="KILLED")
        tracker.end_run(parent_id, "KILLED")
        raise
    except _TooManyFailures as e:
        last = (str(e).strip().splitlines() or ["?"])[-1][:200]
        tracker.set_tags(parent_id, {"automl.stopped": "too many consecutive failed trials"})
        tracker.end_run(parent_id, "FAILED")
        raise SearchError(
            f"search stopped after {settings.max_consecutive_failures} consecutive failed trials "
            f"(last: {last}); finished trials are kept; fix the cause and run the same command "
            "to resume, or raise --max-consecutive-failures"
        ) from None
    finally:
        if session.embeddings is not None:
            session.embeddings.clear()
        if worker is not None:
            worker.close(kill=True)
    if worker is not None:  # what the workers shared: not needed once the search is over
        for name in ("worker_data", "embeddings"):
            shutil.rmtree(project / name, ignore_errors=True)
    result = SearchResult(
        uri, settings.experiment, parent_id, space.objective, data.class_names, data
    )
    _finish(result, tracker, session)
    return result


def _finish(result: SearchResult, tracker: Tracker, session: _Session) -> None:
    """Score the best model on the test split once, and record it on the parent run."""
    import keras
    import numpy as np

    from automl.ensemble import build_search_ensemble  # issue 11: a nested run when it wins

    try:
        build_search_ensemble(result, tracker, session)
    except Exception as e:  # an ensemble never costs the search its result
        log.warning("ensemble not built: %s: %s", type(e).__name__, _first_line(e))
    try:
        best = result.best_trial
    except SearchError:
        tracker.end_run(result.parent_run_id, "FAILED")
        raise
    held = session.best_in_memory
    model = held[2] if held and held[0] == best["trial_id"] else result.best_model()
    session.best_in_memory = None
    probs = model.predict(session.data.x_test, batch_size=64, verbose=0)
    y = session.data.y_test
    acc = float(np.mean(np.argmax(probs, axis=1) == y))
    loss = float(np.mean(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0))))
    # issue 11: the val-to-test gap says how much selecting on validation flattered the model.
    gap = float(best["metrics"]["val_accuracy"]) - acc
    result.test_metrics = {"test_accuracy": acc, "test_loss": loss, "val_test_gap": gap}
    tracker.log_metrics(
        result.parent_run_id,
        {**result.test_metrics, "best_val_accuracy": best["metrics"]["val_accuracy"]},
    )
    tracker.set_tags(
        result.parent_run_id,
        {"automl.best_trial_id": best["trial_id"], "automl.best_run_id": best["run_id"]},
    )
    ckpt = session.checkpoints.path(best["trial_id"])  # an export already (class names inside)
    with tempfile.TemporaryDirectory() as tmp:
        if ckpt.exists():
            path = Path(shutil.copy(ckpt, Path(tmp) / "model.keras"))
        else:
            from automl.export import export_model

            path = export_model(model, Path(tmp) / "model.keras", class_names=result.class_names)
        tracker.log_artifact(result.parent_run_id, path, "best_model")
    from automl.reports import log_search_reports

    log_search_reports(
        tracker,
        result.parent_run_id,
        board=result.leaderboard(),
        searched=session.space.searched(),
        objective=result.objective,
        model=model,
        data=session.data,
        register=session.settings.register,
    )
    tracker.end_run(result.parent_run_id, "FINISHED")
    del model
    keras.backend.clear_session()
    log.info(
        "best trial %s: val_accuracy=%.4f, test_accuracy=%.4f",
        best["trial_id"],
        best["metrics"]["val_accuracy"],
        acc,
    )
