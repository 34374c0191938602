"""A search stopped at any moment (Ctrl-C, SIGTERM, SIGKILL) goes on when the same command
runs again: finished trials are kept and not re-run, the interrupted one runs again once,
and MLflow shows one parent run with the interrupted trial's run KILLED."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import time

import psutil
import pytest

from automl import cli as automl_cli
from automl.data import load_data
from automl.errors import SearchError
from automl.search import project_dir as _project_dir
from automl.space import load_space
from tests.fault_helpers import light_reports
from tests.robust_helpers import (
    FAST_SPACE_YAML,
    FakeTrials,
    cli,
    cli_env,
    fast_search,
    runs_by_trial,
    settings,
    tuner_state,
    wait_for_text,
)


@pytest.fixture
def uri():
    return os.environ["MLFLOW_TRACKING_URI"]


@pytest.fixture
def space_file(tmp_path):
    p = tmp_path / "space.yaml"
    p.write_text(FAST_SPACE_YAML)
    return p


def _killed_reason(uri, experiment, tid):
    from automl.tracking import Tracker

    t = Tracker(uri, experiment)
    parent = t.latest_search().info.run_id
    board = t.leaderboard(parent)
    return board[(board["trial"] == tid) & (board["status"] == "KILLED")]["reason"].tolist()


def test_sigint_then_sigkill_then_resume_a_real_search(
    monkeypatch, tmp_path, image_folder, space_file, capsys
):
    """A real `python -m automl search` in a subprocess: Ctrl-C in trial 0, SIGKILL in trial 1;
    then the same command, in this process (its trial still runs in a worker process), ends it."""
    uri, env = f"sqlite:///{tmp_path}/mlruns/mlflow.db", cli_env(tmp_path)
    cmd = cli(
        "search",
        "--data",
        str(image_folder),
        "--space",
        str(space_file),
        "--max-trials",
        "2",
        "--ensemble",
        "0",  # the trials' runs only (an ensemble run would depend on the scores)
        "--tuner",
        "random",
        "--experiment",
        "kill",
    )
    project = tmp_path / "mlruns" / "automl" / "kill"

    def start(name):
        log = tmp_path / f"{name}.log"
        fh = open(log, "w")
        # A shell's background job (a CI runner, say) starts with SIGINT ignored, and Python
        # then installs no KeyboardInterrupt handler: give the search the default, as a terminal does.
        proc = subprocess.Popen(
            cmd,
            cwd=tmp_path,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        return proc, log, fh

    # 1. Ctrl-C in the middle of trial 0: exit 130, its run and the parent closed as KILLED.
    proc, log, fh = start("sigint")
    wait_for_text(proc, log, "trial 0 started")
    workers = psutil.Process(proc.pid).children()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130, log.read_text()
    assert psutil.wait_procs(workers, timeout=30)[1] == []  # the search stopped its worker
    fh.close()
    assert "automl: interrupted; finished trials are kept" in log.read_text()
    assert "Traceback" not in log.read_text()
    parents, runs = runs_by_trial(uri, "kill")
    assert [p.info.status for p in parents] == ["KILLED"]
    assert runs == {"0": ["KILLED"]}
    oracle, trials = tuner_state(project)
    assert trials == {"0": "RUNNING"} and oracle["ongoing_trials"] == {"tuner0": "0"}

    # 2. Resumed; SIGKILL (no chance to clean up) in the middle of trial 1.
    proc, log, fh = start("sigkill")
    wait_for_text(proc, log, "trial 1 started")
    workers = psutil.Process(proc.pid).children()
    assert len(workers) == 1 and "automl.executors.process" in " ".join(workers[0].cmdline())
    proc.kill()
    assert proc.wait(timeout=60) == -signal.SIGKILL
    fh.close()
    # The trial worker dies with the search: nothing goes on writing to the store.
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert alive == []
    parents, runs = runs_by_trial(uri, "kill")
    assert len(parents) == 1  # the same parent run continued
    assert runs == {"0": ["KILLED", "FINISHED"], "1": ["RUNNING"]}
    oracle, trials = tuner_state(project)
    assert trials == {"0": "COMPLETED", "1": "RUNNING"}
    assert oracle["end_order"] == ["0"] and oracle["ongoing_trials"] == {"tuner0": "1"}

    # 3. Resumed to the end: trial 0 is not run again, trial 1 runs again once.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    capsys.readouterr()
    rc = automl_cli.main(cmd[3:])  # cmd: python -m automl search ...
    text = "".join(capsys.readouterr())
    assert rc == 0, text
    assert "trial 0 started" not in text and text.count("trial 1 started") == 1
    parents, runs = runs_by_trial(uri, "kill")
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert runs == {"0": ["KILLED", "FINISHED"], "1": ["KILLED", "FINISHED"]}
    assert _killed_reason(uri, "kill", "1") == [
        "interrupted (process stopped); the trial runs again"
    ]
    oracle, trials = tuner_state(project)
    assert trials == {"0": "COMPLETED", "1": "COMPLETED"}
    assert oracle["end_order"] == ["0", "1"] and oracle["ongoing_trials"] == {}
    assert sorted(p.name for p in (project / "tuner").glob("trial_*")) == ["trial_0", "trial_1"]
    # Everything a resume reads is JSON (nothing is unpickled): KerasTuner's state and ours.
    state_files = [f for f in project.rglob("*") if f.is_file() and f.suffix != ".keras"]
    assert (project / ".automl-lock").read_bytes() == b""  # the experiment's lock: empty
    state_files.remove(project / ".automl-lock")
    assert {f.name for f in state_files} == {
        ".automl-search",
        "automl_search.json",
        "oracle.json",
        "trial.json",
        "index.json",
    }
    for f in state_files:
        json.loads(f.read_text())


def test_sigterm_closes_the_run_as_killed_and_the_cli_resumes(
    monkeypatch, tmp_path, image_folder, space_file, uri, capsys
):
    def terminate():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler raises before this ends

    fake = FakeTrials({("1", 1): terminate})
    fast_search(monkeypatch, tmp_path, fake)
    light_reports(monkeypatch)
    argv = ["search", "--data", str(image_folder), "--space", str(space_file)]
    argv += ["--max-trials", "2", "--tuner", "random", "--experiment", "term", "-q"]
    argv += ["--trials-per-worker", "0"]  # the fake trials are patched into this process
    # The trials' runs only: whether an ensemble run is added depends on the fake models'
    # random weights, i.e. on what drew from Python's random before (the test order).
    argv += ["--ensemble", "0"]
    before = signal.getsignal(signal.SIGTERM)
    assert automl_cli.main(argv) == 143
    assert signal.getsignal(signal.SIGTERM) is before  # the CLI's handler is removed again
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "automl: interrupted; finished trials are kept, run the same command to resume"
    )
    parents, runs = runs_by_trial(uri, "term")
    assert [p.info.status for p in parents] == ["KILLED"]
    assert runs == {"0": ["FINISHED"], "1": ["KILLED"]}

    assert automl_cli.main(argv) == 0
    assert fake.calls == ["0", "1", "1"]
    parents, runs = runs_by_trial(uri, "term")
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert runs == {"0": ["FINISHED"], "1": ["KILLED", "FINISHED"]}
    assert _killed_reason(uri, "term", "1") == ["interrupted (process stopped)"]


def test_a_trial_finished_in_mlflow_but_not_in_keras_tuner_is_not_run_again(
    monkeypatch, tmp_path, tiny_arrays, tiny_space, uri
):
    """Killed between the trial's run ending and KerasTuner saving that: no second run."""
    import keras_tuner as kt

    fake = FakeTrials()
    search_mod = fast_search(monkeypatch, tmp_path, fake)
    light_reports(monkeypatch)
    original = kt.oracles.RandomSearchOracle.end_trial

    def end_trial(self, trial):
        if trial.trial_id == "1":
            raise KeyboardInterrupt
        return original(self, trial)

    monkeypatch.setattr(kt.oracles.RandomSearchOracle, "end_trial", end_trial)
    data, space, s = load_data(tiny_arrays), load_space(tiny_space), settings(max_trials=2)
    with pytest.raises(KeyboardInterrupt):
        search_mod.run_search(space, data, s)
    assert runs_by_trial(uri, "exp")[1] == {"0": ["FINISHED"], "1": ["FINISHED"]}
    assert tuner_state(_project_dir(s, uri))[1] == {"0": "COMPLETED", "1": "RUNNING"}

    monkeypatch.setattr(kt.oracles.RandomSearchOracle, "end_trial", original)
    result = search_mod.run_search(space, data, s)
    assert fake.calls == ["0", "1"]  # trial 1 ran once
    assert runs_by_trial(uri, "exp")[1] == {"0": ["FINISHED"], "1": ["FINISHED"]}
    assert tuner_state(_project_dir(s, uri))[1] == {"0": "COMPLETED", "1": "COMPLETED"}
    assert result.best_trial["trial_id"] == "1"


