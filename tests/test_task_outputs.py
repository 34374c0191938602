"""Multi-label and regression models after the search: export in every format with the task
saved beside the model, ``automl predict`` printing values / label sets, the MLflow pyfunc
answering a DataFrame with named columns, the ensemble averaging, test scores and reports.

Tiny hand-built models (resize -> mean colour -> Dense head), no search: each test runs in
seconds.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from automl.tasks import Classification, MultiLabel, Regression

SIZE = 16


def _model(units: int, activation: str, seed: int = 0):
    """Raw RGB images -> ``units`` outputs: the mean colour through a seeded Dense head."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(None, None, 3), name="image")
    x = keras.layers.Resizing(SIZE, SIZE, name="resize")(inputs)
    x = keras.layers.Rescaling(1 / 255.0)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(units, activation=activation, name="head_dense", dtype="float32")(x)
    return keras.Model(inputs, out)


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 24, 20, 3)).astype(np.uint8)


def _regression():
    task = Regression(target_names=["age", "price"]).fit(
        np.array([[10.0, 100.0], [50.0, 300.0], [30.0, 250.0]])
    )
    return task, _model(2, "linear")


def _multilabel():
    task = MultiLabel().fit([["cat"], ["dog", "cat"], ["sky"], []])
    task.set_thresholds([0.4, 0.5, 0.6])
    return task, _model(3, "sigmoid")


TASKS = {"regression": _regression, "multilabel": _multilabel}


def _expected(task, model, x):
    from automl.task_outputs import result_of

    outputs = np.asarray(model.predict(x.astype(np.float32), verbose=0))
    return outputs, [result_of(task, "<array>", o) for o in outputs]


def _close(got: list[dict], want: list[dict], tol: float) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert set(g) == set(w)
        if "values" in w:
            assert list(g["values"]) == list(w["values"])
            np.testing.assert_allclose(list(g["values"].values()), list(w["values"].values()),
                                       rtol=tol, atol=tol)  # fmt: skip
        else:
            assert g["labels"] == w["labels"]
            assert list(g["probabilities"]) == list(w["probabilities"])
            np.testing.assert_allclose(
                list(g["probabilities"].values()), list(w["probabilities"].values()), atol=tol
            )


FORMATS = [
    ("regression", "keras", "m.keras"),
    ("regression", "saved_model", "sm"),
    ("regression", "mlflow", "mlf"),
    ("regression", "tflite", "m.tflite"),
    ("regression", "onnx", "m.onnx"),
    ("multilabel", "keras", "m.keras"),
    ("multilabel", "saved_model", "sm"),
    ("multilabel", "mlflow", "mlf"),
    ("multilabel", "onnx", "m.onnx"),
]


@pytest.mark.parametrize(("kind", "fmt", "name"), FORMATS)
def test_export_parity_per_task(tmp_path, kind, fmt, name):
    """Each format, loaded back by automl predict, gives the Keras model's values / label
    sets: the task (target names, mean/std, labels, tuned thresholds) travels with it."""
    from automl.export import export_model
    from automl.predict import load_predictor, predict

    task, model = TASKS[kind]()
    x = _images(4)
    _, want = _expected(task, model, x)
    path = export_model(model, tmp_path / name, format=fmt, task=task)
    predictor = load_predictor(path)
    assert predictor.task is not None and predictor.task.to_config() == task.to_config()
    got = predict(list(x), predictor)
    _close(got, want, 1e-4)
    if kind == "regression":  # un-standardised: in the targets' units, not around 0
        assert abs(np.mean([r["values"]["price"] for r in got]) - 216.7) < 100


def test_classification_export_unchanged(tmp_path):
    """A classification export carries no task (its class names are its task) and predicts
    today's top-k list."""
    import zipfile

    from automl.export import export_model
    from automl.predict import load_predictor, predict

    model = _model(3, "softmax")
    path = export_model(model, tmp_path / "c.keras", class_names=["a", "b", "c"],
                        task=Classification().fit(["a", "b", "c"]))  # fmt: skip
    with zipfile.ZipFile(path) as z:
        meta = json.loads(z.read("automl.json"))
    assert meta == {"class_names": ["a", "b", "c"], "input": "RGB uint8/float 0-255, any size"}
    predictor = load_predictor(path)
    assert predictor.task is None
    out = predict(list(_images(2)), predictor, top_k=2)
    assert [len(r["predictions"]) for r in out] == [2, 2]
    assert {p["label"] for p in out[0]["predictions"]} <= {"a", "b", "c"}


@pytest.mark.parametrize("kind", ["regression", "multilabel"])
def test_pyfunc_returns_named_columns(tmp_path, kind):
    """mlflow.pyfunc of an MLflow export answers a DataFrame with the task's columns, in
    the targets' units (regression) / with the label set (multi-label)."""
    import mlflow.pyfunc

    from automl.export import export_model

    task, model = TASKS[kind]()
    x = _images(3).astype(np.float32)
    path = export_model(model, tmp_path / "mlf", format="mlflow", task=task)
    frame = mlflow.pyfunc.load_model(str(path)).predict(x)
    outputs = np.asarray(model.predict(x, verbose=0))
    want = task.to_frame(outputs)
    if kind == "regression":
        assert list(frame.columns) == ["age", "price"]
    else:
        assert list(frame.columns) == ["labels", "prob_cat", "prob_dog", "prob_sky"]
        assert frame["labels"].tolist() == want["labels"].tolist()
    num = [c for c in want.columns if c != "labels"]
    np.testing.assert_allclose(frame[num].to_numpy(), want[num].to_numpy(), atol=1e-5)


@pytest.mark.parametrize("kind", ["regression", "multilabel"])
def test_cli_predict_prints_task_output(tmp_path, kind, capsys):
    """`automl predict` prints values (regression) or label sets with probabilities
    (multi-label), and the same as JSON with --json."""
    from PIL import Image

    from automl.cli import main
    from automl.export import export_model

    task, model = TASKS[kind]()
    x = _images(2)
    files = []
    for i, im in enumerate(x):
        files.append(str(tmp_path / f"img{i}.png"))
        Image.fromarray(im).save(files[-1])
    path = export_model(model, tmp_path / "m.keras", task=task)
    outputs = np.asarray(model.predict(x.astype(np.float32), verbose=0))
    assert main(["predict", *files, "--model", str(path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    if kind == "regression":
        values = task.decode(outputs)
        assert lines == [f"{f}: age {v[0]:.4g}, price {v[1]:.4g}" for f, v in zip(files, values)]
    else:
        sets = [
            [j for j in np.argsort(-o, kind="mergesort") if o[j] >= task.thresholds_[j]]
            for o in outputs
        ]
        assert lines == [
            f"{f}: " + (", ".join(f"{task.labels_[j]} ({o[j]:.4f})" for j in s) or "(no label)")
            for f, o, s in zip(files, outputs, sets)
        ]
    assert main(["predict", *files, "--model", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    key = "values" if kind == "regression" else "probabilities"
    assert [r["image"] for r in data] == files and all(key in r for r in data)
    if kind == "multilabel":
        assert [r["labels"] for r in data] == [[task.labels_[j] for j in s] for s in sets]
    else:
        got = [list(r["values"].values()) for r in data]
        np.testing.assert_allclose(got, task.decode(outputs), rtol=1e-5)
