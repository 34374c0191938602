"""MLflow opens automl's experiments in the model-training view: the experiment-kind tag on
every experiment automl creates, and the deep link to the runs table printed by `automl ui`."""

from __future__ import annotations

from tests.robust_helpers import prebuilt_store


def test_experiments_automl_creates_are_model_training_experiments(tmp_path):
    from automl.tracking import Tracker

    prebuilt_store(tmp_path)
    t = Tracker(None, "kind")
    exp = t.client.get_experiment(t.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"


def test_ui_prints_the_link_to_the_latest_search(tmp_path, monkeypatch, capsys):
    import subprocess

    from automl import cli
    from automl.tracking import Tracker

    class FakeServer:  # records nothing, starts nothing
        def __init__(self, cmd, *args, **kwargs):
            pass

        def wait(self):
            return 0

    monkeypatch.setattr(subprocess, "Popen", FakeServer)
    prebuilt_store(tmp_path)
    assert cli.main(["ui"]) == 0  # no search yet: no link
    assert "#/experiments/" not in capsys.readouterr().out
    older, newer = Tracker(None, "older"), Tracker(None, "newer")
    newer.start_search("n", {}, {"mlflow.runName": "search-newer"})
    older.start_search("o", {}, {"mlflow.runName": "search-older"})  # the latest search
    Tracker(None, "other").client.create_run(older.experiment_id)  # not a search run
    assert cli.main(["ui", "--port", "5002"]) == 0
    out = capsys.readouterr().out
    link = f"http://127.0.0.1:5002/#/experiments/{older.experiment_id}/runs?workflowType=machine_learning"
    assert f"the search's runs: {link}" in out
    assert cli.main(["ui", "--experiment", "newer"]) == 0
    assert f"/#/experiments/{newer.experiment_id}/runs?workflowType" in capsys.readouterr().out
