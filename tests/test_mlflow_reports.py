"""What a tiny search leaves in MLflow, read back through MlflowClient: plots, per-class scores,
configs, datasets, leaderboard, the best model as a pyfunc model, the registry, and retraining."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import yaml

import automl
from automl.cli import build_parser, main
from tests.conftest import TINY_SPACE

SPACE = TINY_SPACE
REGISTERED = "tiny-classifier"


def _image_folder(root):
    """48 seeded 32x32 PNGs in 3 colour classes (a folder source can be re-run from config.yaml)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    y = np.arange(48) % 3
    x = rng.integers(0, 60, size=(48, 32, 32, 3)).astype(np.uint8)
    for c in range(3):
        x[y == c, :, :, c] += 150
    for i, (img, label) in enumerate(zip(x, y)):
        d = root / f"class_{label}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    root = tmp_path_factory.mktemp("reports")
    uri = f"sqlite:///{root}/mlruns/mlflow.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("AUTOML_CACHE", str(root / "cache"))
        result = automl.search(
            data=str(_image_folder(root / "images")),
            space=copy.deepcopy(SPACE),
            max_trials=2,
            tuner="random",
            experiment="reports",
            tracking_uri=uri,
            register=REGISTERED,
        )
    return result, uri


@pytest.fixture
def client(searched):
    from mlflow.tracking import MlflowClient

    return MlflowClient(searched[1])


def _artifacts(client, run_id, path=None) -> set[str]:
    out = set()
    for f in client.list_artifacts(run_id, path):
        out |= _artifacts(client, run_id, f.path) if f.is_dir else {f.path}
    return out


def _trials(result):
    board = result.leaderboard()
    assert len(board) == 2 and board["status"].eq("FINISHED").all()
    return list(board["run_id"])


def test_trial_runs_hold_plots_scores_summary_and_timing(searched, client):
    result, _ = searched
    for run_id in _trials(result):
        run = client.get_run(run_id)
        arts = _artifacts(client, run_id)
        assert {
            "plots/learning_curve.png",
            "plots/confusion_matrix_validation.png",
            "per_class_validation.json",
            "model_summary.txt",
            "config.yaml",
        } <= arts
        per_class = json.loads(_read(client, run_id, "per_class_validation.json"))
        for name in ("class_0", "class_1", "class_2"):
            assert set(per_class[name]) >= {"precision", "recall", "f1-score", "support"}
        assert "accuracy" in per_class and "macro avg" in per_class
        summary = _read(client, run_id, "model_summary.txt")
        assert "Total params" in summary and "\x1b[" not in summary
        m = run.data.metrics
        assert m["phase1_seconds"] > 0 and m["phase2_seconds"] > 0
        # per-epoch metrics of both phases (steps 0, 1 in phase 1, step 2 in phase 2)
        hist = client.get_metric_history(run_id, "val_loss")
        assert {h.step for h in hist} == {0, 1, 2}
        phases = {h.step: h.value for h in client.get_metric_history(run_id, "phase")}
        assert phases == {0: 1.0, 1: 1.0, 2: 2.0}
        # best_val_loss (a UI column, the leaderboard's val_loss) is the best epoch's, not the last's
        at_best = [h.value for h in hist if h.step == int(m["best_epoch"])]
        assert any(v == pytest.approx(m["best_val_loss"]) for v in at_best)


def _read(client, run_id, path) -> str:
    import tempfile
    from pathlib import Path

    dst = tempfile.mkdtemp()
    return Path(client.download_artifacts(run_id, path, dst)).read_text()


def test_plots_are_real_pngs(searched, client, tmp_path):
    from PIL import Image

    result, _ = searched
    run_id = _trials(result)[0]
    for png in ("plots/learning_curve.png", "plots/confusion_matrix_validation.png"):
        path = client.download_artifacts(run_id, png, str(tmp_path))
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 200
    path = client.download_artifacts(result.parent_run_id, "plots/search.png", str(tmp_path))
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 300