def test_a_hyperband_search_resumes_with_its_brackets(
    monkeypatch, tmp_path, tiny_arrays, tiny_space, uri
):
    """Ctrl-C in the middle of a Hyperband bracket: the resumed search finishes the bracket,
    continued trials still start from their parent's checkpoint and keep their epochs."""
    fake = FakeTrials({("2", 1): KeyboardInterrupt})
    search_mod = fast_search(monkeypatch, tmp_path, fake)
    light_reports(monkeypatch)  # the brackets are the point, not the plots
    data, space = load_data(tiny_arrays), load_space(tiny_space)
    s = settings(max_trials=6, tuner="hyperband")
    with pytest.raises(KeyboardInterrupt):
        search_mod.run_search(space, data, s)
    assert runs_by_trial(uri, "exp")[1] == {"0": ["FINISHED"], "1": ["FINISHED"], "2": ["KILLED"]}

    result = search_mod.run_search(space, data, s)
    assert fake.calls[:4] == ["0", "1", "2", "2"]  # finished trials not run again
    _, runs = runs_by_trial(uri, "exp")
    assert runs["2"] == ["KILLED", "FINISHED"]
    assert all(v[-1] == "FINISHED" for v in runs.values()) and len(runs) == 6
    from automl.tracking import Tracker

    trials = Tracker(uri, "exp").trial_runs(result.parent_run_id)
    finished = {r.data.tags["automl.trial_id"]: r for r in trials if r.info.status == "FINISHED"}
    continued = [r for r in finished.values() if r.data.params.get("hyperband_parent")]
    assert continued, "the brackets never continued a trial"
    for r in continued:  # a continuation runs the epochs its parent did not
        p = r.data.params
        assert p["hyperband_parent"] in finished
        assert 0 < int(p["hyperband_initial_epoch"]) < int(p["hyperband_epochs"])
    state = tuner_state(_project_dir(s, uri))[1]
    assert set(state.values()) == {"COMPLETED"} and len(state) == 6


