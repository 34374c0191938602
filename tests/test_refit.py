"""The winner refit on train + validation: it becomes the best model only when it is a working
fit, and no refit path (kept, not kept, failed, skipped) costs the search its result."""

from __future__ import annotations

import types

import numpy as np
import pytest

import automl
from automl.errors import SearchError

pytestmark = pytest.mark.slow

SPACE = {  # a pretrained trial (the family refit): EfficientNet-Lite0's shipped weights
    "hyperparameters": {
        "family": "pretrained",
        "backbone": "efficientnet_lite0",
        "weights": "imagenet",
        "image_size": 32,
        "learning_rate": {"choice": [0.001, 0.003]},
        "batch_size": 64,
        "fine_tune_depth": 0.2,
        "head_epochs": 6,
        "fine_tune_epochs": 2,
        "augment": "none",
    }
}
# Where only the refit's fate is tested (not kept, Ctrl-C), not what it learns: fewer epochs.
SHORT = {"hyperparameters": {**SPACE["hyperparameters"], "head_epochs": 2, "fine_tune_epochs": 1}}
SCRATCH = {
    "hyperparameters": {
        "family": "scratch",
        "image_size": 16,
        "blocks": 1,
        "filters": 8,
        "conv_layers": 1,
        "epochs": 2,
        "batch_size": 64,
    }
}


def _is_refit(kw) -> bool:
    return kw.get("stop_after") is not None


def _search(experiment: str, space=SPACE, max_trials: int = 2, **kw):
    """Two trials where which one wins matters; one where only the refit's fate does."""
    return automl.search(
        data="demo",
        space=space,
        max_trials=max_trials,
        tuner="random",
        experiment=experiment,
        trials_per_worker=0,
        ensemble=0,
        refit=True,
        verbose=0,
        **kw,
    )


def _parent_tags(result) -> dict[str, str]:
    return result.tracker.client.get_run(result.parent_run_id).data.tags


def test_the_refit_wins_and_is_the_model_exported(tmp_path):
    result = _search("refit")
    board = result.leaderboard()
    assert list(board["trial"][:1]) == ["refit"], board[["trial", "val_accuracy"]]
    src = board.iloc[1]  # the trial it refits: same validation scores, just below
    refit = board.iloc[0]
    assert (refit["val_accuracy"], refit["val_loss"]) == (src["val_accuracy"], src["val_loss"])
    assert refit["learning_rate"] == src["learning_rate"]
    best = result.best_trial
    assert best["trial_id"] == "refit"
    tags = _parent_tags(result)
    data = result.data
    seen = len(data.y_train) + len(data.y_val)
    assert tags["automl.refit"].startswith(f"kept: trial {src['trial']} trained again on {seen} ")
    assert tags["automl.best_run_id"] == refit["run_id"] == tags["automl.refit_run_id"]
    # It learned: the digits through ImageNet features at 32 px; chance is 0.1.
    assert result.test_metrics["test_accuracy"] > 0.7, result.test_metrics
    run = result.tracker.client.get_run(refit["run_id"])
    assert run.data.tags["automl.kind"] == "refit"
    assert run.data.tags["automl.refit_of"] == src["run_id"]
    assert run.data.params["refit_of"] == src["trial"]
    assert run.data.metrics["refit_val_accuracy"] >= src["val_accuracy"] - 0.02
    # the exported best model is the refit's, not the trial's
    out = result.export(tmp_path / "best.keras")
    import keras

    exported = keras.models.load_model(out, safe_mode=True, compile=False)
    refit_model = keras.models.load_model(run.data.tags["automl.checkpoint"], compile=False)
    x = data.x_test[:16].astype("float32")
    np.testing.assert_allclose(exported.predict(x, verbose=0), refit_model.predict(x, verbose=0))
    probs = refit_model.predict(data.x_test.astype("float32"), verbose=0)
    acc = float(np.mean(probs.argmax(1) == data.y_test))
    assert acc == pytest.approx(result.test_metrics["test_accuracy"])