def test_trial_config_is_rerunnable_yaml(searched, client):
    result, _ = searched
    run_id = _trials(result)[0]
    run = client.get_run(run_id)
    cfg = yaml.safe_load(_read(client, run_id, "config.yaml"))
    assert cfg["automl_config"] == 1
    hp = cfg["hyperparameters"]
    assert hp["backbone"] == "mobilenet_v3_small" and hp["image_size"] == 32
    assert hp["learning_rate"] == pytest.approx(float(run.data.params["learning_rate"]))
    assert cfg["seed"] == int(run.data.params["seed"])
    data = cfg["data"]
    assert data["source"].endswith("images")  # a folder: loadable again by path
    assert data["digest"] == result.data.digest()
    assert data["split_seed"] == 0 and data["store_size"] == 32
    assert data["class_names"] == ["class_0", "class_1", "class_2"]
    # the hyperparameters rebuild the TrialConfig exactly
    from automl.trial import TrialConfig

    assert TrialConfig.from_values(hp).to_dict() == hp


def test_runs_have_dataset_inputs(searched, client):
    result, _ = searched
    trial = client.get_run(_trials(result)[0])
    contexts = {}
    for di in trial.inputs.dataset_inputs:
        ctx = {t.key: t.value for t in di.tags}["mlflow.data.context"]
        contexts[ctx] = di.dataset
    assert set(contexts) == {"train", "validation"}
    train = contexts["train"]
    assert train.name == "images-train" and len(train.digest) == 16
    assert train.source_type == "automl" and json.loads(train.source)["uri"].endswith("images")
    profile = json.loads(train.profile)
    assert profile["num_rows"] == len(result.data.y_train)
    assert sum(profile["class_counts"].values()) == len(result.data.y_train)
    assert set(profile["class_counts"]) == {"class_0", "class_1", "class_2"}
    parent = client.get_run(result.parent_run_id)
    ctxs = {
        {t.key: t.value for t in di.tags}["mlflow.data.context"]
        for di in parent.inputs.dataset_inputs
    }
    assert ctxs == {"train", "validation", "test"}


def test_search_run_holds_space_leaderboard_plot_scores(searched, client):
    import io

    import pandas as pd

    result, _ = searched
    parent = client.get_run(result.parent_run_id)
    arts = _artifacts(client, result.parent_run_id)
    assert {
        "search_space.yaml",
        "leaderboard.csv",
        "plots/search.png",
        "plots/confusion_matrix_test.png",
        "per_class_test.json",
        "best_model/model.keras",
    } <= arts
    p = parent.data.params
    assert p["tuner"] == "random" and p["max_trials"] == "2" and p["searched"]
    board = pd.read_csv(io.StringIO(_read(client, result.parent_run_id, "leaderboard.csv")))
    assert len(board) == 2 and {"trial", "val_accuracy", "learning_rate", "run_id"} <= set(
        board.columns
    )
    assert parent.data.tags["automl.best_run_id"] == board["run_id"][0]
    assert parent.data.tags["automl.best_trial_id"] == str(board["trial"][0])
    m = parent.data.metrics
    assert 0 <= m["test_accuracy"] <= 1 and m["best_val_accuracy"] == pytest.approx(
        board["val_accuracy"][0]
    )
    assert parent.info.status == "FINISHED"


def test_best_model_is_a_pyfunc_model_with_signature(searched, client, monkeypatch):
    import mlflow

    result, uri = searched
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    model_uri = client.get_run(result.parent_run_id).data.tags["automl.best_model_uri"]
    logged = client.get_logged_model(model_uri.split("/")[-1])
    assert logged.source_run_id == result.parent_run_id and logged.status.to_proto() == 2  # READY
    pm = mlflow.pyfunc.load_model(model_uri)
    sig = pm.metadata.signature
    assert sig is not None and sig.inputs.inputs[0].shape == (-1, 32, 32, 3)
    assert pm.metadata.saved_input_example_info is not None
    x = result.data.x_test[:4]
    frame = pm.predict(x)  # a DataFrame: the top class, then each class's probability
    names = ["class_0", "class_1", "class_2"]
    assert list(frame.columns) == ["label", *(f"prob_{n}" for n in names)]
    probs = frame.iloc[:, 1:].to_numpy()
    assert probs.shape == (4, 3)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert frame["label"].tolist() == [names[i] for i in probs.argmax(axis=1)]
    assert pm.metadata.metadata["class_names"] == names


