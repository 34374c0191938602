"""Train a logged trial again from its ``config.yaml``, as a new MLflow run linked to it.

    result = automl.retrain(run_id)              # the same configuration, the same split
    result = automl.retrain(run_id, full=True)   # on train + validation, test scores it

The new run is a top-level run of the same experiment (not a trial of the search, so it
never enters the leaderboard) tagged ``automl.retrained_from`` = the original run id. It
watches the search's objective (``val_mae``, ``val_macro_f1``...); a multi-label model gets
its per-label thresholds tuned on validation again, saved with it (the run's ``task.json``
and its MLflow model), as a search's best model does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from automl.errors import RegistrationError, TrackingError
from automl.metrics import accuracy, log_loss
from automl.progress import Progress
from automl.tracking import TAG_KIND, TAG_PARENT, TAG_SEARCH, TAG_TRIAL, Tracker

log = logging.getLogger("automl")

TAG_RETRAINED_FROM = "automl.retrained_from"


@dataclass
class RetrainResult:
    """The new run and its scores (``test_metrics`` on the untouched test split)."""

    run_id: str
    retrained_from: str
    metrics: dict[str, float] = field(default_factory=dict)
    test_metrics: dict[str, float] = field(default_factory=dict)
    model_uri: str | None = None
    model: Any = field(default=None, repr=False)
    registered_model: str | None = None  # "NAME/VERSION" when registered
    # The fitted task saved with the model (multi-label: its thresholds tuned on validation);
    # None for classification.
    task: Any = field(default=None, repr=False)


def load_config(tracker: Tracker, run_id: str) -> tuple[Any, dict[str, Any]]:
    """The run (a trial, or a search: its best trial) and its parsed ``config.yaml``."""
    try:
        run = tracker.get_run(run_id)
    except Exception:
        raise TrackingError(
            f"run id {run_id!r} is not in {tracker.uri}; copy a trial's run id from `automl leaderboard`"
        ) from None
    if run.data.tags.get(TAG_KIND) == "search":
        best = run.data.tags.get("automl.best_run_id")
        if not best:
            raise TrackingError(f"search run {run_id} has no best trial yet; pass a trial run id")
        run = tracker.get_run(best)
    if run.data.tags.get(TAG_KIND) == "ensemble":  # retrain its main member (issue 11)
        run = tracker.get_run(run.data.tags["automl.ensemble_best_member"])
    if run.data.tags.get(TAG_KIND) == "refit":  # the trial it refit (--full refits it again)
        run = tracker.get_run(run.data.tags["automl.refit_of"])
    from automl.reports import CONFIG_FILE

    path = tracker.download(run.info.run_id, CONFIG_FILE)
    cfg = yaml.safe_load(path.read_text())
    if not isinstance(cfg, dict) or "hyperparameters" not in cfg or "data" not in cfg:
        raise TrackingError(
            f"run {run.info.run_id}'s {CONFIG_FILE} is not a re-runnable automl configuration "
            "(logged by an older automl?)"
        )
    return run, cfg


def _check_same_classes(bundle, logged: dict[str, Any], run_id: str, source: Any) -> None:
    """Refuse data whose classes differ from the trial's: its model's outputs are those
    classes, so training it on others would log a meaningless run under the original."""
    from automl.errors import DataError, quoted

    trained = logged.get("class_names")
    now = list(bundle.class_names)
    if trained is None or [str(c) for c in trained] == [str(c) for c in now]:
        return
    raise DataError(
        f"data {quoted(str(source))} has {len(now)} classes ({quoted(', '.join(map(str, now)))}) "
        f"but run {run_id} trained on {len(trained)} ({quoted(', '.join(map(str, trained)))}); "
        "pass data with the same class folders, or run `automl search` on the new data"
    )


def retrain(
    run_id: str,
    *,
    full: bool = False,
    data: Any = None,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    register: str | None = None,
    verbose: int = 1,
    cache_dir: str | Path | None = None,
) -> RetrainResult:
    """Train the configuration logged in run ``run_id`` again and log it as a new run.

    Args:
        run_id: a trial run (or a search run: its best trial).
        full: train on train + validation, as a search's refit does: the same schedules,
            stopped after the original trial's best epoch (no early stopping, no phase-2
            guard, the last epoch kept); the test split scores the result.
        data: the data when the trial ran on in-memory arrays (``(x, y)``), or to override the
            logged source; must split into the same digest, else the run is tagged.
        tracking_uri: the store holding ``run_id`` (default as for :func:`automl.search`).
        experiment: where the new run goes (default: the original run's experiment).
        register: also register the retrained model under this Model Registry name; a
            failure raises :class:`automl.errors.RegistrationError` once the run has finished
            (its ``result`` is kept, and the run is tagged ``automl.register_error``).
        verbose: 1 shows each epoch on stderr (a bar in a terminal, lines otherwise); 0 nothing.
        cache_dir: where image stores are kept (default as for :func:`automl.search`).

    A failure after the new run is created ends it FAILED (KILLED on Ctrl-C), never RUNNING.
    """
    from automl.tracking import check_store_exists, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    check_store_exists(uri)  # a missing store is not created: the run cannot be in it
    tracker = Tracker.of_run(uri, run_id, experiment)
    run, config = load_config(tracker, run_id)
    bundle, same_data = _load_data(tracker, run, config, data, cache_dir)
    job = _Retrain(tracker, run, config, bundle, full, same_data)
    progress = Progress(verbose)
    new_id = job.start_run()
    try:  # nothing between creating the run and closing it on failure: Ctrl-C leaves no RUNNING run
        with tracker.closed_on_failure(new_id):
            outcome, test = job.train(new_id, progress)
            info, tags = job.record(new_id, outcome, register)
            tracker.set_tags(new_id, tags)
            tracker.end_run(new_id, "FINISHED")
    finally:
        progress.close()
    return _result(run.info.run_id, new_id, outcome, test, info, tags, register, job.task)


def _task(bundle):
    """The bundle's multi-label or regression task; None for classification."""
    from automl.tasks import is_classification, task_of

    task = task_of(bundle)
    return None if is_classification(task) else task


def _result(
    from_id: str, new_id: str, outcome, test, info, tags, register, task=None
) -> RetrainResult:
    """The retrain's result; a failed registration raises with it."""
    key = "accuracy" if "test_accuracy" in test else next(iter(test))[5:]
    log.info(
        "retrained %s as run %s: val_%s=%.4f test_%s=%.4f",
        from_id,
        new_id,
        key,
        outcome.metrics.get(f"val_{key}", float("nan")),
        key,
        test[f"test_{key}"],
    )
    result = RetrainResult(
        new_id,
        from_id,
        outcome.metrics,
        test,
        info["model_uri"],
        outcome.model,
        tags.get("automl.registered_model"),
        task,
    )
    if "automl.register_error" in tags:  # never a warning only: the caller must see it fail
        raise RegistrationError(
            f"{tags['automl.register_error']}; the retrain finished and its model is kept as "
            f"{result.model_uri} (MLflow run {new_id}): fix the registry, then register it: "
            f"mlflow.register_model({result.model_uri!r}, {register!r})",
            result=result,
        )
    return result


def _load_data(tracker: Tracker, run, config: dict[str, Any], data: Any, cache_dir) -> tuple:
    """(the trial's data split as it was logged, whether it splits to the same digest)."""
    from automl.data import load_data
    from automl.data.store import default_cache_dir, undone_on_error

    src = config["data"]
    source = data if data is not None else src.get("source")
    if source is None:
        raise TrackingError(
            f"run {run.info.run_id} trained on in-memory arrays; pass them again: "
            "automl.retrain(run_id, data=(x, y))"
        )
    cache_dir = cache_dir if cache_dir is not None else default_cache_dir(tracker.uri)
    with undone_on_error(cache_dir):  # data refused here leaves no store behind
        bundle = load_data(
            source,
            seed=int(src.get("split_seed", 0)),
            store_size=int(src.get("store_size", 128)),
            cache_dir=cache_dir,
        )
        _check_same_classes(bundle, src, run.info.run_id, source)
    same_data = bundle.digest() == src.get("digest")
    if not same_data:
        log.warning(
            "retrain %s: the data now splits to digest %s, the trial used %s",
            run.info.run_id,
            bundle.digest(),
            src.get("digest"),
        )
    return bundle, same_data


class _Retrain:
    """One retrain: the logged trial, its configuration and data, and the new run's steps."""

    def __init__(self, tracker: Tracker, run, config: dict[str, Any], bundle, full, same_data):
        from automl.trial import TrialConfig, full_data, refit_epochs

        self.tracker, self.run, self.config, self.bundle = tracker, run, config, bundle
        self.full, self.same_data = full, same_data
        self.cfg = TrialConfig.from_values(config["hyperparameters"])
        self.budget = config.get("epochs_budget")
        self.seed = int(config.get("seed", 0))
        self.stop = None
        self.train_data = bundle
        if full:  # as a search's refit: the trial replayed up to its best epoch
            self.stop = refit_epochs(run.data.metrics.get("best_epoch"))
            self.train_data = full_data(bundle)
        self.tid = run.data.tags.get(TAG_TRIAL, "?")
        self.task = None  # train: the task saved with the new model (None: classification)

    def start_run(self) -> str:
        """The new top-level run, tagged with where it came from."""
        tags = self.run.data.tags
        return self.tracker.create_run(
            f"retrain-trial-{self.tid}" + ("-full" if self.full else ""),
            {
                TAG_KIND: "retrain",
                TAG_RETRAINED_FROM: self.run.info.run_id,
                "automl.retrained_from_search": tags.get(TAG_PARENT, ""),
                TAG_SEARCH: tags.get(TAG_SEARCH, ""),
                TAG_TRIAL: self.tid,
                "automl.full": str(self.full),
                "automl.same_data": str(self.same_data),
                "automl.val_is_heldout": str(not self.full),
            },
        )

    def objective(self) -> str:
        """What the retrain's best-epoch keeper watches: the search's objective (its parent
        run's ``objective`` param), or the task's default where it does not apply
        (``val_macro_f1`` for a multi-label trial of a search logged without one)."""
        from automl.task_outputs import task_objective
        from automl.tasks import task_of

        parent = self.run.data.tags.get(TAG_PARENT)
        logged = self.tracker.run_params(parent).get("objective") if parent else None
        return task_objective(task_of(self.bundle), logged or "val_accuracy")

    def train(self, new_id: str, progress: Progress) -> tuple:
        """Train through the one trial runner; (outcome, test scores) logged on ``new_id``."""
        import automl.trial
        from automl.data.images import predict_images
        from automl.executors.runner import train_streamed
        from automl.trial import RunOptions

        cfg, stop = self.cfg, self.stop
        self.tracker.log_params(
            new_id,
            {
                **cfg.to_dict(),
                "seed": self.config.get("seed", 0),
                "full": self.full,
                "epochs_budget": self.budget,
                **({"stop_after": stop} if stop else {}),
                "retrained_from": self.run.info.run_id,
            },
        )
        progress.run_started(
            f"retrain of trial {self.tid}",
            stop or sum(cfg.schedule(self.budget)),
            ("train + validation, " if self.full else "")
            + ", ".join(f"{k}={v}" for k, v in cfg.to_dict().items()),
        )
        outcome = train_streamed(
            cfg,
            self.train_data,
            tracker=self.tracker,
            run_id=new_id,
            options=RunOptions(
                embedding_cache=False, jit_compile=False, objective=self.objective()
            ),
            train=automl.trial.run_trial,
            on_progress=progress.epoch,
            label=f"retrain of trial {self.tid}",
            budget=self.budget,
            seed=self.seed,
            stop_after=stop,
        )
        progress.close()
        probs = predict_images(outcome.model, self.bundle.x_test)
        y = self.bundle.y_test
        task = _task(self.bundle)
        if task is not None:  # multi-label / regression: every objective of the task
            from automl.metrics import score
            from automl.task_outputs import tuned_task

            # Multi-label: thresholds tuned on validation for this model, as a search does
            # (with full=True the validation images were trained on, as in a search's refit).
            task = self.task = tuned_task(task, outcome.model, self.bundle)
            test = {f"test_{o[4:]}": score(task, y, probs, o) for o in task.objectives}
        else:
            test = {
                "test_accuracy": accuracy(y, probs),
                "test_loss": log_loss(y, probs),
            }
        last = max((int(e["step"]) for e in outcome.history), default=0)
        # the latest value of each metric = the best epoch's
        self.tracker.log_metrics(new_id, {**outcome.metrics, **test}, step=last)
        return outcome, test

    def record(self, new_id: str, outcome, register: str | None) -> tuple[dict, dict]:
        """Reports, data sets and the MLflow model (registered when asked); (model info, tags)."""
        from automl.reports import (
            evaluation_reports,
            log_datasets,
            log_mlflow_model,
            log_trial_reports,
        )

        b, tracker = self.bundle, self.tracker
        log_trial_reports(
            tracker,
            new_id,
            outcome,
            b,
            self.cfg,
            seed=self.seed,
            split_seed=int(self.config["data"].get("split_seed", 0)),
            budget=self.budget,
            datasets=False,
            trial_id=self.tid,
            retrained_from=self.run.info.run_id,
            full=self.full,
        )
        evaluation_reports(
            tracker, new_id, outcome.model, b.x_test, b.y_test, b.class_names, "test", self.task
        )
        if self.task is not None:  # what `automl export --run-id` of this run reads
            tracker.log_dict(new_id, self.task.to_config(), "task.json")
        splits = ("train", "test") if self.full else ("train", "validation")
        log_datasets(tracker, new_id, self.train_data, splits)
        info = log_mlflow_model(
            tracker,
            new_id,
            outcome.model,
            b.x_test[:2],
            name="model",
            class_names=b.class_names,
            task=self.task,
        )
        return info, {"automl.model_uri": info["model_uri"], **_register(tracker, info, register)}


def _register(tracker: Tracker, info: dict[str, Any], register: str | None) -> dict[str, str]:
    """Register the logged model under ``register``; the tags that say how it went.

    Registering comes after logging: when the registry fails, the run and its model are
    complete (as a search's are), and the error is the caller's.
    """
    from automl.reports import error_line, register_model

    if not register:
        return {}
    try:
        version = register_model(tracker, info["model_uri"], register)
        return {"automl.registered_model": f"{register}/{version}"}
    except Exception as e:  # noqa: BLE001 - recorded, then raised by retrain
        return {
            "automl.register_error": (
                f"could not register the retrained model as {register!r} ({error_line(e)})"
            )
        }
