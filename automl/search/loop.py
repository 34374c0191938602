"""The search loop: ask the oracle, submit to the executor, collect, tell the oracle.

Up to ``executor.slots`` trials are in flight at once, one per KerasTuner tuner id
(``tuner0``, ``tuner1``...); whichever finishes first is recorded first. The search's
process creates each trial's MLflow run and closes it; the executor's worker logs into it.
This module imports neither Keras nor an executor: it talks to
:class:`automl.executors.base.Executor` only.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from automl import search_report
from automl.executors.base import Executor, JobFailure, JobResult, TrialJob
from automl.search_report import trial_name
from automl.task_training import trial_scores
from automl.tracking import Tracker

if TYPE_CHECKING:
    from automl.search.deadline import Deadline

log = logging.getLogger("automl")

# KerasTuner's trial statuses (keras_tuner.engine.trial.TrialStatus: plain strings).
STOPPED, IDLE, COMPLETED, INVALID, FAILED = "STOPPED", "IDLE", "COMPLETED", "INVALID", "FAILED"


class TooManyFailures(Exception):
    """``max_consecutive_failures`` trials in a row failed for good."""


@dataclass
class Running:
    """A trial in flight: its tuner id, KerasTuner trial, MLflow run and future."""

    tuner_id: str
    trial: Any
    run_id: str
    started: float = field(default_factory=time.time)
    future: Future | None = None


class SearchLoop:
    """One search's trials, from the oracle's proposal to the oracle's record of the result.

    ``checkpoints`` is the search's :class:`automl.checkpoints.Checkpoints` (the driver's
    view: Hyperband parents, model files sent back by remote workers). ``to_config`` turns
    the oracle's values into a trial config dict (``automl.trial.TrialConfig``'s fields).
    ``on_trial_start`` hooks get ``(trial_id, params)`` once a trial's run exists;
    ``on_trial_end`` hooks get ``(trial_id, result_or_failure)`` once it is recorded
    (``None`` for a trial found already finished in MLflow). Progress reporters belong there.
    ``deadline`` is the search's :class:`automl.search.deadline.Deadline`: once its trials'
    share is spent, no new trial starts.
    """

    def __init__(
        self,
        oracle,
        executor: Executor,
        tracker: Tracker,
        parent_id: str,
        search_id: str,
        settings,
        checkpoints,
        options: dict[str, Any],
        to_config,
        deadline: Deadline | None = None,
        on_trial_start: list | None = None,
        on_trial_end: list | None = None,
    ):
        self.oracle, self.executor, self.tracker = oracle, executor, tracker
        self.parent_id, self.search_id, self.settings = parent_id, search_id, settings
        self.checkpoints, self.options, self.deadline = checkpoints, options, deadline
        self.to_config = to_config
        self.on_trial_start = list(on_trial_start or [])
        self.on_trial_end = list(on_trial_end or [])
        self.running: list[Running] = []
        self.consecutive_failures = 0  # trials failed for good in a row, in this process
        # The best finished trial's model, when trials run in this process: one model in
        # memory, so the end of the search neither reloads nor re-saves it.
        self.best_in_memory: tuple[str, dict[str, float], Any] | None = None

    # --- the loop ---------------------------------------------------------------------
    def run(self) -> None:
        """Run trials until the oracle stops (max trials, time budget) and none is in flight."""
        try:
            while True:
                self._fill()
                pending = [r for r in self.running if r.future is not None]
                if not pending:
                    return
                done, _ = wait([r.future for r in pending], return_when=FIRST_COMPLETED)
                for r in pending:
                    if r.future in done:
                        self._collect(r)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: close the runs; they run again on resume
            self.executor.close(kill=True)  # first: nothing writes to a run once it is closed
            self.abandon("interrupted (process stopped)")
            raise

    def abandon(self, reason: str) -> None:
        """Close the runs of the trials in flight as KILLED (the oracle keeps them RUNNING,
        so a resumed search runs them again)."""
        for r in self.running:
            try:
                self.tracker.fail_trial(r.run_id, reason, status="KILLED")
            except Exception:  # the store is gone too: a resumed search closes it
                log.warning("could not close run %s of trial %s", r.run_id, r.trial.trial_id)
        self.running = []

    def _fill(self) -> None:
        """Ask the oracle for a trial for each free tuner id, and submit it."""
        busy = {r.tuner_id for r in self.running}
        for i in range(self.executor.slots):
            tuner_id = f"tuner{i}"
            if tuner_id in busy:
                continue
            while True:
                trial = self.oracle.create_trial(tuner_id)
                if trial.status == STOPPED:  # max trials, budget, or space done
                    return
                if trial.status == IDLE:  # Hyperband waits for its round
                    if self.running:
                        return
                    continue
                if self._start(tuner_id, trial):
                    break  # submitted: next tuner id
                # already finished in MLflow and recorded now: ask again for this tuner id

    def _start(self, tuner_id: str, trial) -> bool:
        """Create the trial's run and submit its job; False if it had already finished."""
        values = dict(trial.hyperparameters.values)
        cfg = self.to_config(values)
        tid = trial.trial_id
        previous = self._previous_runs(tid)
        if self._finished_before(trial, previous):
            return False
        initial_epoch, init_weights = self._hyperband_parent(values)
        params = self._params(tid, cfg, values, initial_epoch)
        attempt = len(previous) + 1
        run_id = self.tracker.start_trial(
            self.parent_id,
            self.search_id,
            tid,
            params,
            attempt=attempt,
            run_name=trial_name(tid, cfg, attempt),
        )
        log.debug(
            "trial %s started (%d of at most %d): %s",
            tid,
            int(tid) + 1,
            self.settings.max_trials,
            ", ".join(f"{k}={v}" for k, v in cfg.items()),
        )
        job = TrialJob(
            trial_id=tid,
            run_id=run_id,
            config=cfg,
            seed=params["seed"],
            split_seed=self.settings.seed,
            options=self._job_options(),
            budget=values.get("tuner/epochs"),
            initial_epoch=initial_epoch,
            initial_weights=init_weights,
        )
        for hook in self.on_trial_start:
            hook(tid, params)
        entry = Running(tuner_id, trial, run_id)
        self.running.append(entry)  # before submit: a synchronous one may be interrupted
        entry.future = self.executor.submit(job)
        return True

    def _job_options(self) -> dict[str, Any]:
        """The trials' run options, with the trials' end as it stands now (on a large data
        set it moves as the closing steps' estimate does, see :class:`Deadline`)."""
        options = dict(self.options)
        if self.deadline is not None and "deadline" in options:
            options["deadline"] = self.deadline.trials_end
        return options

    def _finished_before(self, trial, previous: list) -> bool:
        """Killed after its run finished but before KerasTuner saved its end: never run a
        completed trial twice, hand KerasTuner the recorded scores instead."""
        for r in previous:
            m = r.data.metrics
            if r.info.status == "FINISHED" and "best_val_loss" in m:  # every task logs val_loss
                log.info(
                    "trial %s already finished (MLflow run %s): not run again",
                    trial.trial_id,
                    r.info.run_id,
                )
                # val_accuracy, val_loss and the task's objectives (best_val_mae, ...)
                score = trial_scores({k[5:]: v for k, v in m.items() if k.startswith("best_")})
                self._tell(trial, score)
                return True
        return False

    def _hyperband_parent(self, values: dict[str, Any]) -> tuple[int, str | None]:
        """(initial epoch, parent's weights file) of a Hyperband trial that continues one."""
        initial_epoch = int(values.get("tuner/initial_epoch", 0) or 0)
        if values.get("tuner/trial_id"):
            ckpt = self.checkpoints.path(values["tuner/trial_id"])
            if ckpt.exists():
                return initial_epoch, str(ckpt)
            return 0, None  # the parent's weights were not kept (outside the top k): start over
        return initial_epoch, None

    def _params(
        self, tid: str, cfg: dict[str, Any], values: dict[str, Any], initial_epoch: int
    ) -> dict[str, Any]:
        """The trial run's MLflow params."""
        # "lr" is the short alias the MLflow UI columns show next to batch_size and dropout.
        params = {
            **cfg,
            "lr": cfg["learning_rate"],
            "trial_id": tid,
            "seed": self.settings.seed + int(tid),
        }
        budget = values.get("tuner/epochs")
        if budget is not None:
            params.update(
                {
                    "hyperband_epochs": budget,
                    "hyperband_initial_epoch": initial_epoch,
                    "hyperband_parent": values.get("tuner/trial_id"),
                }
            )
        return params

    def _collect(self, r: Running) -> None:
        """Record a finished future: close the run, tell the oracle, count failures."""
        out = r.future.result()
        tid, trial = r.trial.trial_id, r.trial
        if isinstance(out, JobFailure):
            self.tracker.fail_trial(r.run_id, out.reason, out.details)
            log.warning(
                "trial %s failed: %s%s", tid, out.reason, " (not retried)" if out.final else ""
            )
            trial.status = FAILED if out.final else INVALID
            trial.message = out.reason
            self.running.remove(r)
            self._end(trial, out)
            return
        assert isinstance(out, JobResult)
        score = out.score
        if out.model_file is not None:  # trained on another machine: keep it here if top k
            kept = self.checkpoints.offer_bytes(tid, score, out.model_file)
            out.model_file = None
            self.tracker.set_tags(
                r.run_id, {"automl.checkpoint": str(self.checkpoints.path(tid)) if kept else ""}
            )
        if out.model is not None:  # run in this process: the best model so far stays in memory
            rank = self.checkpoints.rank
            if self.best_in_memory is None or rank(score) > rank(self.best_in_memory[1]):
                self.best_in_memory = (tid, score, out.model)
            out.model = None
        self.tracker.end_run(r.run_id, "FINISHED")
        if self.deadline is not None and self.deadline.finish is not None:
            self.deadline.finish.observe(out.predict_per_s)
        log.debug(
            "trial %s done: val_accuracy=%.4f val_loss=%.4f",
            tid,
            score["val_accuracy"],
            score["val_loss"],
        )
        self.running.remove(r)
        self._tell(trial, score, out)

    def _tell(self, trial, score: dict[str, float], out: Any = None) -> None:
        # Scores a task does not have (a regression's val_accuracy: NaN) are left out.
        self.oracle.update_trial(trial.trial_id, {k: v for k, v in score.items() if v == v}, step=0)
        trial.status = COMPLETED
        self._end(trial, out)

    def _end(self, trial, out: Any) -> None:
        """The oracle records the end (and queues a retry); then the stop rules."""
        self.oracle.end_trial(trial)
        self.oracle.save()  # end_trial saved before it let go of the tuner id
        status = self.oracle.trials[trial.trial_id].status
        for hook in self.on_trial_end:
            hook(trial.trial_id, out)
        search_report.refresh(self.tracker, self.parent_id)  # notes and report, as trials end
        if status == FAILED:
            self.consecutive_failures += 1
            if self.consecutive_failures >= self.settings.max_consecutive_failures:
                raise TooManyFailures(trial.message or "")
        elif status == COMPLETED:
            self.consecutive_failures = 0
        if self.deadline is not None and self.deadline.trials_over():
            if self.oracle.max_trials != len(self.oracle.trials):
                finish = self.deadline.finish
                log.info(
                    "time budget spent: no new trials%s",
                    ""
                    if finish is None
                    else f" (the ensemble and test scoring keep {finish.seconds():.0f} s of it: "
                    f"estimated at {finish.images_per_s:.0f} images/s)",
                )
            self.oracle.max_trials = len(self.oracle.trials)

    def _previous_runs(self, tid: str) -> list:
        """This search's MLflow runs of trial ``tid`` (earlier attempts, earlier processes)."""
        return self.tracker.trial_runs(self.parent_id, tid)  # filtered by the trial's tag
