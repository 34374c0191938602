"""Each task end to end (issue 18): a search on arrays learns, and its result predicts in the
task's own terms (values for regression, label sets for multi-label).

One small scratch trial per task, in the search's own process (``trials_per_worker=0``).
"""

from __future__ import annotations

import numpy as np
import pytest

import automl
from tests.test_task_training import _multilabel, _regression

SPACE = {
    "name": "task-e2e",
    "hyperparameters": {
        "family": "scratch",
        "image_size": 16,
        "blocks": 1,
        "conv_layers": 1,
        "filters": 8,
        "pooling": "avg",
        "dropout": 0.0,
        "learning_rate": 1e-2,
        "batch_size": 16,
        "augment": "none",
        "lr_schedule": "constant",
        "epochs": 25,
    },
}


def _search(tmp_path, monkeypatch, data, **kw):
    monkeypatch.chdir(tmp_path)
    kw = {"space": SPACE, "max_trials": 1, **kw}
    return automl.search(data, trials_per_worker=0, seed=0, ensemble=0, verbose=0, **kw)


def test_a_regression_search_learns_and_predicts_values(tmp_path, monkeypatch):
    x, v = _regression(160)
    result = _search(tmp_path, monkeypatch, (x, v))
    data = result.data
    assert data.task.name == "regression"
    best = result.best_trial
    truth = data.task.decode(data.y_val).reshape(-1)
    baseline = float(np.mean(np.abs(truth - truth.mean())))  # predict the mean
    assert best["metrics"]["val_mae"] < 0.5 * baseline, (best["metrics"], baseline)
    pred = np.asarray(result.predict(x[:8]), float).reshape(-1)
    assert np.mean(np.abs(pred - v[:8])) < 0.5 * float(np.mean(np.abs(v - v.mean())))


def test_a_multilabel_search_learns_and_predicts_label_sets(tmp_path, monkeypatch):
    x, labels = _multilabel(160)
    result = _search(tmp_path, monkeypatch, (x, np.array(labels, dtype=object)))
    assert result.data.task.name == "multilabel"
    from automl.metrics import macro_f1

    y = result.data.y_val
    all_positive = macro_f1(y, np.ones_like(y))
    assert result.best_trial["metrics"]["val_macro_f1"] > all_positive + 0.25
    predicted = result.predict(x[:16])
    hits = sum(set(p) == set(t) for p, t in zip(predicted, labels[:16]))
    assert hits >= 12, list(zip(predicted, labels[:16]))


@pytest.mark.parametrize(
    "y, message",
    [
        (np.array(["a"] * 10 + ["7.5"] * 10, dtype=object), "task"),
        (np.full(20, 3.25), "one value"),
    ],
)
def test_bad_targets_are_one_line_and_create_nothing(tmp_path, monkeypatch, y, message):
    from automl.errors import AutoMLError

    monkeypatch.chdir(tmp_path)
    x = np.zeros((20, 8, 8, 3), np.uint8)
    with pytest.raises(AutoMLError, match=message):
        automl.search((x, y), space=SPACE, task="regression", max_trials=1, verbose=0)
    assert not (tmp_path / "mlruns").exists()


def test_retrain_of_a_multilabel_trial_tunes_its_thresholds_on_validation(tmp_path, monkeypatch):
    """`retrain` of a multi-label trial tunes the per-label thresholds on validation for the
    new model, scores the test split with them and saves them with the model, as the search
    does (the run's task.json, the MLflow model's task)."""
    from automl.data.images import predict_images
    from automl.export import task_of_run
    from automl.metrics import score, tune_thresholds
    from automl.predict import load_predictor
    from automl.tracking import Tracker

    x, labels = _multilabel(96)
    y = np.array(labels, dtype=object)
    space = {**SPACE, "hyperparameters": {**SPACE["hyperparameters"], "epochs": 6}}
    result = _search(tmp_path, monkeypatch, (x, y), space=space)
    searched = result.task.thresholds_
    assert not np.allclose(searched, 0.5)  # the search tuned its own

    again = automl.retrain(result.best_trial["run_id"], data=(x, y), verbose=0)
    data = result.data
    tuned = tune_thresholds(data.y_val, predict_images(again.model, data.x_val))
    assert again.task is not None and again.task.name == "multilabel"
    np.testing.assert_allclose(again.task.thresholds_, tuned)
    assert not np.allclose(tuned, 0.5)
    assert data.task.thresholds_.tolist() == [0.5] * 3  # the data's own task is untouched
    probs = predict_images(again.model, data.x_test)
    assert again.test_metrics["test_macro_f1"] == pytest.approx(
        score(again.task, data.y_test, probs, "val_macro_f1")
    )
    tracker = Tracker(result.tracking_uri, result.experiment)
    saved = task_of_run(tracker, again.run_id)  # the run's task.json (`automl export`)
    np.testing.assert_allclose(saved.thresholds_, tuned)
    predictor = load_predictor(again.model_uri, tracking_uri=result.tracking_uri)
    np.testing.assert_allclose(predictor.task.thresholds_, tuned)  # the MLflow model's task


