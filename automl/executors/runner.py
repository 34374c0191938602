"""Run one trial job in this process: train it, record it in MLflow, keep its checkpoint.

Every executor ends up here, in whatever process it runs a trial (the search's own, a
recycled worker, a Ray worker). :func:`execute_trial` returns a :class:`JobResult` or raises
:class:`TrialFailed`; :func:`as_failure` turns any exception into the failure to report.
"""

from __future__ import annotations

import gc
import logging
import os
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automl.data import DataBundle
from automl.embeddings import EmbeddingCache
from automl.errors import AutoMLError
from automl.executors.base import JobFailure, JobResult, TrialJob, WorkerSetup
from automl.metrics import objective_names
from automl.task_training import trial_scores
from automl.tracking import SCORES, Tracker
from automl.trial import DivergedError, RunOptions, TrialConfig, TrialOutcome, run_trial

log = logging.getLogger("automl")


@dataclass
class TrialContext:
    """What a trial needs besides its job: the data, the store, checkpoints and the cache.

    ``checkpoints`` is a :class:`automl.checkpoints.Checkpoints`, or ``None`` when the model
    file goes back to the search instead (:attr:`JobResult.model_file`).
    """

    data: DataBundle
    tracker: Tracker
    checkpoints: Any
    embeddings: EmbeddingCache | None = None
    where: dict[str, str] | None = None  # tags that say where the trial ran
    on_progress: Any = None  # called with each epoch's entry (the progress display)


class TrialFailed(Exception):
    """A trial failed; ``final`` ones (diverged, out of memory, bad input) are not retried."""

    def __init__(self, reason: str, details: str = "", final: bool = False):
        super().__init__(reason)
        self.reason, self.details, self.final = reason, details, final

    def as_failure(self) -> JobFailure:
        return JobFailure(self.reason, self.details, self.final)


def first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:300]


def training_failure(e: Exception) -> TrialFailed:
    """The failure a training exception stands for: diverged and OOM are final."""
    tb = traceback.format_exc()
    if isinstance(e, TrialFailed):
        return e
    if isinstance(e, DivergedError):
        return TrialFailed("diverged", tb, final=True)
    oom = (
        isinstance(e, MemoryError)
        or "ResourceExhausted" in type(e).__name__
        or "out of memory" in str(e).lower()
    )
    if oom:
        return TrialFailed("out of memory", tb, final=True)
    return TrialFailed(f"{type(e).__name__}: {first_line(e)}", tb, isinstance(e, AutoMLError))


def build_context(
    setup: WorkerSetup, data: DataBundle, checkpoints: bool = True, where=None
) -> TrialContext:
    """The context of a process that runs trials, from the search's :class:`WorkerSetup`."""
    from automl.checkpoints import Checkpoints

    ck = None
    if checkpoints:
        ck = Checkpoints(
            Path(setup.checkpoint_folder), setup.keep_top_k, setup.objective, data.class_names
        )
    emb = None
    if setup.embedding_cache:
        emb = EmbeddingCache(directory=Path(setup.embedding_dir) if setup.embedding_dir else None)
    return TrialContext(
        data=data,
        tracker=Tracker(setup.tracking_uri, setup.experiment),
        checkpoints=ck,
        embeddings=emb,
        where=where,
    )


def train_streamed(
    cfg: TrialConfig,
    data: DataBundle,
    *,
    tracker: Tracker,
    run_id: str,
    options: RunOptions,
    train=None,
    on_progress=None,
    label: str = "trial",
    **fit: Any,
) -> TrialOutcome:
    """Train one trial and stream each epoch to its run and the progress display.

    The one trial runner of the search (:func:`execute_trial`), the refit
    (:func:`automl.refit.build_search_refit`) and retrain (:func:`automl.retrain.retrain`):
    ``train`` is :func:`automl.trial.run_trial` (looked up when called) unless given;
    ``on_progress`` gets each epoch's entry; ``fit`` goes to ``train`` (``embeddings``,
    ``budget``, ``seed``, ``stop_after``, ...). The model comes back at its best epoch.
    """
    if train is None:
        import automl.trial

        train = automl.trial.run_trial

    def on_epoch(entry: dict[str, Any]) -> None:
        tracker.log_epoch(run_id, entry)
        if on_progress is not None:
            on_progress(entry)
        log.debug(
            "%s %s epoch %d: %s",
            label,
            entry["phase"],
            entry["step"] + 1,
            " ".join(
                f"{k}={entry[k]:.4f}"
                for k in ("loss", "accuracy", "val_loss", "val_accuracy")
                if k in entry
            ),
        )

    return train(cfg, data, options=options, on_epoch=on_epoch, **fit)