def test_a_refit_that_does_not_fit_validation_is_not_kept(monkeypatch):
    import automl.trial

    real = automl.trial.run_trial
    calls = []

    def collapsed(cfg, data, **kw):  # a refit that collapsed: chance on images it trained on
        out = real(cfg, data, **kw)
        if _is_refit(kw):
            calls.append(len(data.y_train))
            out.metrics["val_accuracy"] = 0.1
        return out

    monkeypatch.setattr(automl.trial, "run_trial", collapsed)
    result = _search("collapsed", space=SHORT, max_trials=1)
    assert calls, "no refit ran"
    assert result.best_trial["trial_id"] != "refit"
    tags = _parent_tags(result)
    assert tags["automl.refit"].startswith("not kept: val_accuracy 0.1000")
    assert "automl.refit_run_id" not in tags
    board = result.leaderboard()
    row = board[board["trial"].eq("refit")].iloc[0]
    assert row["status"] == "FINISHED" and np.isnan(row["val_accuracy"])
    assert board.index[board["trial"].eq("refit")][0] == len(board) - 1  # ranked last
    assert _parent_tags(result)["automl.best_trial_id"] == result.best_trial["trial_id"]


def test_a_failed_refit_leaves_the_winner_standing(monkeypatch):
    import automl.trial

    real = automl.trial.run_trial

    def broken(cfg, data, **kw):
        if _is_refit(kw):
            raise MemoryError("out of memory in the refit")
        return real(cfg, data, **kw)

    monkeypatch.setattr(automl.trial, "run_trial", broken)
    result = _search("broken", max_trials=1)
    assert result.best_trial["trial_id"] == "0"
    assert result.test_metrics["test_accuracy"] > 0.7
    tags = _parent_tags(result)
    assert tags["automl.refit"].startswith("failed (MemoryError: out of memory in the refit)")
    runs = result.tracker.trial_runs(result.parent_run_id, "refit")
    assert [r.info.status for r in runs] == ["FAILED"]
    parent = result.tracker.client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"


def test_an_ensemble_that_won_is_not_refit():
    from automl.refit import build_search_refit

    tags = {}
    run = types.SimpleNamespace(data=types.SimpleNamespace(tags={}))
    tracker = types.SimpleNamespace(
        trial_runs=lambda parent, tid=None: [],
        set_tags=lambda run_id, t: tags.update(t),
        get_run=lambda run_id: run,  # Tracker.get_run
    )
    result = types.SimpleNamespace(
        parent_run_id="p", best_trial={"trial_id": "ensemble", "run_id": "e"}
    )
    out = build_search_refit(
        result, tracker, data=None, checkpoints=None, search_id="s", options=None
    )
    assert out is None
    assert tags["automl.refit"].startswith("skipped: the ensemble won")


def test_a_scratch_winner_is_not_refit():
    result = _search("scratch", space=SCRATCH)
    assert result.best_trial["trial_id"] in ("0", "1")
    assert _parent_tags(result)["automl.refit"].startswith(
        f"skipped: trial {result.best_trial['trial_id']} is a scratch trial"
    )
    assert result.tracker.trial_runs(result.parent_run_id, "refit") == []


def test_refit_must_be_a_bool():
    from automl.search.settings import SearchSettings

    with pytest.raises(SearchError, match="refit='yes' must be True or False"):
        SearchSettings(refit="yes").validate()


def test_ctrl_c_in_the_refit_leaves_nothing_running_and_the_same_command_refits(monkeypatch):
    import automl.trial

    real = automl.trial.run_trial

    def interrupted(cfg, data, **kw):
        if _is_refit(kw):
            raise KeyboardInterrupt
        return real(cfg, data, **kw)

    monkeypatch.setattr(automl.trial, "run_trial", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _search("ctrl-c", space=SHORT, max_trials=1)
    import mlflow

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("ctrl-c")
    runs = client.search_runs([exp.experiment_id])
    status = {r.data.tags.get("automl.trial_id", "search"): r.info.status for r in runs}
    assert status == {"search": "KILLED", "0": "FINISHED", "refit": "KILLED"}
    monkeypatch.setattr(automl.trial, "run_trial", real)
    result = _search("ctrl-c", space=SHORT, max_trials=1)  # the same command: the refit again
    board = result.leaderboard()
    assert sorted(board["trial"]) == ["0", "refit"]
    assert board["status"].eq("FINISHED").all() and result.best_trial["trial_id"] == "refit"
    assert _parent_tags(result)["automl.refit_run_id"] == result.best_trial["run_id"]
