"""End to end: a tiny search (random init, 32 px, 2 trials) checked through MLflow, export, CLI."""

import numpy as np
import pytest

import automl
from automl.cli import main
from automl.tracking import Tracker


@pytest.fixture(scope="module")
def searched(tmp_path_factory, tiny_arrays_module, tiny_space_module):
    root = tmp_path_factory.mktemp("search")
    uri = f"sqlite:///{root}/mlruns/mlflow.db"
    result = automl.search(
        data=tiny_arrays_module,
        space=tiny_space_module,
        max_trials=2,
        tuner="random",
        experiment="tiny",
        tracking_uri=uri,
        seed=1,
        workdir=str(root / "work"),
        ensemble=3,  # what the CLI does by default (the API's default is off)
    )
    return result, uri


@pytest.fixture(scope="module")
def tiny_arrays_module():
    from tests.conftest import make_tiny_arrays

    return make_tiny_arrays()


@pytest.fixture(scope="module")
def tiny_space_module():
    from tests.conftest import TINY_SPACE

    return TINY_SPACE


def test_mlflow_holds_parent_and_nested_runs(searched):
    result, uri = searched
    t = Tracker(uri, "tiny")
    parent = t.client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["tuner"] == "random"
    assert parent.data.tags["automl.best_run_id"] == result.best_trial["run_id"]
    assert 0.0 <= parent.data.metrics["test_accuracy"] <= 1.0
    runs = t.trial_runs(result.parent_run_id)
    trials = [r for r in runs if r.data.tags["automl.kind"] == "trial"]
    ensembles = [r for r in runs if r.data.tags["automl.kind"] == "ensemble"]
    assert len(trials) >= 2 and len(runs) == len(trials) + len(ensembles)
    for run in ensembles:  # a kept ensemble: a nested run naming its members' runs
        assert run.data.tags["mlflow.parentRunId"] == result.parent_run_id
        assert parent.data.tags["automl.ensemble_run_id"] == run.info.run_id
        members = run.data.params["member_run_ids"].split(",")
        assert len(members) >= 2 and set(members) <= {r.info.run_id for r in trials}
        assert run.data.tags["automl.checkpoint"].endswith("ensemble.keras")
    for run in trials:
        assert run.info.status == "FINISHED"
        assert {"lr", "batch_size", "dropout", "backbone"} <= set(run.data.params)
        assert run.data.tags["mlflow.parentRunId"] == result.parent_run_id
        history = t.client.get_metric_history(run.info.run_id, "val_accuracy")
        assert len(history) >= 2 and [m.step for m in history] == sorted(m.step for m in history)
        assert len(t.client.get_metric_history(run.info.run_id, "loss")) >= 2


def test_leaderboard_best_first(searched):
    result, _ = searched
    board = result.leaderboard()
    trials = board[board["trial"] != "ensemble"]  # a kept ensemble is a row of its own
    assert len(trials) == 2 and len(board) - len(trials) in (0, 1)
    assert board["val_accuracy"].is_monotonic_decreasing
    assert board.iloc[0]["run_id"] == result.best_trial["run_id"]
    assert trials.iloc[0]["backbone"] == "mobilenet_v3_small"
    assert set(trials["family"]) == {"pretrained"}


def test_best_model_is_the_best_epoch_and_export_round_trips(searched, tmp_path):
    import keras

    result, _ = searched
    model = result.best_model()
    x_val, y_val = result.data.x_val, result.data.y_val
    acc = float(np.mean(np.argmax(model.predict(x_val, verbose=0), 1) == y_val))
    assert acc == pytest.approx(result.best_trial["metrics"]["val_accuracy"], abs=1e-6)
    path = result.export(tmp_path / "best.keras")
    loaded = keras.models.load_model(path, safe_mode=True)
    x_test = result.data.x_test
    np.testing.assert_allclose(
        loaded.predict(x_test, verbose=0), model.predict(x_test, verbose=0), atol=1e-6
    )


def test_cli_leaderboard_and_export(searched, tmp_path, capsys):
    import keras

    result, uri = searched
    assert main(["leaderboard", "--experiment", "tiny", "--tracking-uri", uri]) == 0
    assert result.best_trial["run_id"] in capsys.readouterr().out
    out = tmp_path / "cli.keras"
    args = [
        "export",
        "--experiment",
        "tiny",
        "--tracking-uri",
        uri,
        "--format",
        "keras",
        "--output",
        str(out),
    ]
    assert main(args) == 0
    x_test = result.data.x_test
    np.testing.assert_allclose(
        keras.models.load_model(out).predict(x_test, verbose=0),
        result.best_model().predict(x_test, verbose=0),
        atol=1e-6,
    )
    assert main(args) == 2  # the output exists now
    assert "already exists; pass --force" in capsys.readouterr().err


def test_search_from_image_folder(image_folder, tiny_space):
    tiny_space["hyperparameters"].update({"fine_tune_depth": 0.0, "head_epochs": 2})
    result = automl.search(
        data=str(image_folder),
        space=tiny_space,
        max_trials=1,
        tuner="bayesian",
        experiment="folder",
    )
    assert result.class_names == ["class_0", "class_1", "class_2"]
    assert len(result.leaderboard()) == 1


def test_batch_size_reaches_fit(monkeypatch, tiny_arrays):
    from automl import trial as trial_mod
    from automl.data import load_data

    seen = []
    real = trial_mod.make_dataset

    def spy(x, y, batch_size, **kw):
        seen.append(batch_size)
        return real(x, y, batch_size, **kw)

    monkeypatch.setattr(trial_mod, "make_dataset", spy)
    cfg = trial_mod.TrialConfig(
        backbone="mobilenet_v3_small",
        weights="random",
        image_size=32,
        learning_rate=1e-3,
        batch_size=7,
        dropout=0.0,
        fine_tune_depth=0.1,
        head_epochs=1,
        fine_tune_epochs=1,
    )
    data = load_data(tiny_arrays)
    out = trial_mod.run_trial(cfg, data, options=trial_mod.RunOptions(embedding_cache=False))
    assert seen and set(seen) == {7}
    assert out.metrics["epochs_run"] == 2
