"""One search session, from the experiment's lock to the closed parent run.

:func:`run_search` locks the experiment's folder, starts the executor, opens (or reopens)
the MLflow parent run, runs the trials through :class:`automl.search.loop.SearchLoop`, and
hands the outcome to :func:`automl.search.result.finish`. What one session shares (the
space, the data, the tracker, the executor, the :class:`Deadline`...) travels as one
:class:`Session`.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from automl.checkpoints import Checkpoints
from automl.data import DataBundle
from automl.errors import SearchError, StorageError
from automl.executors import WorkerSetup
from automl.locks import ExperimentLock
from automl.paths import io_error_line, is_storage_error
from automl.progress import Progress
from automl.search.deadline import Deadline, FinishEstimate
from automl.search.loop import SearchLoop, TooManyFailures
from automl.search.oracle import open_oracle
from automl.search.result import SearchResult, finish
from automl.search.settings import SearchSettings
from automl.search.state import STATE_FILE, identity, open_project, project_dir, save_state
from automl.space import SearchSpace
from automl.tracking import TAG_KIND, TAG_SEARCH, Tracker, resolve_tracking_uri

log = logging.getLogger("automl")

# What SQLite says (through MLflow and SQLAlchemy) when it cannot write its database.
_STORE_UNWRITABLE = ("database or disk is full", "attempt to write a readonly database")
_SHARED = ("worker_data", "embeddings")  # what the workers shared: made again by each search


@dataclass
class Session:
    """What one search shares, from its lock to its end (made once in :func:`run_search`)."""

    space: SearchSpace
    data: DataBundle
    settings: SearchSettings
    uri: str
    project: Path
    state: dict[str, Any] | None
    ident: dict[str, Any]
    tracker: Tracker
    executor: Any
    progress: Progress
    deadline: Deadline
    accel: dict[str, Any] | None = None
    parent_id: str = ""
    search_id: str = ""

    def remove_shared(self) -> None:
        """Remove what the workers shared (nothing to remove when trials ran in-process)."""
        if not self.executor.in_process:
            for name in _SHARED:
                shutil.rmtree(self.project / name, ignore_errors=True)


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


def _worker_setup(space: SearchSpace, settings: SearchSettings, uri: str, project: Path):
    return WorkerSetup(
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


def _finish_estimate(data: DataBundle, settings: SearchSettings) -> FinishEstimate | None:
    """The closing steps' time the trials leave on a large data set (one the fidelity
    ladder caps); None on small data or without a budget (they come on top: seconds)."""
    from automl import fidelity

    n_train, n_val = len(data.y_train), len(data.y_val)
    if not fidelity.ladder(n_train, settings.time_budget):
        return None
    val = fidelity.val_cap(n_train, n_val, settings.time_budget) or n_val
    return FinishEstimate(
        val_images=val,
        test_images=fidelity.test_images(len(data.y_test), val),
        ensemble=settings.ensemble,
    )


def _locked_search(space, data, settings, uri, project) -> SearchResult:
    # Refuses here (one line) what it cannot do, e.g. workers > 1 without Ray.
    executor = settings.make_executor().bind(_worker_setup(space, settings, uri, project), data)
    ident = identity(space.digest(), data.digest(), settings, data.task)
    state = open_project(project, ident, settings)
    s = Session(
        space=space,
        data=data,
        settings=settings,
        uri=uri,
        project=project,
        state=state,
        ident=ident,
        tracker=Tracker(uri, settings.experiment),
        executor=executor,
        progress=Progress(settings.verbose),
        # The time budget counts from here, the workers' start-up included.
        deadline=Deadline.from_budget(
            settings.time_budget, refit=settings.refit, finish=_finish_estimate(data, settings)
        ),
    )
    executor.on_epoch = s.progress.epoch
    try:
        s.accel = executor.start()
        return _run(s)
    finally:
        s.progress.close()
        executor.close(kill=True)
        s.remove_shared()


def _run(s: Session) -> SearchResult:
    s.parent_id, s.search_id = _parent_run(s)
    with _parent_closed_on_failure(s.tracker, s.parent_id):
        return _trials_then_finish(s)


# --- the parent run ----------------------------------------------------------------------
def _parent_params(s: Session) -> dict[str, Any]:
    settings, space, data = s.settings, s.space, s.data
    return {
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
        **({"workers": s.executor.slots} if s.executor.slots > 1 else {}),
        **{k: v for k, v in data.summary().items() if k != "train_class_counts"},
        **{f"accelerator_{k}": v for k, v in (s.accel or {}).items()},
    }


def _check_resumable(s: Session) -> None:
    """A resumed search's parent run must be in this store."""
    try:
        s.tracker.get_run(s.state["parent_run_id"])
    except Exception:
        raise SearchError(
            f"the search state in {str(s.project / STATE_FILE)!r} belongs to MLflow run "
            f"{s.state['parent_run_id']}, which is not in {s.uri}; pass the --tracking-uri it "
            f"used ({s.state.get('tracking_uri')}), or --overwrite to start over"
        ) from None


def _parent_run(s: Session) -> tuple[str, str]:
    """Create the parent run (or reopen it on resume); returns (parent id, search id)."""
    state, tracker = s.state, s.tracker
    search_id = state["search_id"] if state else f"{s.settings.experiment}-{int(time.time())}"
    params = _parent_params(s)
    if state:
        _check_resumable(s)
    try:
        parent_id = tracker.start_search(
            search_id,
            params,
            {"mlflow.runName": f"search-{s.settings.experiment}"},
            run_id=state["parent_run_id"] if state else None,
        )
    except BaseException as e:  # created but not returned: find it by its search id
        _close_search_runs(tracker, search_id, e)
        raise
    with _parent_closed_on_failure(tracker, parent_id):
        if state:  # a resumed search: runs left RUNNING by a killed process were interrupted
            _close_running(
                tracker, parent_id, "interrupted (process stopped); the trial runs again"
            )
        else:
            _record_new_search(s, parent_id, search_id)
    return parent_id, search_id


