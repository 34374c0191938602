"""Several processes on one SQLite store at once (different experiments): all finish, no
run is lost, no "database is locked" and no race when they create the store together."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from automl.tracking import Tracker
from tests.robust_helpers import FAST_SPACE_YAML, STORE_WORKER, cli, cli_env, runs_by_trial


def test_processes_creating_and_writing_one_store_at_once(tmp_path):
    """MLflow creates and migrates a new store's tables without a lock: without
    automl.tracking's init lock, all but one of these fail with "table ... already exists"."""
    uri, env = f"sqlite:///{tmp_path}/mlruns/mlflow.db", cli_env(tmp_path)
    start_at = str(time.time() + 6)  # after every process has imported MLflow
    names = ["a", "b", "c"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", STORE_WORKER, uri, name, start_at, "15"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in names
    ]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    for name, p, out in zip(names, procs, outs):
        assert p.returncode == 0 and f"done {name}" in out, out
        assert "locked" not in out.lower()
    for name in names:
        parents, runs = runs_by_trial(uri, name)
        assert [p.info.status for p in parents] == ["FINISHED"]
        assert runs == {str(i): ["FINISHED"] for i in range(15)}


def test_two_real_searches_on_one_store_at_once(tmp_path, image_folder):
    uri, env = f"sqlite:///{tmp_path}/mlruns/mlflow.db", cli_env(tmp_path)
    space = tmp_path / "space.yaml"
    space.write_text(FAST_SPACE_YAML)
    procs = {}
    for name in ("left", "right"):
        args = ["search", "--data", str(image_folder), "--space", str(space)]
        args += ["--max-trials", "1", "--tuner", "random", "--experiment", name]
        procs[name] = subprocess.Popen(
            cli(*args),
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    for name, p in procs.items():
        out = p.communicate(timeout=400)[0]
        assert p.returncode == 0, out
        assert "locked" not in out.lower() and "Traceback" not in out
        parents, runs = runs_by_trial(uri, name)
        assert [p.info.status for p in parents] == ["FINISHED"]
        assert runs == {"0": ["FINISHED"]}
        project = tmp_path / "mlruns" / "automl" / name
        assert (project / "tuner" / "trial_0" / "trial.json").exists()
        # Each with its own model file, in its own folder, logged by its own trial run.
        board = Tracker(uri, name).leaderboard(parents[0].info.run_id)
        ckpt = Tracker(uri, name).client.get_run(board["run_id"][0]).data.tags["automl.checkpoint"]
        assert Path(ckpt) == project / "checkpoints" / "trial_0.keras" and Path(ckpt).is_file()
        assert not (project / ".automl-lock.json").exists()  # each let go of its lock
