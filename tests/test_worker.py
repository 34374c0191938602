"""Trials in recycled worker processes: memory bounded, a killed worker costs one trial only."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import psutil

import automl
import automl.executors.process as worker_mod
from automl.embeddings import EmbeddingCache
from automl.tracking import Tracker
from tests.conftest import TINY_SPACE

# The shared tiny space, phase 1 only: trials of a few seconds.
SPACE = {
    "name": "workers",
    "hyperparameters": {
        **TINY_SPACE["hyperparameters"],
        "fine_tune_depth": 0.0,
        "fine_tune_epochs": 0,
    },
}


def _kill_worker_during_first_trial(uri: str, experiment: str, done: threading.Event, out: dict):
    """SIGKILL (what the out-of-memory killer sends) the worker once trial 0's run exists."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    me = psutil.Process()
    while not done.is_set():
        exp = client.get_experiment_by_name(experiment)
        runs = (
            client.search_runs([exp.experiment_id], "tags.`automl.trial_id` = '0'") if exp else []
        )
        workers = me.children()
        if runs and workers:
            out["pid"] = workers[0].pid
            os.kill(workers[0].pid, signal.SIGKILL)
            return
        time.sleep(0.05)


def test_workers_are_recycled_and_a_killed_worker_fails_only_its_trial(
    tmp_path, tiny_arrays, monkeypatch
):
    monkeypatch.setattr(worker_mod, "MAX_GROWTH", 100.0)  # recycle by trial count only here
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    done, killed = threading.Event(), {}
    killer = threading.Thread(
        target=_kill_worker_during_first_trial, args=(uri, "workers", done, killed), daemon=True
    )
    killer.start()
    try:
        result = automl.search(
            data=tiny_arrays,
            space=SPACE,
            max_trials=4,
            tuner="random",
            experiment="workers",
            tracking_uri=uri,
            workdir=str(tmp_path / "work"),
            trials_per_worker=2,
            max_retries=0,
        )
    finally:
        done.set()
        killer.join()
    assert killed, "the worker was never seen"
    t = Tracker(uri, "workers")
    runs = {r.data.tags["automl.trial_id"]: r for r in t.trial_runs(result.parent_run_id)}
    assert sorted(runs) == ["0", "1", "2", "3"]

    # Trial 0 died with its worker: FAILED, the reason says what happened, not retried.
    assert runs["0"].info.status == "FAILED"
    assert "SIGKILL" in runs["0"].data.tags["automl.failure_reason"]
    # The others ran on: trials 1 and 2 in one new worker, trial 3 in the next one.
    for tid in "123":
        assert runs[tid].info.status == "FINISHED"
        assert runs[tid].data.metrics["process_rss_mb"] > 0
    pids = {tid: int(runs[tid].data.tags["automl.pid"]) for tid in "123"}
    assert pids["1"] == pids["2"] != pids["3"]
    assert killed["pid"] not in pids.values() and os.getpid() not in pids.values()
    # Workers are gone, and so are the files they shared.
    assert psutil.Process().children() == []
    project = tmp_path / "work" / "workers"
    assert not (project / "worker_data").exists() and not (project / "embeddings").exists()
    assert result.best_trial["trial_id"] in {"1", "2", "3"}
    assert 0.0 <= result.test_metrics["test_accuracy"] <= 1.0


class _Features:
    """Stands in for a frozen backbone: counts how often it runs."""

    def __init__(self):
        self.calls = 0

    def predict(self, x, batch_size=None, verbose=0):
        self.calls += 1
        return np.asarray(x, dtype=np.float32).reshape(len(x), -1)[:, :4]


