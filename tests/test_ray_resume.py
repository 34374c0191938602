"""SIGKILL the driver of a 2-worker search (its own local Ray runtime), then resume it: the
same guarantees as one worker (tests/test_resume.py), and no Ray process outlives the pair."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import psutil
import pytest

from tests.distributed_helpers import assert_each_trial_once, trial_runs
from tests.robust_helpers import FAST_SPACE_YAML, cli, cli_env, tuner_state, wait_for_text

pytest.importorskip("ray", reason='Ray is an optional extra: pip install -e ".[distributed]"')


def test_sigkill_a_two_worker_search_then_resume(tmp_path, image_folder):
    uri, env = f"sqlite:///{tmp_path}/mlruns/mlflow.db", cli_env(tmp_path)
    env.pop("RAY_ADDRESS", None)
    space = tmp_path / "space.yaml"
    space.write_text(FAST_SPACE_YAML)
    cmd = cli(
        "search",
        "--data",
        str(image_folder),
        "--space",
        str(space),
        "--max-trials",
        "3",
        "--ensemble",
        "0",
    )
    cmd += ["--tuner", "random", "--experiment", "rk", "--workers", "2"]
    project = tmp_path / "mlruns" / "automl" / "rk"

    def start(name):
        log = tmp_path / f"{name}.log"
        fh = open(log, "w")
        return (
            subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=fh, stderr=subprocess.STDOUT),
            log,
            fh,
        )

    # 1. Two trials in flight on Ray; the driver is SIGKILLed (no chance to clean up).
    proc, log, fh = start("kill")
    wait_for_text(proc, log, "trial 1 started")
    time.sleep(3.0)  # both trials are in their Ray workers (a trial takes 20 s or more here)
    ray_procs, names = [], {}
    for p in psutil.Process(proc.pid).children(recursive=True):
        try:
            names[p.pid] = " ".join(p.cmdline())
            ray_procs.append(p)
        except psutil.NoSuchProcess:
            pass
    assert any("raylet" in n for n in names.values())
    proc.kill()
    assert proc.wait(timeout=60) == -signal.SIGKILL
    fh.close()
    _, runs = trial_runs(uri, "rk")
    assert {t: [r.info.status for r in rs] for t, rs in runs.items()} == {
        "0": ["RUNNING"],
        "1": ["RUNNING"],
    }
    # The runtime's core dies with the driver: no trial goes on writing to the store.
    core = [p for p in ray_procs if "Agent" not in names[p.pid]]
    assert psutil.wait_procs(core, timeout=60)[1] == []
    oracle, trials = tuner_state(project)
    assert trials == {"0": "RUNNING", "1": "RUNNING"}
    assert oracle["ongoing_trials"] == {"tuner0": "0", "tuner1": "1"}
    recorded = json.loads((project / "ray_local.json").read_text())

    # 2. Resumed to the end: both interrupted trials run again once, nothing else twice.
    proc, log, fh = start("resume")
    assert proc.wait(timeout=400) == 0, log.read_text()
    fh.close()
    text = log.read_text()
    assert "Traceback" not in text
    parents, runs = trial_runs(uri, "rk")
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert {t: [r.info.status for r in rs] for t, rs in runs.items()} == {
        "0": ["KILLED", "FINISHED"],
        "1": ["KILLED", "FINISHED"],
        "2": ["FINISHED"],
    }
    assert_each_trial_once(runs)
    for tid in "01":
        assert runs[tid][0].data.tags["automl.failure_reason"] == (
            "interrupted (process stopped); the trial runs again"
        )
    oracle, trials = tuner_state(project)
    assert set(trials.values()) == {"COMPLETED"} and len(trials) == 3
    assert oracle["ongoing_trials"] == {}
    # Whatever of the first runtime survived the driver was ended by the resume; and the
    # second runtime stopped with its search.
    assert not [pid for pid, _ in recorded if psutil.pid_exists(pid)]
    assert not (project / "ray_local.json").exists()
