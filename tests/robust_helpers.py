"""Helpers of the resume / failure / concurrency tests: an instant stand-in for a trial, state readers."""

from __future__ import annotations

import atexit
import importlib
import json
import os
import shutil
import sys
import tempfile
import types
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# A real (tiny) search in a subprocess: phase 1 only, one epoch, random-init MobileNetV3Small.
FAST_SPACE_YAML = """\
name: fast
hyperparameters:
  backbone: mobilenet_v3_small
  weights: random
  image_size: 32
  learning_rate: {min: 1.0e-3, max: 1.0e-2, sampling: log}
  batch_size: {choice: [8, 16]}
  dropout: 0.1
  fine_tune_depth: 0.0
  head_epochs: 1
  fine_tune_epochs: 0
"""


_TEMPLATE_DB: Path | None = None


def prebuilt_store(tmp_path: Path) -> None:
    """Put an already-migrated MLflow SQLite file where the test's store is.

    MLflow's schema migrations take ~6 s per new database; every test gets its own store,
    so this copies one migrated once per session (the concurrency tests keep the real race).
    """
    global _TEMPLATE_DB
    if _TEMPLATE_DB is None:
        from mlflow.tracking import MlflowClient

        d = Path(tempfile.mkdtemp(prefix="automl-test-store-"))
        atexit.register(shutil.rmtree, d, ignore_errors=True)
        MlflowClient(f"sqlite:///{d}/mlflow.db").search_experiments()
        _TEMPLATE_DB = d / "mlflow.db"
    db = tmp_path / "mlruns" / "mlflow.db"
    if not db.exists():
        db.parent.mkdir(exist_ok=True)
        shutil.copy(_TEMPLATE_DB, db)


def fast_search(monkeypatch, tmp_path: Path, fake=None):
    """In-process searches on :class:`FakeTrials`: prebuilt store, and no gc.collect between
    trials (0.5 s each with TensorFlow loaded; it only frees memory). Returns automl.search."""
    prebuilt_store(tmp_path)
    runner = importlib.import_module("automl.executors.runner")  # where trials are trained
    monkeypatch.setattr(runner, "gc", types.SimpleNamespace(collect=lambda: 0))
    if fake is not None:
        monkeypatch.setattr(runner, "run_trial", fake)
    return importlib.import_module("automl.search")  # `automl.search` is also a function


def tiny_model(num_classes: int):
    """A few-parameter classifier of raw images (built-in layers only: safe-mode loadable)."""
    import keras

    return keras.Sequential(
        [
            keras.Input((None, None, 3)),
            keras.layers.Rescaling(1 / 255.0),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(num_classes, activation="softmax"),
        ]
    )


class FakeTrials:
    """Stands in for ``automl.executors.runner.run_trial``: instant, and raises what ``plan`` says.

    ``plan`` maps a trial id, or ``(trial id, attempt)``, to a callable returning the
    exception to raise. With seed 0 a trial's seed is its id, which is how the id is known.
    """

    def __init__(self, plan=None):
        self.plan = plan or {}
        self.calls: list[str] = []

    def __call__(self, cfg, data, *, seed, on_epoch=None, **kw):
        from automl.trial import TrialOutcome

        tid = str(seed)
        self.calls.append(tid)
        make = self.plan.get((tid, self.calls.count(tid))) or self.plan.get(tid)
        if make is not None:
            raise make()
        if on_epoch is not None:
            on_epoch({"step": 0, "phase": "phase1", "loss": 1.0, "val_loss": 1.0})
        return TrialOutcome(
            model=tiny_model(data.num_classes),
            metrics={
                "val_accuracy": 0.5 + 0.01 * int(tid),
                "val_loss": 1.0,
                "accuracy": 0.5,
                "loss": 1.0,
                "best_epoch": 0.0,
                "epochs_run": 1.0,
            },
        )


