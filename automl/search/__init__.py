"""A search: an oracle proposes, an executor trains, MLflow records; killed, it resumes.

The oracle (random, Bayesian or Hyperband) and its state on disk come from KerasTuner, so
a search killed at any moment continues when the same command runs again: finished trials
are kept, the interrupted ones run again. Hyperband's resource is the total number of epochs
of a trial across both phases (see :meth:`automl.trial.TrialConfig.schedule`).

- :mod:`.settings`: what defines a search; :mod:`.state`: what a resume reads from disk;
- :mod:`.oracle`: the KerasTuner controller; :mod:`.loop`: oracle <-> executor <-> tracker;
- :mod:`.result`: the result and the closing step; :mod:`.weights`: weights-file checks.

Trials run through :mod:`automl.executors` (in this process, in a recycled worker process,
or up to ``workers`` at once on Ray).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from automl.checkpoints import Checkpoints
from automl.data import DataBundle, load_data
from automl.errors import SearchError, StorageError
from automl.executors import Executor, WorkerSetup
from automl.locks import ExperimentLock
from automl.paths import io_error_line, is_storage_error
from automl.progress import Progress
from automl.refit import RESERVE as REFIT_RESERVE
from automl.search.loop import SearchLoop, TooManyFailures
from automl.search.oracle import open_oracle
from automl.search.result import SearchResult, finish
from automl.search.settings import (
    DEFAULT_EXPERIMENT,
    TUNERS,
    SearchSettings,
    options_doc,
)
from automl.search.state import (
    STATE_FILE,
    identity,
    open_project,
    project_dir,
    save_state,
)
from automl.search.weights import check_weights_files
from automl.space import SearchSpace, load_space
from automl.tracking import Tracker, best_trial, check_tracking_uri, resolve_tracking_uri

log = logging.getLogger("automl")

__all__ = [
    "DEFAULT_EXPERIMENT",
    "STATE_FILE",
    "TUNERS",
    "SearchResult",
    "SearchSettings",
    "best_trial",
    "check_weights_files",
    "project_dir",
    "run_search",
    "search",
]


def search(
    data: Any = "demo",
    space: str | Path | dict | SearchSpace | None = None,
    *,
    validation_data: Any = None,
    max_trials: int | None = None,
    tuner: str = "bayesian",
    experiment: str | None = None,
    tracking_uri: str | None = None,
    seed: int = 0,
    time_budget: float | None = None,
    embedding_cache: bool = True,
    keep_top_k: int = 3,
    overwrite: bool = False,
    strict_images: bool = False,
    executor: str | Executor = "auto",
    workers: int = 1,
    ray_address: str | None = None,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    trials_per_worker: int = 10,
    max_retries: int = 1,
    max_consecutive_failures: int = 3,
    register: str | None = None,
    mixed_precision: bool = True,
    xla: bool = True,
    workdir: str | None = None,
    verbose: int = 1,
    ensemble: int | None = None,
    deterministic: bool = False,
    refit: bool | None = None,
    cache_dir: str | Path | None = None,
) -> SearchResult:
    """Run (or resume) a search and return its result.

    Every keyword but ``validation_data`` is a field of :class:`SearchSettings`, documented
    there once (listed below); ``None`` means this search's default.

    Args:
        data: ``"demo"``, a folder of class sub-folders, ``"tfds:NAME"`` (its own
            train/validation/test splits where it has them), ``(x, y)`` NumPy arrays, a
            ``tf.data.Dataset`` of ``(image, label)``, or a pandas DataFrame with an image-path
            column and a label column (see :func:`automl.data.load_data`).
        space: a YAML file, a built-in space name ("default", "gpu"), a dict, or a SearchSpace;
            None (the default) chooses one from the data (see :mod:`automl.autospace`).
        validation_data: your own validation split, any source ``data`` accepts; ``data`` is
            then split into train and test only.
    """
    # First, while locals() holds the keywords only: each is a SearchSettings field.
    options = {k: v for k, v in locals().items() if k not in ("data", "space", "validation_data")}
    settings = SearchSettings.for_search(space is None, **options)
    settings.validate()
    uri = resolve_tracking_uri(settings.tracking_uri)
    check_tracking_uri(uri)
    from automl.progress import import_tensorflow_quietly

    sp, bundle = _space_and_data(data, space, validation_data, settings, uri)
    import_tensorflow_quietly()  # no C++ start-up chatter (warnings are kept)
    return run_search(sp, bundle, settings)


if search.__doc__:  # (None under python -OO)
    search.__doc__ = f"{search.__doc__.rstrip()}\n{options_doc()}\n"


def _space_and_data(data, space, validation_data, settings: SearchSettings, uri: str):
    """Load the data, and the space: ``space``, or one chosen from the data when None."""
    from automl.data.store import MAX_STORE_SIZE, default_cache_dir
    from automl.progress import Progress, import_tensorflow_quietly

    cache_dir = settings.cache_dir
    loading = Progress(settings.verbose)  # the image store's decoding, when it is built
    load = dict(
        seed=settings.seed,
        strict_images=settings.strict_images,
        validation_data=validation_data,
        cache_dir=Path(cache_dir) if cache_dir is not None else default_cache_dir(uri),
        progress=loading,
    )
    if space is None:  # a data-aware default space, chosen once the data is loaded
        from automl.autospace import default_space, has_gpu, probe_native_size, store_size_for

        native = probe_native_size(data)
        import_tensorflow_quietly()  # default_space asks TensorFlow for a GPU
        # Stored at the largest size the default space asks for: on a GPU, 224 px.
        bundle = load_data(data, store_size=store_size_for(native, gpu=has_gpu()), **load)
        sp = default_space(bundle, native, budget_minutes=settings.time_budget)
    else:
        sp = load_space(space)
        check_weights_files(sp)
        size = min(int(sp.upper("image_size")), MAX_STORE_SIZE)
        bundle = load_data(data, store_size=size, **load)
    loading.close()
    return sp, bundle


def run_search(space: SearchSpace, data: DataBundle, settings: SearchSettings) -> SearchResult:
    """Run a search on already-loaded data (``search`` loads and validates first).

    The experiment's folder is locked first (one search per experiment at a time, see
    :mod:`automl.locks`); a file that cannot be written (full disk, no permission) ends the
    search with a :class:`automl.errors.StorageError` naming it, its runs closed.
    """
    settings.validate()
    uri = resolve_tracking_uri(settings.tracking_uri)
    project = project_dir(settings, uri)
    with ExperimentLock(project, settings.experiment):
        try:
            return _locked_search(space, data, settings, uri, project)
        except OSError as e:
            if not is_storage_error(e):
                raise
            raise StorageError(
                f"{io_error_line(e, project)}; finished trials are kept, run the same command "
                "to resume"
            ) from None
        except Exception as e:  # SQLite's own writes fail inside MLflow, not as an OSError
            text = str(e).lower()
            if not any(m in text for m in _STORE_UNWRITABLE):
                raise
            raise StorageError(
                f"cannot write the MLflow store {uri!r}: "
                f"{next(m for m in _STORE_UNWRITABLE if m in text)}; free some disk space or "
                "make it writable; finished trials are kept, run the same command to resume"
            ) from None


# What SQLite says (through MLflow and SQLAlchemy) when it cannot write its database.
_STORE_UNWRITABLE = ("database or disk is full", "attempt to write a readonly database")


def _locked_search(space, data, settings, uri, project) -> SearchResult:
    setup = WorkerSetup(
        tracking_uri=uri,
        experiment=settings.experiment,
        checkpoint_folder=str(project / "checkpoints"),
        keep_top_k=settings.keep_top_k,
        objective=space.objective,
        embedding_dir=str(project / "embeddings") if settings.embedding_cache else None,
        embedding_cache=settings.embedding_cache,
        mixed_precision=settings.mixed_precision,
        xla=settings.xla,
        log_level=logging.getLogger("automl").getEffectiveLevel(),
        data_dir=str(project / "worker_data"),
        project_dir=str(project),
    )
    # Refuses here (one line) what it cannot do, e.g. workers > 1 without Ray.
    executor = settings.make_executor().bind(setup, data)
    ident = identity(space.digest(), data.digest(), settings)
    state = open_project(project, ident, settings)
    tracker = Tracker(uri, settings.experiment)
    started = time.time()  # the time budget counts from here, the workers' start-up included
    progress = Progress(settings.verbose)
    executor.on_epoch = progress.epoch
    try:
        accel = executor.start()
        return _run(
            space,
            data,
            settings,
            uri,
            project,
            state,
            ident,
            tracker,
            executor,
            accel,
            started,
            progress,
        )
    finally:
        progress.close()
        executor.close(kill=True)
        if not executor.in_process:  # what the workers shared: made again by the next search
            for name in ("worker_data", "embeddings"):
                shutil.rmtree(project / name, ignore_errors=True)


def _parent_run(
    space, data, settings, uri, project, state, ident, tracker, accel, slots=1
) -> tuple:
    """Create the parent run (or reopen it on resume); returns (parent id, search id)."""
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
        **({"workers": slots} if slots > 1 else {}),
        **{k: v for k, v in data.summary().items() if k != "train_class_counts"},
        **{f"accelerator_{k}": v for k, v in accel.items()},
    }
    if state:
        try:
            tracker.client.get_run(state["parent_run_id"])
        except Exception:
            raise SearchError(
                f"the search state in {str(project / STATE_FILE)!r} belongs to MLflow run "
                f"{state['parent_run_id']}, which is not in {uri}; pass the --tracking-uri it "
                f"used ({state.get('tracking_uri')}), or --overwrite to start over"
            ) from None
    try:
        parent_id = tracker.start_search(
            search_id,
            params,
            {"mlflow.runName": f"search-{settings.experiment}"},
            run_id=state["parent_run_id"] if state else None,
        )
    except BaseException as e:  # created but not returned: find it by its search id
        _close_search_runs(tracker, search_id, e)
        raise
    with _parent_closed_on_failure(tracker, parent_id):
        if state:  # a resumed search: runs left RUNNING by a killed process were interrupted
            for r in tracker.trial_runs(parent_id):
                if r.info.status == "RUNNING":
                    tracker.fail_trial(
                        r.info.run_id,
                        "interrupted (process stopped); the trial runs again",
                        status="KILLED",
                    )
        else:  # what a resume needs is logged before the state that says "resume" is saved
            tracker.log_dict(parent_id, space.to_dict(), "search_space.yaml")
            tracker.log_dict(parent_id, data.summary(), "data_summary.json")
            tracker.log_dict(parent_id, {"class_names": data.class_names}, "class_names.json")
            save_state(
                project,
                {
                    **ident,
                    "search_id": search_id,
                    "parent_run_id": parent_id,
                    "experiment": settings.experiment,
                    "tracking_uri": uri,
                },
            )
    return parent_id, search_id


def _failure_reason(e: BaseException) -> tuple[str, str]:
    """(status, reason) a run ends with when ``e`` stops the search."""
    from automl.reports import error_line

    if isinstance(e, KeyboardInterrupt):
        return "KILLED", "interrupted (process stopped)"
    if isinstance(e, OSError):
        return "FAILED", io_error_line(e)
    return "FAILED", error_line(e) if isinstance(e, Exception) else type(e).__name__


def _close_parent(tracker: Tracker, parent_id: str, e: BaseException) -> None:
    """End the parent run KILLED (Ctrl-C) or FAILED with the reason, if it is still RUNNING.

    If the store cannot be written either, the next run of the same command closes it.
    """
    status, reason = _failure_reason(e)
    try:
        if tracker.client.get_run(parent_id).info.status != "RUNNING":
            return
        tracker.set_tags(parent_id, {"automl.stopped": reason[:500]})
        tracker.end_run(parent_id, status)
    except Exception as closing:  # noqa: BLE001 - the first error is the one to see
        log.warning("search run %s not closed as %s: %s", parent_id, status, closing)


@contextlib.contextmanager
def _parent_closed_on_failure(tracker: Tracker, parent_id: str):
    try:
        yield
    except BaseException as e:
        _close_parent(tracker, parent_id, e)
        raise


def _close_search_runs(tracker: Tracker, search_id: str, e: BaseException) -> None:
    """Close the RUNNING parent runs tagged ``search_id`` (one created but not returned)."""
    from automl.tracking import TAG_KIND, TAG_SEARCH

    try:
        runs = tracker.client.search_runs(
            [tracker.experiment_id],
            f"tags.`{TAG_SEARCH}` = '{search_id}' and tags.`{TAG_KIND}` = 'search'",
        )
    except Exception:  # noqa: BLE001 - the store is gone: nothing to close
        return
    for r in runs:
        _close_parent(tracker, r.info.run_id, e)


def _progress_hooks(progress: Progress) -> tuple:
    """The search loop's trial-start and trial-end hooks that drive the progress display."""
    from automl.executors.base import JobFailure, JobResult
    from automl.trial import TrialConfig

    def started(tid: str, params: dict[str, Any]) -> None:
        cfg = TrialConfig.from_values(params)
        summary = ", ".join(f"{k}={v}" for k, v in cfg.to_dict().items())
        progress.trial_started(
            tid, int(tid) + 1, sum(cfg.schedule(params.get("hyperband_epochs"))), summary
        )

    def ended(tid: str, out: Any) -> None:
        if isinstance(out, JobFailure):
            progress.trial_finished(tid, failed=out.reason)
        elif isinstance(out, JobResult):
            progress.trial_finished(tid, out.score)

    return started, ended