def execute_trial(job: TrialJob, ctx: TrialContext) -> JobResult:
    """Train one trial and record it: per-epoch metrics, checkpoint (top k), scores, reports.

    Raises :class:`TrialFailed`, or KeyboardInterrupt when the process is stopped.
    """
    import keras
    import psutil

    cfg = TrialConfig.from_values(job.config)
    emb = ctx.embeddings
    before = (emb.hits, emb.misses) if emb is not None else (0, 0)
    try:
        outcome = train_streamed(
            cfg,
            ctx.data,
            tracker=ctx.tracker,
            run_id=job.run_id,
            options=RunOptions(**job.options),
            train=run_trial,  # this module's name: tests stand a fake trial in for it
            on_progress=ctx.on_progress,
            label=f"trial {job.trial_id}",
            embeddings=emb,
            budget=job.budget,
            initial_epoch=job.initial_epoch,
            initial_weights=job.initial_weights,
            seed=job.seed,
        )
    except Exception as e:
        raise training_failure(e) from None
    finally:
        keras.backend.clear_session()
        gc.collect()
    try:
        kept, checkpoint, model_file = _keep_model(job.trial_id, outcome, ctx)
        rate = _record(job, ctx, cfg, outcome, checkpoint, _embedding_use(emb, *before))
    except Exception as e:  # e.g. disk full while saving the checkpoint: retried like a crash
        reason = f"{type(e).__name__} while saving the trial: {first_line(e)}"
        raise TrialFailed(reason, traceback.format_exc()) from None
    m, model, stopped = outcome.metrics, outcome.model, outcome.stopped_by_deadline
    del outcome
    keras.backend.clear_session()
    gc.collect()
    # Resident memory of the process that ran the trial, after it: bounded across trials?
    rss = psutil.Process().memory_info().rss / 2**20
    ctx.tracker.log_metrics(job.run_id, {"process_rss_mb": rss})
    return JobResult(
        metrics=m,
        kept=kept,
        stopped=stopped,
        rss_mb=rss,
        predict_per_s=rate,
        where=dict(ctx.where or {}),
        model=model,
        model_file=model_file,
    )


def _embedding_use(emb: EmbeddingCache | None, hits: int, misses: int) -> str:
    """What the trial did with the embedding cache (hits and misses counted before it)."""
    if emb is None:
        return "off"
    if emb.misses > misses:
        return "computed"
    return "cached" if emb.hits > hits else "unused"


def _keep_model(tid: str, outcome: TrialOutcome, ctx: TrialContext) -> tuple:
    """(kept, checkpoint path or "", model file bytes or None) of a trained trial."""
    score = trial_scores(outcome.metrics)  # val_accuracy, val_loss (+ the task's objectives)
    if ctx.checkpoints is not None:
        kept = ctx.checkpoints.offer(tid, score, outcome.model)
        return kept, str(ctx.checkpoints.path(tid)) if kept else "", None
    # The search keeps the top k: send it the model file.
    return False, "", _model_file(outcome.model, ctx.data.class_names)


def _timed_outputs(model, x) -> tuple[Any, float]:
    """``(model's outputs on x, images/s)``; ``(None, 0.0)`` if predicting fails (the
    validation reports try again, and say why)."""
    import time

    from automl.data.images import predict_images

    t = time.perf_counter()
    try:
        out = predict_images(model, x)
    except Exception:  # noqa: BLE001 - reported by the reports' own guard
        return None, 0.0
    took = time.perf_counter() - t
    return out, (len(x) / took if took > 0 and len(x) else 0.0)


def _record(job: TrialJob, ctx, cfg, outcome: TrialOutcome, checkpoint: str, emb: str) -> float:
    """The trial run's scores, tags and reports; returns the images/s its model predicted
    its validation images at (the search's estimate of its closing steps uses it)."""
    from automl.fidelity import subset
    from automl.reports import log_trial_reports

    tracker, run_id = ctx.tracker, job.run_id
    # The per-epoch series keep their names; the best epoch's scores are logged as best_*.
    # So are a task's objectives (best_val_mae, ...): val_mae is the per-epoch series.
    m = outcome.metrics
    best = {*SCORES, *objective_names()}
    tracker.log_metrics(run_id, {(f"best_{k}" if k in best else k): v for k, v in m.items()})
    tracker.set_tags(
        run_id,
        {
            **outcome.tags,  # e.g. automl.phase2_guard: why fine-tuning stopped early
            "automl.checkpoint": checkpoint,
            "automl.stopped_by_budget": str(outcome.stopped_by_deadline),
            "automl.pid": str(os.getpid()),  # the process that trained it (a worker's)
            **(ctx.where or {}),
            "automl.embeddings": emb,
        },
    )
    val = subset(ctx.data, 0, cfg.val_images)  # the validation images it was scored on
    outputs, rate = _timed_outputs(outcome.model, val.x_val)
    log_trial_reports(
        tracker,
        run_id,
        outcome,
        val,
        cfg,
        seed=job.seed,
        split_seed=job.split_seed,
        budget=job.budget,
        trial_id=job.trial_id,
        val_outputs=outputs,
        **_task_config(ctx.data),
    )
    return rate


def _task_config(data: DataBundle) -> dict:
    """``{"task": task.to_config()}`` for a trial's config.yaml: a multi-label or regression
    task (labels, thresholds, the targets' mean and std); nothing for a bundle without a task
    (config.yaml stays as it was)."""
    task = getattr(data, "task", None)
    return {} if task is None else {"task": task.to_config()}


def _model_file(model, class_names: list[str]) -> bytes:
    import tempfile

    from automl.export import export_model

    with tempfile.TemporaryDirectory(prefix="automl-model-") as d:
        path = Path(d) / "model.keras"
        export_model(model, path, class_names=class_names)
        return path.read_bytes()


def run_job(job: TrialJob, ctx: TrialContext) -> JobResult | JobFailure:
    """:func:`execute_trial`, with any failure returned as a :class:`JobFailure`."""
    try:
        return execute_trial(job, ctx)
    except Exception as e:  # TrialFailed, or a bug outside the guarded parts
        return training_failure(e).as_failure()
