"""A real two-node Ray cluster on localhost: SIGKILL the worker node's raylet mid-trial; the
search goes on, the lost trial is failed and retried, nothing is logged twice or left RUNNING."""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pytest

import automl
from tests.distributed_helpers import SPACE, assert_each_trial_once, trial_runs

ray = pytest.importorskip("ray", reason='Ray is an optional extra: pip install -e ".[distributed]"')


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False},
    )
    worker = c.add_node(num_cpus=1)
    ray.init(address=c.address, log_to_driver=False)
    yield c, worker
    ray.shutdown()
    c.shutdown()


def _kill_worker_node_mid_trial(raylet: psutil.Process, done: threading.Event, out: dict):
    """SIGKILL the raylet once one of its workers is running a trial."""
    while not done.is_set():
        try:
            busy = [p for p in raylet.children() if "_ray_trial" in " ".join(p.cmdline())]
        except psutil.NoSuchProcess:
            return
        if busy:
            time.sleep(1.0)  # well inside the trial
            out["trial_worker"] = busy[0].pid
            os.kill(raylet.pid, signal.SIGKILL)
            return
        time.sleep(0.1)


def test_a_dead_node_costs_one_attempt_and_the_search_goes_on(cluster, tmp_path, tiny_arrays):
    c, worker = cluster
    uri = os.environ["MLFLOW_TRACKING_URI"]
    raylet = psutil.Process(worker.all_processes["raylet"][0].process.pid)
    done, killed = threading.Event(), {}
    killer = threading.Thread(
        target=_kill_worker_node_mid_trial, args=(raylet, done, killed), daemon=True
    )
    killer.start()
    try:
        result = automl.search(
            tiny_arrays,
            space=SPACE,
            max_trials=2,
            tuner="random",
            experiment="node",
            workers=2,
            cpus_per_trial=1,
            max_retries=1,
        )
    finally:
        done.set()
        killer.join()
    assert killed, "no trial ever ran on the worker node"
    assert not psutil.pid_exists(killed["trial_worker"]) or (
        psutil.Process(killed["trial_worker"]).status() == psutil.STATUS_ZOMBIE
    )
    parents, runs = trial_runs(uri, "node")
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert sorted(runs) == ["0", "1"]
    assert_each_trial_once(runs)
    lost = [
        (tid, r)
        for tid, rs in runs.items()
        for r in rs
        if "Ray worker or node lost" in r.data.tags.get("automl.failure_reason", "")
    ]
    assert len(lost) == 1, {t: [r.info.status for r in rs] for t, rs in runs.items()}
    tid, run = lost[0]
    assert run.info.status == "FAILED"
    # Retried once (max_retries=1), on the node that is left, and finished there.
    assert [r.info.status for r in runs[tid]] == ["FAILED", "FINISHED"]
    assert runs[tid][-1].data.tags["automl.attempt"] == "2"
    assert all(rs[-1].info.status == "FINISHED" for rs in runs.values())
    assert result.best_trial["trial_id"] in runs


LOCAL_RUNTIME = """
import json, os
from automl.executors.base import WorkerSetup
from automl.executors.ray import RayExecutor
setup = WorkerSetup("sqlite:///x.db", "e", "ckpt", 1, "val_accuracy")
ex = RayExecutor(workers=2).bind(setup, None)
info = ex.start()
ex.close(kill=True)
print(json.dumps({"nodes": info["ray_nodes"], "cpus": info["ray_cpus"]}))
"""


def test_a_search_without_an_address_starts_its_own_runtime_beside_a_running_cluster(
    cluster, tmp_path
):
    """A two-node cluster is up on this machine (``ray start`` by the user, or another test):
    a search given no address must not join it (ray.init would, then refuse num_cpus)."""
    import json
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run(
        [sys.executable, "-c", LOCAL_RUNTIME],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info == {"nodes": 1, "cpus": float(os.cpu_count())}, info