def _run(
    space, data, settings, uri, project, state, ident, tracker, executor, accel, started, progress
):
    parent_id, search_id = _parent_run(
        space, data, settings, uri, project, state, ident, tracker, accel, executor.slots
    )
    with _parent_closed_on_failure(tracker, parent_id):
        return _trials_then_finish(
            space,
            data,
            settings,
            uri,
            project,
            tracker,
            executor,
            accel,
            started,
            progress,
            parent_id,
            search_id,
        )


def _trials_then_finish(
    space,
    data,
    settings,
    uri,
    project,
    tracker,
    executor,
    accel,
    started,
    progress,
    parent_id,
    search_id,
):
    from automl.trial import RunOptions, TrialConfig

    budget_end = started + settings.time_budget * 60 if settings.time_budget else None
    deadline = budget_end
    if budget_end is not None and settings.refit:  # the trials leave the refit its share
        deadline = budget_end - REFIT_RESERVE * settings.time_budget * 60
    options = RunOptions(
        embedding_cache=settings.embedding_cache,
        jit_compile=accel["jit_compile"],
        objective=space.objective,  # the best-epoch keeper and early stopping watch it
        deterministic=settings.deterministic,
    )
    options.deadline = deadline
    checkpoints = Checkpoints(
        project / "checkpoints", settings.keep_top_k, space.objective, data.class_names
    )
    oracle = open_oracle(space, settings, project)
    on_start, on_end = _progress_hooks(progress)
    loop = SearchLoop(
        oracle,
        executor,
        tracker,
        parent_id,
        search_id,
        settings,
        checkpoints,
        options=asdict(options),
        to_config=lambda values: TrialConfig.from_values(values).to_dict(),
        deadline=deadline,
        on_trial_start=[on_start],
        on_trial_end=[on_end],
    )
    log.info(
        "search %s: %s tuner, up to %d trials%s; MLflow parent run %s in %s",
        settings.experiment,
        settings.tuner,
        settings.max_trials,
        f", {executor.slots} at once" if executor.slots > 1 else "",
        parent_id,
        uri,
    )
    done = sum(t.status == "COMPLETED" for t in oracle.trials.values())
    progress.search_started(settings.max_trials, space.objective, deadline, done)
    try:
        loop.run()
    except KeyboardInterrupt:
        executor.close(kill=True)
        _close_running(tracker, parent_id, "interrupted (process stopped)")
        raise
    except TooManyFailures as e:
        executor.close(kill=True)
        loop.abandon("stopped: too many consecutive failed trials; the trial runs again")
        last = (str(e).strip().splitlines() or ["?"])[-1][:200]
        tracker.set_tags(parent_id, {"automl.stopped": "too many consecutive failed trials"})
        tracker.end_run(parent_id, "FAILED")
        raise SearchError(
            f"search stopped after {settings.max_consecutive_failures} consecutive failed trials "
            f"(last: {last}); finished trials are kept; fix the cause and run the same command "
            "to resume, or raise --max-consecutive-failures"
        ) from None
    except BaseException as e:
        executor.close(kill=True)
        loop.abandon(f"the search stopped ({_failure_reason(e)[1][:300]}); the trial runs again")
        raise
    # From here to the end (closing the workers, the ensemble, the refit, test scoring),
    # whatever stops the search closes its run: KILLED on Ctrl-C, FAILED with the reason.
    executor.close()
    if not executor.in_process:  # what the workers shared: not needed any more
        for name in ("worker_data", "embeddings"):
            shutil.rmtree(project / name, ignore_errors=True)
    result = SearchResult(
        uri, settings.experiment, parent_id, space.objective, data.class_names, data
    )
    held, loop.best_in_memory = loop.best_in_memory, None
    try:
        finish(
            result,
            tracker,
            data,
            space,
            settings,
            checkpoints,
            held,
            search_id=search_id,
            options=options,
            budget_end=budget_end,
            progress=progress,
        )
    finally:
        with contextlib.suppress(Exception):  # the store may be what failed
            progress.message(f"see the runs: automl ui, then open {result.ui_url}")
    return result


def _close_running(tracker: Tracker, parent_id: str, reason: str) -> None:
    for r in tracker.trial_runs(parent_id):
        if r.info.status == "RUNNING":
            tracker.fail_trial(r.info.run_id, reason, status="KILLED")
