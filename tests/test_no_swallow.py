"""Failures are never swallowed: a failed registration fails the command (results kept), a trial
that cannot be retrained is not FINISHED, an export never silently loses its class names."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import TINY_SPACE
from tests.robust_helpers import (
    FakeTrials,
    fast_search,
    prebuilt_store,
    runs_by_trial,
    searched_trial,
    settings,
)


def _registry_down(*args, **kwargs):
    raise RuntimeError("registry is down\nsecond line")


def test_register_failure_exits_non_zero_and_keeps_the_search(monkeypatch, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    import automl.reports as reports
    from automl import cli

    fast_search(monkeypatch, tmp_path, FakeTrials())
    monkeypatch.setattr(reports, "log_mlflow_model", _registry_down)
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    rc = cli.main(
        ["search", "--space", str(space), "--max-trials", "1", "--trials-per-worker", "0"]
        + ["--register", "cats", "--experiment", "reg", "--tuner", "random", "--quiet"]
    )
    out = capsys.readouterr()
    assert rc == 1
    assert "FINISHED" in out.out and "best trial 0" in out.out  # the results are shown
    exp_id = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db").get_experiment_by_name("reg")
    link = f"http://127.0.0.1:5000/#/experiments/{exp_id.experiment_id}/runs?workflowType=machine_learning"
    assert f"then open:    {link}" in out.out  # the runs table, not MLflow's GenAI overview
    err = out.err.strip().splitlines()[-1]
    assert err.startswith("automl: error: could not register the best model as 'cats'")
    assert "RuntimeError: registry is down" in err and "runs and best model are kept" in err
    parents, trials = runs_by_trial(f"sqlite:///{tmp_path}/mlruns/mlflow.db", "reg")
    assert trials == {"0": ["FINISHED"]}
    assert parents[0].info.status == "FINISHED"
    assert "registry is down" in parents[0].data.tags["automl.register_error"]


def test_register_failure_raises_from_python_with_the_result(monkeypatch, tmp_path, tiny_arrays):
    import automl.reports as reports
    from automl.data import load_data
    from automl.errors import RegistrationError
    from automl.space import load_space

    search_mod = fast_search(monkeypatch, tmp_path, FakeTrials())
    monkeypatch.setattr(reports, "log_mlflow_model", _registry_down)
    with pytest.raises(
        RegistrationError, match=r"could not register the best model as 'dogs'"
    ) as e:
        search_mod.run_search(
            load_space(TINY_SPACE),
            load_data(tiny_arrays),
            settings("regpy", max_trials=1, register="dogs"),
        )
    board = e.value.result.leaderboard()
    assert list(board["status"]) == ["FINISHED"]


def test_a_trial_whose_config_cannot_be_logged_is_not_finished(monkeypatch, tmp_path, tiny_arrays):
    """retrain needs config.yaml: a trial without one fails (and is retried like a crash)."""
    import automl.reports as reports
    from automl.data import load_data
    from automl.errors import SearchError
    from automl.space import load_space

    search_mod = fast_search(monkeypatch, tmp_path, FakeTrials())

    def broken(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(reports, "trial_config", broken)
    with pytest.raises(SearchError, match=r"no completed trial"):
        search_mod.run_search(
            load_space(TINY_SPACE),
            load_data(tiny_arrays),
            settings("cfg", max_trials=1, max_retries=1),
        )
    _, trials = runs_by_trial(f"sqlite:///{tmp_path}/mlruns/mlflow.db", "cfg")
    assert trials == {"0": ["FAILED", "FAILED"]}  # tried twice, never FINISHED


def test_class_names_of_raises_instead_of_returning_nothing(tmp_path):
    from automl.errors import ExportError
    from automl.export import class_names_of
    from automl.tracking import Tracker

    prebuilt_store(tmp_path)
    t = Tracker(None, "names")
    run = t.client.create_run(t.experiment_id, tags={"automl.kind": "search"})
    with pytest.raises(ExportError, match=r"class names of run .* cannot be read .*class_names"):
        class_names_of(t, run.info.run_id)
    t.log_dict(run.info.run_id, {"class_names": ["cat", "dog"]}, "class_names.json")
    assert class_names_of(t, run.info.run_id) == ["cat", "dog"]


def test_retrain_register_failure_exits_1_and_finishes_its_run(
    monkeypatch, tmp_path, image_folder, capsys
):
    """The retrain succeeded: its run is FINISHED (not left RUNNING), tagged with the registry's
    error, its model kept; the command still fails, on one line."""
    from mlflow.tracking import MlflowClient

    from automl import cli
    from automl.tracking import Tracker

    trial_run = searched_trial(monkeypatch, tmp_path, image_folder)
    monkeypatch.setattr(MlflowClient, "create_registered_model", _registry_down)
    capsys.readouterr()
    rc = cli.main(["retrain", "--run-id", trial_run, "--register", "cats", "-q"])
    out = capsys.readouterr()
    assert rc == 1
    t = Tracker(f"sqlite:///{tmp_path}/mlruns/mlflow.db", "retrain")
    runs = t.client.search_runs([t.experiment_id], "tags.`automl.kind` = 'retrain'")
    assert [r.info.status for r in runs] == ["FINISHED"]
    tags = runs[0].data.tags
    assert tags["automl.register_error"] == (
        "could not register the retrained model as 'cats' (RuntimeError: registry is down)"
    )
    assert out.out.startswith(f"retrained run {trial_run} as run {runs[0].info.run_id}: ")
    err = out.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"automl: error: {tags['automl.register_error']}")
    assert tags["automl.model_uri"] in err[0]  # the model is kept: its URI to register it
    assert t.client.get_logged_model(tags["automl.model_uri"].split("/")[-1]).source_run_id == (
        runs[0].info.run_id
    )


@pytest.mark.parametrize(
    "where, error, status",
    [
        ("automl.trial.run_trial", RuntimeError("boom"), "FAILED"),
        ("automl.reports.evaluation_reports", OSError("No space left on device"), "FAILED"),
        ("automl.trial.run_trial", KeyboardInterrupt(), "KILLED"),
    ],
)
def test_a_failed_retrain_does_not_leave_its_run_running(
    monkeypatch, tmp_path, image_folder, where, error, status
):
    import automl
    from automl.tracking import Tracker

    def fail(*args, **kwargs):
        raise error

    trial_run = searched_trial(monkeypatch, tmp_path, image_folder)
    monkeypatch.setattr(where, fail)
    with pytest.raises(type(error)):
        automl.retrain(trial_run, verbose=0)
    t = Tracker(f"sqlite:///{tmp_path}/mlruns/mlflow.db", "retrain")
    runs = t.client.search_runs([t.experiment_id], "tags.`automl.kind` = 'retrain'")
    assert [r.info.status for r in runs] == [status]
    reason = runs[0].data.tags["automl.failure_reason"]
    assert reason == ("interrupted" if status == "KILLED" else f"{type(error).__name__}: {error}")
    traceback = [f.path for f in t.client.list_artifacts(runs[0].info.run_id, "error")]
    assert traceback == ([] if status == "KILLED" else ["error/traceback.txt"])