def _record_new_search(s: Session, parent_id: str, search_id: str) -> None:
    """What a resume needs, logged before the state that says "resume" is saved."""
    s.tracker.log_dict(parent_id, s.space.to_dict(), "search_space.yaml")
    s.tracker.log_dict(parent_id, s.data.summary(), "data_summary.json")
    s.tracker.log_dict(parent_id, {"class_names": s.data.class_names}, "class_names.json")
    save_state(
        s.project,
        {
            **s.ident,
            "search_id": search_id,
            "parent_run_id": parent_id,
            "experiment": s.settings.experiment,
            "tracking_uri": s.uri,
        },
    )


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
        if tracker.get_run(parent_id).info.status != "RUNNING":
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
    try:
        runs = tracker.runs_tagged({TAG_SEARCH: search_id, TAG_KIND: "search"})
    except Exception:  # noqa: BLE001 - the store is gone: nothing to close
        return
    for r in runs:
        _close_parent(tracker, r.info.run_id, e)


def _close_running(tracker: Tracker, parent_id: str, reason: str) -> None:
    for r in tracker.trial_runs(parent_id):
        if r.info.status == "RUNNING":
            tracker.fail_trial(r.info.run_id, reason, status="KILLED")


# --- the trials ----------------------------------------------------------------------------
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


def _run_options(s: Session):
    """How the trials run: the same for each of them, and for the refit."""
    from automl.trial import RunOptions

    return RunOptions(
        embedding_cache=s.settings.embedding_cache,
        jit_compile=s.accel["jit_compile"],
        objective=s.space.objective,  # the best-epoch keeper and early stopping watch it
        deterministic=s.settings.deterministic,
        deadline=s.deadline.trials_end,
    )


def _make_loop(s: Session, checkpoints: Checkpoints, options) -> SearchLoop:
    from automl.trial import TrialConfig

    on_start, on_end = _progress_hooks(s.progress)
    return SearchLoop(
        open_oracle(s.space, s.settings, s.project),
        s.executor,
        s.tracker,
        s.parent_id,
        s.search_id,
        s.settings,
        checkpoints,
        options=asdict(options),
        to_config=lambda values: TrialConfig.from_values(values).to_dict(),
        deadline=s.deadline,
        on_trial_start=[on_start],
        # The display's "left in the budget" follows the trials' end as it moves.
        on_trial_end=[lambda *_: setattr(s.progress, "deadline", s.deadline.trials_end), on_end],
    )


def _run_trials(s: Session, loop: SearchLoop) -> None:
    """Run the loop; whatever stops it closes the trials in flight and the runs they hold."""
    settings, executor, tracker = s.settings, s.executor, s.tracker
    log.info(
        "search %s: %s tuner, up to %d trials%s; MLflow parent run %s in %s",
        settings.experiment,
        settings.tuner,
        settings.max_trials,
        f", {executor.slots} at once" if executor.slots > 1 else "",
        s.parent_id,
        s.uri,
    )
    done = sum(t.status == "COMPLETED" for t in loop.oracle.trials.values())
    s.progress.search_started(settings.max_trials, s.space.objective, s.deadline.trials_end, done)
    try:
        loop.run()
    except KeyboardInterrupt:
        executor.close(kill=True)
        _close_running(tracker, s.parent_id, "interrupted (process stopped)")
        raise
    except TooManyFailures as e:
        executor.close(kill=True)
        loop.abandon("stopped: too many consecutive failed trials; the trial runs again")
        last = (str(e).strip().splitlines() or ["?"])[-1][:200]
        tracker.set_tags(s.parent_id, {"automl.stopped": "too many consecutive failed trials"})
        tracker.end_run(s.parent_id, "FAILED")
        raise SearchError(
            f"search stopped after {settings.max_consecutive_failures} consecutive failed trials "
            f"(last: {last}); finished trials are kept; fix the cause and run the same command "
            "to resume, or raise --max-consecutive-failures"
        ) from None
    except BaseException as e:
        executor.close(kill=True)
        loop.abandon(f"the search stopped ({_failure_reason(e)[1][:300]}); the trial runs again")
        raise


def _trials_then_finish(s: Session) -> SearchResult:
    checkpoints = Checkpoints(
        s.project / "checkpoints", s.settings.keep_top_k, s.space.objective, s.data.class_names
    )
    options = _run_options(s)
    loop = _make_loop(s, checkpoints, options)
    _run_trials(s, loop)
    # From here to the end (closing the workers, the ensemble, the refit, test scoring),
    # whatever stops the search closes its run: KILLED on Ctrl-C, FAILED with the reason.
    s.executor.close()
    s.remove_shared()  # not needed any more
    result = SearchResult(
        s.uri, s.settings.experiment, s.parent_id, s.space.objective, s.data.class_names, s.data
    )
    held, loop.best_in_memory = loop.best_in_memory, None
    try:
        finish(
            result,
            s.tracker,
            s.data,
            s.space,
            s.settings,
            checkpoints,
            held,
            search_id=s.search_id,
            options=options,
            deadline=s.deadline,
            progress=s.progress,
        )
    finally:
        with contextlib.suppress(Exception):  # the store may be what failed
            s.progress.message(f"see the runs: automl ui, then open {result.ui_url}")
    return result