def searched_trial(monkeypatch, tmp_path: Path, folder: Path, retrain_with=None) -> str:
    """A one-trial search (:class:`FakeTrials`) of an image folder; returns the trial's run id.

    ``retrain_with`` (default: a :class:`FakeTrials`) then stands in for the training of
    ``automl retrain``.
    """
    import copy

    import pytest

    import automl.reports as reports
    import automl.trial as trial
    from tests.conftest import TINY_SPACE

    search_mod = fast_search(monkeypatch, tmp_path, FakeTrials())
    with pytest.MonkeyPatch.context() as mp:  # the search's model as an MLflow model: seconds
        mp.setattr(reports, "log_mlflow_model", lambda *a, **k: {"model_uri": "models:/x"})
        result = search_mod.search(
            str(folder),
            space=copy.deepcopy(TINY_SPACE),
            max_trials=1,
            tuner="random",
            trials_per_worker=0,
            experiment="retrain",
            verbose=0,
        )
    monkeypatch.setattr(trial, "run_trial", retrain_with or FakeTrials())
    return result.best_trial["run_id"]


def settings(experiment: str = "exp", max_trials: int = 3, **kw):
    from automl.search import SearchSettings

    return SearchSettings(
        experiment=experiment,
        max_trials=max_trials,
        seed=0,
        embedding_cache=False,
        mixed_precision=False,
        xla=False,
        # in-process: the fakes are patched in here
        **{"tuner": "random", "trials_per_worker": 0, **kw},
    )


def runs_by_trial(uri: str, experiment: str) -> tuple[list, dict[str, list[str]]]:
    """(parent search runs, {trial id: [status of each run, oldest first]}) of an experiment."""
    from automl.tracking import Tracker

    t = Tracker(uri, experiment)
    parents = t.client.search_runs([t.experiment_id], "tags.`automl.kind` = 'search'")
    out: dict[str, list[str]] = {}
    for p in parents:
        for r in t.trial_runs(p.info.run_id):
            out.setdefault(r.data.tags["automl.trial_id"], []).append(r.info.status)
    return list(parents), out


def tuner_state(project: Path) -> tuple[dict, dict[str, str]]:
    """(oracle.json, {trial id: status from trial_*/trial.json}) of KerasTuner's saved state."""
    d = project / "tuner"
    oracle = json.loads((d / "oracle.json").read_text())
    trials = {}
    for f in sorted(d.glob("trial_*/trial.json")):
        t = json.loads(f.read_text())
        trials[t["trial_id"]] = t["status"]
    return oracle, trials


def cli_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["CUDA_VISIBLE_DEVICES"] = ""
    env.pop("PYTEST_CURRENT_TEST", None)  # MLflow runs extra checks under pytest
    return env


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "automl", *args]


# One process of the store stress test: wait for a common start time (so that several
# processes create the fresh store at the same instant), then write a search's worth of runs.
STORE_WORKER = """
import sys, time
from automl.tracking import Tracker
uri, exp, start_at, n = sys.argv[1:]
while time.time() < float(start_at):
    time.sleep(0.001)
t = Tracker(uri, exp)
parent = t.start_search(exp, {"tuner": "random"}, {"mlflow.runName": exp})
for i in range(int(n)):
    run = t.start_trial(parent, exp, str(i), {"learning_rate": 0.001 * (i + 1)})
    for step in range(3):
        t.log_epoch(run, {"step": step, "phase": "phase1", "loss": 1.0 / (step + 1)})
    t.log_metrics(run, {"val_accuracy": 0.5, "val_loss": 1.0})
    t.set_tags(run, {"automl.checkpoint": ""})
    t.end_run(run, "FINISHED")
t.end_run(parent, "FINISHED")
print("done", exp)
"""


def wait_for_text(proc, log, text, timeout=300.0):
    """Wait until ``text`` appears in the subprocess's ``log`` file; fail if it exits first."""
    import time

    import pytest

    t0 = time.time()
    while text not in log.read_text():
        if proc.poll() is not None:
            pytest.fail(f"search exited ({proc.returncode}) before {text!r}:\n{log.read_text()}")
        if time.time() - t0 > timeout:
            proc.kill()
            pytest.fail(f"no {text!r} after {timeout}s:\n{log.read_text()}")
        time.sleep(0.2)