def test_embedding_cache_on_disk_is_shared_by_new_processes(tmp_path, tiny_arrays):
    """A second cache on the same folder (a later worker) reads the features, never recomputes."""
    from automl.data import load_data
    from automl.trial import TrialConfig

    data = load_data(tiny_arrays)
    cfg = TrialConfig("mobilenet_v3_small", "imagenet", 32, 1e-3, 8, 0.1, 0.0, 1, 0)
    first, feats = EmbeddingCache(directory=tmp_path / "emb"), _Features()
    tr, va = first.get(feats, cfg, data)
    assert feats.calls == 2 and first.misses == 1
    second, feats2 = EmbeddingCache(directory=tmp_path / "emb"), _Features()
    tr2, va2 = second.get(feats2, cfg, data)
    assert feats2.calls == 0 and second.hits == 1
    np.testing.assert_array_equal(tr, tr2)
    np.testing.assert_array_equal(va, va2)
    # Another image size is another entry.
    other = TrialConfig("mobilenet_v3_small", "imagenet", 64, 1e-3, 8, 0.1, 0.0, 1, 0)
    second.get(feats2, other, data)
    assert feats2.calls == 2 and len(list((tmp_path / "emb").glob("*.npy"))) == 4


def test_a_worker_whose_memory_grew_is_replaced():
    """The memory rule, on a stand-in worker that is this process (its RSS is known)."""

    class Proc:
        pid = os.getpid()

    rss = psutil.Process().memory_info().rss / 2**20
    w = worker_mod.TrialWorker({}, trials_per_worker=10)
    w.proc, w.trials_done = Proc(), 1
    w.first_rss = rss / 1.2  # it has grown 20 % since its first trial
    assert w._spent()
    w.first_rss = rss  # not grown
    assert not w._spent()
    w.trials_done = 10  # but it has run its trials
    assert w._spent()


def test_a_worker_started_early_is_taken_or_stopped(monkeypatch):
    """search() starts the first worker before it lists the files; the worker start takes
    it if it still has the search's environment, and it is stopped when nothing took it."""
    worker_mod.prestart(None)
    proc = worker_mod._spare["spawned"][0]
    assert proc.poll() is None and "automl.executors.process" in " ".join(proc.args)
    worker_mod.discard_spare()
    assert proc.poll() is not None and worker_mod._spare == {}
    worker_mod.prestart("sqlite:///nowhere/mlflow.db")
    spawned = worker_mod._spare["spawned"]
    assert "mlflow.store.tracking.sqlalchemy_store" in spawned[0].args  # warmed for SQL
    assert worker_mod._take_spare() is spawned  # same environment: taken
    worker_mod._stop(*spawned)
    monkeypatch.setenv("TF2_BEHAVIOR", "1")  # what importing TensorFlow sets: no matter
    worker_mod.prestart(None)
    spawned = worker_mod._spare["spawned"]
    monkeypatch.setenv("KMP_INIT_AT_FORK", "FALSE")
    assert worker_mod._take_spare() is spawned
    worker_mod._stop(*spawned)
    for name, value in (("AUTOML_PLUGINS", "my_plugin"), ("TF2_BEHAVIOR", "0")):
        worker_mod.prestart(None)
        proc = worker_mod._spare["spawned"][0]
        monkeypatch.setenv(name, value)  # a plugin registered since, a variable changed
        assert worker_mod._take_spare() is None  # not the search's environment: not taken
        assert proc.poll() is not None and worker_mod._spare == {}


def test_a_search_refused_before_its_trials_leaves_no_worker_behind(tmp_path, monkeypatch):
    import pytest

    from automl.errors import AutoMLError

    started = []
    prestart = worker_mod.prestart
    monkeypatch.setattr(
        worker_mod, "prestart", lambda uri: (prestart(uri), started.append(_spare_pid()))
    )
    before = {p.pid for p in psutil.Process().children()}
    with pytest.raises(AutoMLError, match="missing"):
        automl.search(
            data=str(tmp_path / "missing"),
            space=SPACE,
            max_trials=2,  # trials in a worker process: one is started early
            tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db",
        )
    assert started and started[0] not in before  # a worker was started early...
    assert worker_mod._spare == {}
    assert {p.pid for p in psutil.Process().children()} <= before  # ...and stopped


def _spare_pid() -> int:
    return worker_mod._spare["spawned"][0].pid