def test_changed_space_or_data_is_refused_unless_overwrite(
    monkeypatch, tmp_path, tiny_arrays, tiny_space, uri
):
    fake = FakeTrials()
    search_mod = fast_search(monkeypatch, tmp_path, fake)
    data, s = load_data(tiny_arrays), settings(max_trials=1)
    first = search_mod.run_search(load_space(tiny_space), data, s)

    changed = copy.deepcopy(tiny_space)
    changed["hyperparameters"]["dropout"] = 0.3
    with pytest.raises(
        SearchError,
        match=r"experiment 'exp' already holds a search with a different search space; "
        r"use a new --experiment name or --overwrite",
    ):
        search_mod.run_search(load_space(changed), data, s)
    x, y = tiny_arrays
    with pytest.raises(
        SearchError, match=r"a different data; use a new --experiment name or --overwrite"
    ):
        search_mod.run_search(load_space(tiny_space), load_data((x[:-3], y[:-3])), s)
    assert fake.calls == ["0"]  # refused before any trial

    s.overwrite = True
    second = search_mod.run_search(load_space(tiny_space), data, s)
    assert second.parent_run_id != first.parent_run_id and fake.calls == ["0", "0"]


def test_changed_space_through_the_cli_is_one_line(tmp_path, image_folder, space_file, capsys):
    """The same refusal from the CLI: exit code 2, one line, before any training."""
    from automl.search import STATE_FILE

    project = tmp_path / "mlruns" / "automl" / "cli"
    project.mkdir(parents=True)
    (project / STATE_FILE).write_text('{"space_digest": "other", "tuner": "random", "seed": 0}')
    argv = ["search", "--data", str(image_folder), "--space", str(space_file)]
    assert automl_cli.main([*argv, "--tuner", "random", "--experiment", "cli"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].endswith("task: classification (3 classes, 48 images)")  # progress (issue 18)
    assert err[1:] == [
        "automl: error: experiment 'cli' already holds a search with a different search space "
        "and data; use a new --experiment name or --overwrite"
    ]


def test_state_of_a_search_missing_from_the_store_is_refused(
    monkeypatch, tmp_path, tiny_arrays, tiny_space, uri
):
    """The same project folder, but another MLflow store (another --tracking-uri)."""
    import shutil

    search_mod = fast_search(monkeypatch, tmp_path, FakeTrials())
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(tmp_path / "mlruns" / "mlflow.db", other / "mlflow.db")  # still empty
    data, space = load_data(tiny_arrays), load_space(tiny_space)
    s = settings(max_trials=1, workdir=str(tmp_path / "work"))
    first = search_mod.run_search(space, data, s)
    s.tracking_uri = f"sqlite:///{other}/mlflow.db"
    with pytest.raises(
        SearchError,
        match=rf"belongs to MLflow run {first.parent_run_id}, which is not in "
        rf"{s.tracking_uri}; pass the --tracking-uri it used \({uri}\), or --overwrite",
    ):
        search_mod.run_search(space, data, s)
