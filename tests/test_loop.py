"""The search loop (automl.search.loop) on a fake executor, and the one Deadline it reads.

No Keras model is trained: the executor hands back scores (or failures) at once, so these
check what the loop itself does: one run per trial, the oracle told, the stop rules.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
import time
from concurrent.futures import Future

import pytest

from automl.checkpoints import Checkpoints
from automl.executors.base import Executor, JobFailure, JobResult, done_future
from automl.search.deadline import RESERVE, Deadline
from automl.search.loop import SearchLoop, TooManyFailures
from automl.search.oracle import open_oracle
from automl.space import load_space
from automl.tracking import Tracker
from tests.conftest import TINY_SPACE
from tests.robust_helpers import prebuilt_store, settings


class FakeExecutor(Executor):
    """Runs nothing: each job's outcome comes from ``outcome(job)`` at once."""

    def __init__(self, outcome):
        self.outcome, self.jobs = outcome, []

    def start(self) -> dict:
        return {"jit_compile": False}

    def submit(self, job) -> Future:
        self.jobs.append(job)
        return done_future(self.outcome(job))

    def close(self, kill: bool = False) -> None:
        pass


def scored(job) -> JobResult:
    return JobResult(metrics={"val_accuracy": 0.5 + 0.1 * int(job.trial_id), "val_loss": 1.0})


def make_loop(tmp_path, executor, deadline=None, **kw):
    prebuilt_store(tmp_path)
    space = load_space(copy.deepcopy(TINY_SPACE))
    st = dataclasses.replace(settings(), **kw)
    tracker = Tracker(None, st.experiment)
    parent = tracker.start_search("s-1", {}, {})
    ckpts = Checkpoints(tmp_path / "ckpt", 2, space.objective, ["a", "b"])
    started, ended = [], []
    loop = SearchLoop(
        open_oracle(space, st, tmp_path / "project"),
        executor,
        tracker,
        parent,
        "s-1",
        st,
        ckpts,
        options={"deadline": deadline.trials_end if deadline else None},
        to_config=lambda values: {"learning_rate": values["learning_rate"], "x": 1},
        deadline=deadline,
        on_trial_start=[lambda tid, params: started.append(tid)],
        on_trial_end=[lambda tid, out: ended.append((tid, out))],
    )
    return loop, tracker, parent, started, ended


def test_the_loop_runs_each_trial_once_records_it_and_tells_the_oracle(tmp_path):
    ex = FakeExecutor(scored)
    loop, tracker, parent, started, ended = make_loop(tmp_path, ex, max_trials=3, seed=5)
    loop.run()
    assert [j.trial_id for j in ex.jobs] == ["0", "1", "2"]
    assert [j.seed for j in ex.jobs] == [5, 6, 7]  # the search's seed + the trial id
    assert {j.split_seed for j in ex.jobs} == {5}
    runs = tracker.trial_runs(parent)
    assert [r.info.status for r in runs] == ["FINISHED"] * 3
    assert [r.info.run_id for r in runs] == [j.run_id for j in ex.jobs]  # one run per job
    assert runs[1].data.params["seed"] == "6" and runs[1].data.params["x"] == "1"
    scores = {tid: t.score for tid, t in loop.oracle.trials.items()}
    assert scores == pytest.approx({"0": 0.5, "1": 0.6, "2": 0.7})
    assert started == ["0", "1", "2"] and [tid for tid, _ in ended] == ["0", "1", "2"]
    assert loop.running == []


def test_a_spent_deadline_lets_no_new_trial_start(tmp_path):
    spent = Deadline(start=time.time() - 120, seconds=60)
    ex = FakeExecutor(scored)
    loop, tracker, parent, *_ = make_loop(tmp_path, ex, deadline=spent, max_trials=4)
    loop.run()
    assert [j.trial_id for j in ex.jobs] == ["0"]  # the running one ends, no other starts
    assert ex.jobs[0].options["deadline"] == spent.trials_end  # the trials get its end time
    assert len(tracker.trial_runs(parent)) == 1


def test_failed_trials_in_a_row_stop_the_loop_and_their_runs_say_why(tmp_path):
    ex = FakeExecutor(lambda job: JobFailure("diverged", "nan loss", final=True))
    loop, tracker, parent, _, ended = make_loop(
        tmp_path, ex, max_trials=5, max_consecutive_failures=2
    )
    with pytest.raises(TooManyFailures, match="diverged"):
        loop.run()
    runs = tracker.trial_runs(parent)
    assert [r.info.status for r in runs] == ["FAILED", "FAILED"]
    assert {r.data.tags["automl.failure_reason"] for r in runs} == {"diverged"}
    assert [loop.oracle.trials[tid].status for tid, _ in ended] == ["FAILED", "FAILED"]