def test_best_model_is_registered(searched, client, monkeypatch):
    import mlflow

    result, uri = searched
    versions = client.search_model_versions(f"name='{REGISTERED}'")
    assert len(versions) == 1
    v = versions[0]
    assert v.run_id == result.parent_run_id and str(v.version) == "1"
    tags = client.get_run(result.parent_run_id).data.tags
    assert tags["automl.registered_model"] == f"{REGISTERED}/1"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    pm = mlflow.pyfunc.load_model(f"models:/{REGISTERED}/1")
    assert pm.predict(result.data.x_test[:2]).shape == (2, 4)  # label + 3 probabilities


def test_cli_flags_parse():
    a = build_parser().parse_args(["search", "--register", "cats"])
    assert a.register == "cats"
    a = build_parser().parse_args(["retrain", "--run-id", "abc", "--full"])
    assert a.run_id == "abc" and a.full
    a = build_parser().parse_args(["ui"])
    assert a.host == "127.0.0.1" and a.port == 5000


def test_register_name_is_checked_before_training(tiny_arrays):
    from automl.errors import SearchError

    with pytest.raises(SearchError, match="register"):
        automl.search(data=tiny_arrays, space=copy.deepcopy(SPACE), max_trials=1, register=" ")


def test_retrain_full_from_the_cli_logs_a_linked_run(searched, client, capsys):
    result, uri = searched
    trial_id = _trials(result)[0]
    original = client.get_run(trial_id)
    args = ["retrain", "--run-id", trial_id, "--full", "--tracking-uri", uri]
    rc = main(args + ["--register", "tiny-retrained"])
    assert rc == 0
    captured = capsys.readouterr()
    out = captured.out
    new_id = out.split(" as run ")[1].split(":")[0]
    new = client.get_run(new_id)
    assert "retrain of trial " in captured.err and " epoch 1/" in captured.err  # progress lines
    # registered after its model is logged: the version links to the new run
    assert "registered: tiny-retrained/1 (Model Registry)" in out
    assert new.data.tags["automl.registered_model"] == "tiny-retrained/1"
    version = client.get_model_version("tiny-retrained", "1")
    assert version.run_id == new_id and version.source == new.data.tags["automl.model_uri"]
    assert new.data.tags["automl.retrained_from"] == trial_id
    assert new.data.tags["automl.kind"] == "retrain" and new.data.tags["automl.full"] == "True"
    assert new.data.tags["automl.same_data"] == "True"
    assert "mlflow.parentRunId" not in new.data.tags  # not a trial of the search
    assert new.info.experiment_id == original.info.experiment_id
    assert new.info.status == "FINISHED"
    # full: train + validation, the trial replayed up to its best epoch (the last one kept)
    epochs = int(original.data.metrics["best_epoch"]) + 1
    assert new.data.params["stop_after"] == str(epochs)
    assert new.data.metrics["epochs_run"] == epochs
    assert new.data.metrics["best_epoch"] == epochs - 1
    assert 0 <= new.data.metrics["test_accuracy"] <= 1
    train = [
        di.dataset
        for di in new.inputs.dataset_inputs
        if {t.key: t.value for t in di.tags}["mlflow.data.context"] == "train"
    ][0]
    n = len(result.data.y_train) + len(result.data.y_val)
    assert json.loads(train.profile)["num_rows"] == n
    arts = _artifacts(client, new_id)
    assert {"config.yaml", "plots/learning_curve.png", "plots/confusion_matrix_test.png"} <= arts
    cfg = yaml.safe_load(_read(client, new_id, "config.yaml"))
    assert cfg["retrained_from"] == trial_id and cfg["full"] is True
    # the leaderboard of the search is unchanged
    assert len(result.leaderboard()) == 2
