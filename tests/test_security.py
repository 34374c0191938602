"""No unpickling of untrusted files, `.keras` files only in safe mode, the UI on localhost."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.robust_helpers import REPO, prebuilt_store

# The restricted .pth reader (it is its whole job to read pickles without unpickling them).
ALLOWED_TORCH_READER = "automl/backbones/torch_weights.py"
PICKLING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve"}


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            yield name, node, {k.arg: k.value for k in node.keywords}


def _sources():
    files = sorted((REPO / "automl").rglob("*.py"))
    assert files
    for f in files:
        rel = f.relative_to(REPO).as_posix()
        yield rel, ast.parse(f.read_text(), filename=rel)


def _is_const(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def test_no_code_unpickles_or_loads_unsafely():
    problems = []
    for rel, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                names.append(getattr(node, "module", None) or "")
                bad = {n.split(".")[0] for n in names} & PICKLING_MODULES
                if bad and rel != ALLOWED_TORCH_READER:
                    problems.append(f"{rel}:{node.lineno} imports {sorted(bad)}")
        for name, node, kw in _calls(tree):
            where = f"{rel}:{node.lineno}"
            if name == "load_model" and not _is_const(kw.get("safe_mode"), True):
                problems.append(f"{where} load_model without safe_mode=True")
            if name == "load" and isinstance(node.func, ast.Attribute):
                owner = getattr(node.func.value, "id", "")
                if owner in ("np", "numpy") and not _is_const(kw.get("allow_pickle"), False):
                    problems.append(f"{where} np.load without allow_pickle=False")
                if owner == "torch" and rel != ALLOWED_TORCH_READER:
                    problems.append(f"{where} torch.load (unpickles)")
                if owner == "yaml":
                    problems.append(f"{where} yaml.load (use yaml.safe_load)")
            if name == "enable_unsafe_deserialization":
                problems.append(f"{where} enables unsafe deserialization")
    assert problems == []


def test_a_keras_file_with_python_code_is_refused(tmp_path):
    """Safe mode in action: a checkpoint holding a Python lambda does not load."""
    import keras

    from automl.errors import ExportError
    from automl.export import load_run_model
    from automl.tracking import Tracker

    prebuilt_store(tmp_path)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda x: x * 2)])
    path = tmp_path / "evil.keras"
    model.save(path)
    t = Tracker(None, "sec")
    run = t.client.create_run(
        t.experiment_id, tags={"automl.kind": "trial", "automl.checkpoint": str(path)}
    )
    t.end_run(run.info.run_id, "FINISHED")
    with pytest.raises(ExportError, match=r"holds Python code \(a Lambda layer"):
        load_run_model(t, run.info.run_id)
    with pytest.raises(ExportError, match=r"run id 'nope' is not in"):
        load_run_model(t, "nope")


def test_ui_binds_to_localhost_unless_told_otherwise(monkeypatch, capsys):
    import subprocess

    from automl import cli

    seen = []

    class FakeServer:  # records the command instead of starting an MLflow server
        def __init__(self, cmd, *args, **kwargs):
            seen.append(cmd)

        def wait(self):
            return 0

    monkeypatch.setattr(subprocess, "Popen", FakeServer)
    assert cli.main(["ui"]) == 0
    assert seen[0][seen[0].index("--host") + 1] == "127.0.0.1"
    assert "http://127.0.0.1:5000" in capsys.readouterr().out
    assert "no authentication" not in capsys.readouterr().err  # localhost: no warning
    monkeypatch.setattr(cli, "_network_address", lambda: "192.0.2.7")
    assert cli.main(["ui", "--host", "0.0.0.0", "--port", "5001"]) == 0
    assert seen[1][seen[1].index("--host") + 1] == "0.0.0.0"
    out = capsys.readouterr()
    assert "http://192.0.2.7:5001" in out.out and "127.0.0.1" not in out.out
    assert out.err.count("no authentication") == 1, out.err


def test_ui_network_address_is_not_loopback_when_the_machine_has_a_network():
    from automl.cli import _network_address

    addr = _network_address()
    assert addr and addr != "0.0.0.0"


def _foreign_saved_model(path: Path) -> Path:
    """A SavedModel automl did not export (no assets/automl.json): loading it runs its graph."""
    import tensorflow as tf

    class Foreign(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
        def serve(self, x):
            return {"probabilities": tf.fill([tf.shape(x)[0], 2], 0.5)}

    m = Foreign()
    tf.saved_model.save(m, str(path), signatures={"serving_default": m.serve})
    return path


def test_predict_loads_a_foreign_saved_model_only_when_trusted(tmp_path, capsys):
    import json

    import numpy as np
    from PIL import Image

    from automl import cli
    from automl.errors import ExportError
    from automl.predict import predict

    model = _foreign_saved_model(tmp_path / "foreign")
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ExportError, match=r"is not signed by automl with your key.*--trust-model"):
        predict([img], model)
    Image.fromarray(img).save(tmp_path / "x.png")
    assert cli.main(["predict", str(tmp_path / "x.png"), "--model", str(model)]) == 2
    err = capsys.readouterr().err
    assert "--trust-model" in err and len(err.strip().splitlines()) == 1
    out = predict([img], model, trust_model=True)
    assert out[0]["predictions"][0]["label"] == "class_0"
    assert (
        cli.main(["predict", str(tmp_path / "x.png"), "--model", str(model), "--trust-model"]) == 0
    )
    # automl's metadata written by hand does not make it trusted (anyone can write a file).
    (model / "assets").mkdir(exist_ok=True)
    (model / "assets" / "automl.json").write_text(json.dumps({"class_names": ["a", "b"]}))
    with pytest.raises(ExportError, match=r"is not signed by automl with your key"):
        predict([img], model)
    assert predict([img], model, trust_model=True)[0]["predictions"][0]["label"] in ("a", "b")


def test_keras_floor_has_every_safe_mode_fix():
    text = (REPO / "pyproject.toml").read_text()
    assert '"keras>=3.14"' in text


def test_keras_tuner_state_is_json_only():
    """KerasTuner keeps its state in JSON (oracle.json, trial.json, tuner0.json): the
    installed version has no pickle in the code paths a search uses."""
    import keras_tuner

    src = Path(keras_tuner.__file__).parent / "src" / "engine"
    for name in ("oracle.py", "trial.py", "base_tuner.py", "stateful.py"):
        text = (src / name).read_text()
        assert "pickle" not in text, name