def test_the_deadline_is_made_once_from_minutes_with_the_refit_reserve_inside():
    d = Deadline.from_budget(10, refit=True, start=1000.0)
    assert (d.end, d.trials_end, d.refit_end) == (
        1600.0,
        1600.0 - RESERVE * 600,
        1600.0 + RESERVE * 600,
    )
    assert d.trials_over(now=1600.0 - RESERVE * 600 + 1) and not d.trials_over(now=1500.0)
    assert d.refit_seconds_left(now=1600.0) == pytest.approx(RESERVE * 600)
    assert Deadline.from_budget(10, start=1000.0).trials_end == 1600.0  # no refit: no reserve
    assert pickle.loads(pickle.dumps(d)) == d  # travels to worker processes and Ray
    none = Deadline.from_budget(None)
    assert none.trials_end is none.refit_end is none.refit_seconds_left() is None
    assert not none.trials_over()


def test_a_large_data_sets_trials_leave_the_closing_steps_their_measured_time():
    """The finish estimate: (validation + test images) x members at the trials' predict
    speed, a load per member and the reports; the trials' end moves as trials measure it,
    and never by more than half the budget."""
    from automl.search.deadline import (
        FIXED_S,
        MAX_FINISH,
        PER_MEMBER_S,
        PRIOR_IMAGES_PER_S,
        FinishEstimate,
    )

    est = FinishEstimate(val_images=1000, test_images=2000, ensemble=3)
    d = Deadline.from_budget(3, start=1000.0, finish=est)
    prior = est.seconds()  # no trial yet: one member, the test images at the prior speed
    assert prior == pytest.approx(FIXED_S + PER_MEMBER_S + 2000 / est.images_per_s)
    assert d.trials_end == pytest.approx(1180.0 - prior)
    est.observe(500.0)  # a trial measured 500 images/s: two members from now on
    assert est.seconds() == pytest.approx(FIXED_S + 2 * (PER_MEMBER_S + 3000 / 500.0))
    est.observe(0.0)  # not measured: counted as a trial, not as a speed
    est.observe(250.0)
    assert est.images_per_s == pytest.approx(2 / (1 / 500 + 1 / 250))  # harmonic mean
    assert est.seconds() == pytest.approx(FIXED_S + 3 * (PER_MEMBER_S + 3000 / est.images_per_s))
    slow = FinishEstimate(val_images=1000, test_images=15000, ensemble=3)
    slow.observe(10.0)
    capped = Deadline.from_budget(3, start=1000.0, finish=slow)
    assert capped.trials_end == pytest.approx(1180.0 - MAX_FINISH * 180)
    assert Deadline.from_budget(3, start=1000.0).trials_end == 1180.0  # small data: as before
    assert FinishEstimate(1000, 2000, ensemble=0).seconds() == pytest.approx(
        FIXED_S + PER_MEMBER_S + 2000 / PRIOR_IMAGES_PER_S
    )  # no ensemble: one member, no selection


def test_each_trial_gets_the_trials_end_as_it_stands_when_it_starts(tmp_path):
    from automl.search.deadline import FinishEstimate

    est = FinishEstimate(val_images=1000, test_images=2000, ensemble=3)
    d = Deadline.from_budget(60, finish=est)

    def measured(job):
        out = scored(job)
        out.predict_per_s = 200.0
        return out

    ex = FakeExecutor(measured)
    loop, *_ = make_loop(tmp_path, ex, deadline=d, max_trials=3)
    loop.run()
    ends = [j.options["deadline"] for j in ex.jobs]
    assert est.trials == 3 and est.images_per_s == pytest.approx(200.0)
    # More members and a measured (faster than the prior) speed: the end moves each time.
    assert len(set(ends)) == 3


def test_only_a_large_data_set_leaves_the_closing_steps_time():
    """Small data (the demo, 1,000 images) or no budget: no estimate, the same trials' end
    as before; 100,000 images: the test split's sample and the validation cap."""
    from types import SimpleNamespace

    from automl.search.session import _finish_estimate

    def data(train, val, test):
        return SimpleNamespace(y_train=[0] * train, y_val=[0] * val, y_test=[0] * test)

    st = settings()
    assert _finish_estimate(data(700, 150, 150), dataclasses.replace(st, time_budget=3)) is None
    assert (
        _finish_estimate(data(70000, 15000, 15000), dataclasses.replace(st, time_budget=None))
        is None
    )
    est = _finish_estimate(
        data(70000, 15000, 15000), dataclasses.replace(st, time_budget=3, ensemble=3)
    )
    assert (est.val_images, est.test_images, est.ensemble) == (1000, 2000, 3)
    est = _finish_estimate(
        data(7000, 1500, 1500), dataclasses.replace(st, time_budget=3, ensemble=3)
    )
    assert (est.val_images, est.test_images) == (1000, 1500)  # 10k: the whole test split
