"""Faults as the most trusted storage systems test them: Ctrl-C at every step of a search and
of an export, a full disk or a read-only folder at every write, two searches at once, and a
forged model. The counts of the sweeps are recorded in docs/reliability.md."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from automl import cli as automl_cli
from tests.fault_helpers import FailingWrites, Tripwire
from tests.robust_helpers import (
    FAST_SPACE_YAML,
    FakeTrials,
    cli,
    cli_env,
    fast_search,
    runs_by_trial,
    tiny_model,
)


@pytest.fixture
def uri():
    return os.environ["MLFLOW_TRACKING_URI"]


@pytest.fixture
def space_file(tmp_path):
    p = tmp_path / "space.yaml"
    p.write_text(FAST_SPACE_YAML)
    return p


def _light_reports(monkeypatch):
    """The search's and trials' reports (plots, datasets, an MLflow model: seconds each) as
    one small artifact each: a failure there is a warning by design (reports._guard), and the
    sweeps need a search that takes a fraction of a second."""
    import automl.executors.runner as runner
    import automl.reports as reports

    def search_reports(tracker, parent_id, **kw):
        tracker.log_text(parent_id, "trial\n", "leaderboard.csv")
        return {}

    def trial_reports(tracker, run_id, *a, **kw):
        tracker.log_text(run_id, "config\n", "config.yaml")

    monkeypatch.setattr(reports, "log_search_reports", search_reports)
    monkeypatch.setattr(reports, "log_trial_reports", trial_reports)
    monkeypatch.setattr(runner, "gc", type("gc", (), {"collect": staticmethod(lambda: 0)}))


def _search_argv(folder, space_file, experiment):
    return [
        "search",
        "--data",
        str(folder),
        "--space",
        str(space_file),
        "--max-trials",
        "2",
        "--tuner",
        "random",
        "--experiment",
        experiment,
        "--trials-per-worker",
        "0",  # the fake trials are patched into this process
        "--ensemble",
        "0",
    ]


def _no_run_running(uri: str, experiment: str) -> None:
    parents, runs = runs_by_trial(uri, experiment)
    assert all(p.info.status != "RUNNING" for p in parents), [p.info.status for p in parents]
    assert all("RUNNING" not in s for s in runs.values()), runs


def _finished_once(uri: str, experiment: str, trials=("0", "1")) -> None:
    parents, runs = runs_by_trial(uri, experiment)
    latest = max(parents, key=lambda p: p.info.start_time)
    assert latest.info.status == "FINISHED"
    assert {t: s.count("FINISHED") for t, s in runs.items()} == {t: 1 for t in trials}, runs


def _search_events():
    """Every step of a search a Ctrl-C can fall on: each MLflow write, each progress line,
    the trial's checkpoint, KerasTuner's and automl's state files, closing the executor,
    the closing step."""
    import keras_tuner as kt

    from automl.checkpoints import Checkpoints
    from automl.executors.inprocess import InProcessExecutor
    from automl.progress import Progress
    from automl.tracking import Tracker

    search_pkg = sys.modules["automl.search"]
    targets = [
        (Tracker, name)
        for name in (
            "start_search",
            "start_trial",
            "log_params",
            "log_metrics",
            "set_tags",
            "log_dict",
            "log_text",
            "log_artifact",
            "end_run",
            "fail_trial",
        )
    ]
    targets += [
        (Progress, "_line"),
        (Checkpoints, "offer_file"),
        (kt.engine.oracle.Oracle, "save"),
        (InProcessExecutor, "close"),
        (search_pkg, "save_state"),
        (search_pkg, "finish"),
    ]
    return targets


def test_ctrl_c_at_every_step_of_a_search(monkeypatch, tmp_path, image_folder, space_file, uri):
    """SIGINT at each step in turn: exit 130, no run left RUNNING, and the same command
    then finishes with every trial run to the end once."""
    fake = FakeTrials()
    fast_search(monkeypatch, tmp_path, fake)
    _light_reports(monkeypatch)
    events = _search_events()
    with pytest.MonkeyPatch.context() as mp:  # a clean run: how many steps there are
        wire = Tripwire(mp, events)
        assert automl_cli.main(_search_argv(image_folder, space_file, "clean")) == 0
    total = wire.count
    assert total > 20, wire.names
    _finished_once(uri, "clean")
    t0 = time.time()
    for at in range(int(os.environ.get("SWEEP_FROM", 1)), total + 1):
        name = f"int{at}"
        argv = _search_argv(image_folder, space_file, name)
        with pytest.MonkeyPatch.context() as mp:
            wire = Tripwire(mp, events, at)
            rc = automl_cli.main(argv)
        assert rc == 130, (at, wire.names[at - 1])
        _no_run_running(uri, name)
        assert not (tmp_path / "mlruns" / "automl" / name / "worker_data").exists()
        done_before = {t for t, s in runs_by_trial(uri, name)[1].items() if "FINISHED" in s}
        fake.calls.clear()
        assert automl_cli.main(argv) == 0, at
        print(at, wire.names[at - 1], fake.calls, runs_by_trial(uri, name)[1])
        if os.environ.get("SWEEP_DEBUG"):
            from automl.tracking import Tracker

            t = Tracker(uri, name)
            for r in t.client.search_runs([t.experiment_id]):
                print(r.info.run_id, r.info.status, r.data.tags.get("automl.kind"), r.data.tags.get("automl.trial_id"), r.data.tags.get("mlflow.parentRunId"))
        assert not set(fake.calls) & done_before, (at, fake.calls)  # finished: not run again
        _finished_once(uri, name)
    print(f"interrupt points: {total}; sweep {time.time() - t0:.0f}s")
