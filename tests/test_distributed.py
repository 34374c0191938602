"""Several trials at once on a real local Ray runtime (one per module), logging to MLflow:
a SQLite store, and a real PostgreSQL behind a real ``mlflow server``."""

from __future__ import annotations

import importlib.util
import os

import pytest

import automl
from automl import cli
from automl.errors import SearchError
from tests.distributed_helpers import (
    SPACE,
    assert_each_trial_once,
    mlflow_server,
    postgres,
    postgres_bin,
    trial_runs,
)

try:
    import ray
except ImportError:  # the tests that need it are skipped; the others run
    ray = None
needs_ray = pytest.mark.skipif(
    ray is None, reason='Ray is an optional extra: pip install -e ".[distributed]"'
)


@pytest.fixture(scope="module")
def ray_runtime():
    """One local Ray runtime for the module (2 CPUs); a search joins it and leaves it running."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_workers_without_ray_is_one_line(monkeypatch, capsys, tiny_arrays):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "ray" else real(n, *a)
    )
    with pytest.raises(
        SearchError,
        match=r'--workers 2 needs Ray, which is not installed; run: pip install -e "\.\[distributed\]"',
    ):
        automl.search(tiny_arrays, space=SPACE, workers=2, max_trials=2)
    capsys.readouterr()
    assert cli.main(["search", "--workers", "2", "--data", "demo"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    # progress first (issue 18: "HH:MM:SS task: ..."), then the error in one line
    assert all(" task: " in line for line in err[:-1]), err
    assert err[-1].startswith("automl: error: ") and 'pip install -e ".[distributed]"' in err[-1]


def test_cli_passes_the_distributed_options(monkeypatch):
    seen = {}

    def fake_search(**kw):
        seen.update(kw)
        raise SearchError("stop here")

    monkeypatch.setattr(automl, "search", fake_search)
    argv = ["search", "--workers", "4", "--ray-address", "head:6379"]
    argv += ["--cpus-per-trial", "2", "--gpus-per-trial", "0.25"]
    assert cli.main(argv) == 2
    assert seen["workers"] == 4 and seen["ray_address"] == "head:6379"
    assert seen["cpus_per_trial"] == 2.0 and seen["gpus_per_trial"] == 0.25


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"workers": 0}, r"workers=0 must be a positive integer; pass --workers 1 or more"),
        ({"cpus_per_trial": 0}, r"cpus_per_trial=0 must be a positive number"),
        ({"gpus_per_trial": -1}, r"gpus_per_trial=-1 must be 0 or more \(fractions allowed"),
    ],
)
def test_bad_distributed_settings_are_refused(kw, message, tiny_arrays):
    with pytest.raises(SearchError, match=message):
        automl.search(tiny_arrays, space=SPACE, **kw)


@needs_ray
def test_two_workers_run_trials_at_once(ray_runtime, tmp_path, tiny_arrays, monkeypatch):
    uri = os.environ["MLFLOW_TRACKING_URI"]
    puts = []
    real_put = ray.put
    monkeypatch.setattr(
        ray, "put", lambda v, **kw: puts.append(type(v).__name__) or real_put(v, **kw)
    )
    result = automl.search(
        tiny_arrays, space=SPACE, max_trials=3, tuner="random", experiment="par", workers=2
    )
    assert puts == ["DataBundle"]  # the data went into the object store once, not per trial
    parents, runs = trial_runs(uri, "par")
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert sorted(runs) == ["0", "1", "2"]
    assert_each_trial_once(runs)
    done = [rs[-1] for rs in runs.values()]
    assert all(r.info.status == "FINISHED" for r in done)
    # Two trials ran at the same time (their runs' start..end overlap).
    spans = sorted((r.info.start_time, r.info.end_time) for r in done)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), spans
    for r in done:  # where each trial ran: a Ray worker process on this node, no GPU
        tags = r.data.tags
        assert tags["automl.node"] and tags["automl.gpu_ids"] == "none"
        assert int(tags["automl.pid"]) != os.getpid()
        assert r.data.metrics["best_val_accuracy"] >= 0
    assert result.best_trial["trial_id"] in runs
    assert 0.0 <= result.test_metrics["test_accuracy"] <= 1.0
    # The best trials' model files came back to the search's folder (top 3 kept).
    kept = sorted(p.name for p in (tmp_path / "mlruns/automl/par/checkpoints").glob("*.keras"))
    assert len(kept) == 3 and f"trial_{result.best_trial['trial_id']}.keras" in kept
    assert ray.is_initialized()  # a runtime the search joined is left running


@needs_ray
@pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL (initdb, pg_ctl) is not installed")
def test_two_workers_log_to_an_mlflow_server_on_postgresql(ray_runtime, tmp_path, tiny_arrays):
    import keras
    from mlflow.tracking import MlflowClient

    art = tmp_path / "served-artifacts"
    art.mkdir()
    with postgres() as db, mlflow_server(db, art) as url:
        result = automl.search(
            tiny_arrays,
            space=SPACE,
            max_trials=2,
            tuner="random",
            experiment="pg",
            tracking_uri=url,
            workdir=str(tmp_path / "work"),
            workers=2,
        )
        client = MlflowClient(url)
        parents, runs = trial_runs(url, "pg")
        assert [p.info.status for p in parents] == ["FINISHED"]
        assert sorted(runs) == ["0", "1"]
        assert_each_trial_once(runs)
        for tid, rs in runs.items():
            r = rs[-1]
            assert r.info.status == "FINISHED"
            assert r.data.params["trial_id"] == tid and float(r.data.params["learning_rate"]) > 0
            history = client.get_metric_history(r.info.run_id, "val_accuracy")
            assert [m.step for m in history] == [0]  # one epoch, logged by the Ray worker
            arts = {a.path for a in client.list_artifacts(r.info.run_id, "plots")}
            assert arts, f"trial {tid} has no plots"
        # Artifacts went to the server's store, not to a local folder.
        assert any(art.rglob("*.png"))
        # The best model reads back over HTTP and predicts.
        best = result.best_trial
        assert best["trial_id"] in runs
        model = result.best_model()
        assert isinstance(model, keras.Model)
        x, _ = tiny_arrays
        assert model.predict(x[:4], verbose=0).shape == (4, 3)
        names = {a.path for a in client.list_artifacts(result.parent_run_id, "best_model")}
        assert "best_model/model.keras" in names


@needs_ray
def test_two_workers_search_a_multilabel_task(ray_runtime, tmp_path):
    """Issue 18 on Ray: a multi-label search's trials run on 2 Ray workers at once, on
    macro-F1; the result predicts label sets, well above the all-positive baseline."""
    import numpy as np

    from automl.metrics import macro_f1
    from tests.test_task_search import SPACE as TASK_SPACE
    from tests.test_task_training import _multilabel

    uri = os.environ["MLFLOW_TRACKING_URI"]
    x, labels = _multilabel(160)
    hps = {**TASK_SPACE["hyperparameters"], "learning_rate": {"choice": [1e-2, 5e-3]}}
    result = automl.search(
        (x, np.array(labels, dtype=object)),
        space={**TASK_SPACE, "hyperparameters": hps},
        max_trials=2,
        tuner="random",
        experiment="ml-ray",
        workers=2,
        ensemble=0,
        verbose=0,
    )
    assert result.objective == "val_macro_f1" and result.data.task.name == "multilabel"
    _, runs = trial_runs(uri, "ml-ray")
    assert sorted(runs) == ["0", "1"]
    assert_each_trial_once(runs)
    done = [rs[-1] for rs in runs.values()]
    assert all(r.info.status == "FINISHED" for r in done)
    spans = sorted((r.info.start_time, r.info.end_time) for r in done)
    assert spans[1][0] < spans[0][1], spans  # the two trials ran at the same time
    pids = {int(r.data.tags["automl.pid"]) for r in done}
    assert len(pids) == 2 and os.getpid() not in pids  # on two Ray workers
    assert all("best_val_macro_f1" in r.data.metrics for r in done)
    data = result.data
    all_positive = macro_f1(data.y_test, np.ones_like(data.y_test))
    assert result.test_metrics["test_macro_f1"] > all_positive + 0.25, result.test_metrics
    predicted = result.predict(x[:16])
    hits = sum(set(p) == set(t) for p, t in zip(predicted, labels[:16]))
    assert hits >= 12, list(zip(predicted, labels[:16]))