def test_a_regression_search_interrupted_after_a_trial_resumes(tmp_path, monkeypatch):
    """Ctrl-C in trial 1 of a regression search, then the same call again: trial 0 is not run
    again, the search stays a regression searched on val_mae (lower is better), and its
    result predicts values well under the predict-the-mean error."""
    import automl.executors.runner as runner
    from tests.fault_helpers import light_reports
    from tests.robust_helpers import prebuilt_store, runs_by_trial

    prebuilt_store(tmp_path)
    light_reports(monkeypatch)  # plots and MLflow models: not what this test is about
    real, calls = runner.run_trial, []

    def run_trial(cfg, data, *, seed, **kw):  # with seed 0, a trial's seed is its id
        calls.append(str(seed))
        if calls == ["0", "1"]:
            raise KeyboardInterrupt  # Ctrl-C as trial 1 starts
        return real(cfg, data, seed=seed, **kw)

    monkeypatch.setattr(runner, "run_trial", run_trial)
    x, v = _regression(120)
    hps = {**SPACE["hyperparameters"], "epochs": 20, "learning_rate": {"choice": [1e-2, 5e-3]}}
    kw = dict(space={**SPACE, "hyperparameters": hps}, max_trials=2, experiment="reg-resume")
    with pytest.raises(KeyboardInterrupt):
        _search(tmp_path, monkeypatch, (x, v), **kw)
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    assert runs_by_trial(uri, "reg-resume")[1] == {"0": ["FINISHED"], "1": ["KILLED"]}

    result = _search(tmp_path, monkeypatch, (x, v), **kw)  # the same command
    assert calls == ["0", "1", "1"]  # trial 0 kept, trial 1 run again once
    parents, runs = runs_by_trial(uri, "reg-resume")
    assert len(parents) == 1 and parents[0].data.params["objective"] == "val_mae"
    assert runs == {"0": ["FINISHED"], "1": ["KILLED", "FINISHED"]}
    assert result.objective == "val_mae" and result.data.task.name == "regression"
    board = result.leaderboard()
    done = board[board["status"] == "FINISHED"]
    assert done["val_mae"].tolist() == sorted(done["val_mae"])  # lower is better: best first
    best = result.best_trial["metrics"]["val_mae"]
    assert best == pytest.approx(done["val_mae"].min())
    truth = result.data.task.decode(result.data.y_val).reshape(-1)
    assert best < 0.5 * float(np.mean(np.abs(truth - truth.mean())))  # predict the mean
    pred = np.asarray(result.predict(x[:16]), float).reshape(-1)
    assert np.mean(np.abs(pred - v[:16])) < 0.5 * float(np.mean(np.abs(v - v.mean())))
    assert "test_mae" in result.test_metrics


@pytest.mark.parametrize(
    "task, logged, watched",
    [
        ("regression", "val_rmse", "val_rmse"),
        ("regression", "val_accuracy", "val_mae"),  # not the task's: its default
        ("regression", None, "val_mae"),  # a trial without a parent search
        ("multilabel", None, "val_macro_f1"),
        ("classification", "val_balanced_accuracy", "val_balanced_accuracy"),
        ("classification", None, "val_accuracy"),
    ],
)
def test_retrain_watches_the_search_objective(task, logged, watched):
    """What retrain's best-epoch keeper watches: the search's objective where the task has
    it (a regression retrain watching val_accuracy failed before training)."""
    from types import SimpleNamespace

    from automl.retrain import _Retrain
    from automl.tasks import resolve_task

    y = {"regression": [1.0, 2.5, 4.0], "multilabel": [["a"], ["a", "b"], []]}
    job = _Retrain.__new__(_Retrain)
    tags = {"mlflow.parentRunId": "p"} if logged else {}
    job.run = SimpleNamespace(data=SimpleNamespace(tags=tags))
    job.tracker = SimpleNamespace(run_params=lambda run_id: {"objective": logged})
    job.bundle = SimpleNamespace(task=resolve_task(y.get(task, ["a", "b", "a"]), task))
    assert job.objective() == watched
