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
    ("multilabel", "tflite", "m.tflite"),
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


def _classification():
    return Classification.of_names(["cat", "dog", "sky"]), _model(3, "softmax")


@pytest.mark.parametrize("kind", ["regression", "multilabel", "classification"])
def test_pyfunc_returns_named_columns(tmp_path, kind):
    """mlflow.pyfunc of an MLflow export answers a DataFrame with the task's columns, in
    the targets' units (regression) / with the label set (multi-label) / with the top class
    (classification), and the signature names those columns."""
    import mlflow.pyfunc

    from automl.export import export_model

    task, model = {**TASKS, "classification": _classification}[kind]()
    x = _images(3).astype(np.float32)
    names = {"class_names": task.classes_} if kind == "classification" else {}
    path = export_model(model, tmp_path / "mlf", format="mlflow", task=task, **names)
    loaded = mlflow.pyfunc.load_model(str(path))
    frame = loaded.predict(x)
    outputs = np.asarray(model.predict(x, verbose=0))
    want = task.to_frame(outputs)
    columns = {
        "regression": ["age", "price"],
        "multilabel": ["labels", "prob_cat", "prob_dog", "prob_sky"],
        "classification": ["label", "prob_cat", "prob_dog", "prob_sky"],
    }[kind]
    assert list(frame.columns) == columns
    assert loaded.metadata.get_output_schema().input_names() == columns
    text = [c for c in ("label", "labels") if c in columns]
    assert frame[text].values.tolist() == want[text].values.tolist()
    if kind == "classification":
        assert frame["label"].tolist() == [task.classes_[i] for i in outputs.argmax(axis=1)]
    num = [c for c in want.columns if c not in text]
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


# --- after the search: bundles and runs built directly ----------------------------------------
def _bundle(task, y_train, y_val, y_test, n: int = 8):
    """A DataBundle of ``task``'s encoded targets."""
    from automl.data import DataBundle

    names = {"regression": task.output_names, "multilabel": lambda: task.labels_}.get(
        task.name, lambda: task.classes_
    )()
    data = DataBundle(
        "tiny", "arrays", names,
        _images(len(y_train), 1), task.encode(y_train),
        _images(len(y_val), 2), task.encode(y_val),
        _images(len(y_test), 3), task.encode(y_test),
        task=task,
    )  # fmt: skip
    return data


def _regression_bundle():
    rng = np.random.default_rng(0)
    y = rng.uniform(0, 90, (24, 2))
    task = Regression(target_names=["age", "price"]).fit(y[:8])
    return task, _bundle(task, y[:8], y[8:16], y[16:])


def _multilabel_bundle():
    rows = [["cat"], ["dog"], ["cat", "sky"], ["sky"], ["dog", "cat"], [], ["sky", "dog"], ["cat"]]
    task = MultiLabel().fit(rows)
    return task, _bundle(task, rows, rows, rows)


def test_ensemble_of_two_regression_models_averages_values(tmp_path):
    """Two regression members whose average is exactly the validation targets: the
    ensemble keeps both, half and half, its model outputs their average, and its val_mae
    (in the targets' units) is 0 where each member's is not."""
    from automl.ensemble import select
    from automl.export import export_model

    task, data = _regression_bundle()
    members = [_model(2, "linear", seed=s) for s in (1, 2)]
    x = np.asarray(data.x_val[:])
    outs = [np.asarray(m.predict(x.astype(np.float32), verbose=0)) for m in members]
    y_val = ((outs[0] + outs[1]) / 2).astype(np.float64)
    paths = {
        f"t{i}": export_model(m, tmp_path / f"t{i}.keras", task=task) for i, m in enumerate(members)
    }
    out = select(paths, x, y_val, objective="val_mae", task=task)
    assert out.kept and sorted(out.trial_ids) == ["t0", "t1"]
    assert out.weights == [0.5, 0.5]
    assert out.scores["val_mae"] == pytest.approx(0.0, abs=1e-4)
    assert out.best_single["val_mae"] > 0.01
    assert set(out.scores) == {"val_mae", "val_rmse", "val_r2", "val_loss"}
    mixed = np.asarray(out.model.predict(x.astype(np.float32), verbose=0))
    np.testing.assert_allclose(mixed, y_val, atol=1e-4)


class _Recorder:
    """A tracker that records what the closing steps log."""

    def __init__(self):
        self.metrics, self.dicts, self.tags, self.artifacts = {}, {}, {}, []

    def log_metrics(self, run_id, metrics, step=0):
        self.metrics.update(metrics)

    def log_dict(self, run_id, d, name):
        self.dicts[name] = d

    def set_tags(self, run_id, tags):
        self.tags.update(tags)

    def log_artifact(self, run_id, path, folder=None):
        self.artifacts.append(f"{folder}/{path.name}" if folder else path.name)

    def end_run(self, run_id, status="FINISHED"):
        self.tags["status"] = status

    def trial_runs(self, parent_id):
        return []  # no trial capped its validation: the whole test split is scored


def _closing(task, data, model, objective, val_score):
    import types

    from automl.search.result import Closing

    best = {"trial_id": "t1", "run_id": "r1", "metrics": {objective: val_score}}
    result = types.SimpleNamespace(
        parent_run_id="p", objective=objective, best_trial=best, test_metrics={}, task=None
    )
    tracker = _Recorder()
    c = Closing(result, tracker, data, None, None, None, model_in_memory=("t1", {}, model))
    return c, tracker


def test_score_test_regression_scores_in_the_targets_units():
    """score_test logs every regression objective on the test split (MAE in the targets'
    units), the val-to-test gap on the objective, and the task config."""
    from automl import metrics
    from automl.search.result import score_test

    task, data = _regression_bundle()
    model = _model(2, "linear", seed=3)
    c, tracker = _closing(task, data, model, "val_mae", 7.0)
    score_test(c)
    out = np.asarray(model.predict(np.asarray(data.x_test[:]).astype(np.float32), verbose=0))
    want = metrics.mae(task.decode(data.y_test), task.decode(out))
    m = c.result.test_metrics
    assert set(m) == {"test_mae", "test_rmse", "test_r2", "test_loss", "val_test_gap"}
    assert m["test_mae"] == pytest.approx(want) and want > 1.0  # units, not standardised
    assert m["val_test_gap"] == pytest.approx(7.0 - want)
    assert tracker.metrics["best_val_mae"] == 7.0 and "test_accuracy" not in tracker.metrics
    assert tracker.dicts["task.json"] == task.to_config()
    assert tracker.tags["automl.best_trial_id"] == "t1"


def test_score_test_multilabel_tunes_thresholds_on_validation():
    """The thresholds are tuned on the validation split, saved (task.json, result.task) and
    used for the test macro-F1; the data's own task keeps its 0.5 thresholds."""
    from automl import metrics
    from automl.search.result import score_test

    task, data = _multilabel_bundle()
    model = _model(3, "sigmoid", seed=4)
    c, tracker = _closing(task, data, model, "val_macro_f1", 0.5)
    score_test(c)
    val = np.asarray(model.predict(np.asarray(data.x_val[:]).astype(np.float32), verbose=0))
    tuned = metrics.tune_thresholds(data.y_val, val)
    assert not np.allclose(tuned, 0.5)
    np.testing.assert_allclose(tracker.dicts["task.json"]["thresholds"], tuned)
    np.testing.assert_allclose(c.result.task.thresholds_, tuned)
    np.testing.assert_allclose(task.thresholds_, 0.5)
    test = np.asarray(model.predict(np.asarray(data.x_test[:]).astype(np.float32), verbose=0))
    want = metrics.macro_f1(data.y_test, (test >= tuned).astype(int))
    assert c.result.test_metrics["test_macro_f1"] == pytest.approx(want)
    assert {"test_micro_f1", "test_auc", "test_loss"} <= set(c.result.test_metrics)


def test_search_result_predict_and_evaluate_per_task():
    """SearchResult.predict gives values in the targets' units / label sets; evaluate the
    task's scores on targets as given to the search."""
    from automl import metrics
    from automl.search.result import SearchResult

    task, data = _regression_bundle()
    model = _model(2, "linear", seed=5)
    result = SearchResult("sqlite:///unused.db", "e", "p", objective="val_mae", data=data)
    result._model = model
    x = np.asarray(data.x_test[:])
    out = np.asarray(model.predict(x.astype(np.float32), verbose=0))
    np.testing.assert_allclose(result.predict(x), task.decode(out), rtol=1e-5)
    y = task.decode(data.y_test)
    scores = result.evaluate(x, y)
    assert set(scores) == {"mae", "rmse", "r2", "loss", "n"}
    assert scores["mae"] == pytest.approx(metrics.mae(y, task.decode(out)), rel=1e-5)

    mtask, mdata = _multilabel_bundle()
    mtask = MultiLabel().fit([["cat"], ["dog"], ["sky"]]).set_thresholds([0.3, 0.5, 0.9])
    result = SearchResult("sqlite:///unused.db", "e", "p", data=mdata, task=mtask)
    result._model = _model(3, "sigmoid", seed=6)
    probs = np.asarray(result._model.predict(x.astype(np.float32), verbose=0))
    assert result.predict(x) == mtask.decode(probs)
    assert set(result.evaluate(x, [["cat"]] * len(x))) == {
        "macro_f1",
        "micro_f1",
        "auc",
        "loss",
        "n",
    }


@pytest.mark.parametrize(
    ("kind", "files"),
    [
        ("regression", ["plots/predicted_vs_true_test.png", "plots/residuals_test.png"]),
        ("multilabel", ["plots/per_label_test.png"]),
    ],
)
def test_test_reports_per_task(kind, files):
    """The test reports of a multi-label or regression search are the task's plots and
    tables, no confusion matrix."""
    from automl.reports import evaluation_reports

    task, data = _regression_bundle() if kind == "regression" else _multilabel_bundle()
    model = _model(task.units_, "linear" if kind == "regression" else "sigmoid")
    tracker = _Recorder()
    evaluation_reports(tracker, "p", model, data.x_test, data.y_test, data.class_names,
                       split="test", task=task)  # fmt: skip
    assert tracker.artifacts == files
    table = "regression_scores_test.json" if kind == "regression" else "per_label_scores_test.json"
    assert list(tracker.dicts) == [table]


def test_leaderboard_shows_the_task_objective_columns():
    """A regression search's leaderboard has val_mae (and the other objectives its trials
    logged) beside the usual columns; a classification search's columns are unchanged."""
    from automl.tracking import SCORE_COLUMNS, Tracker

    t = Tracker(None, "board")
    cls_parent = t.start_search("s1", {}, {})
    run = t.start_trial(cls_parent, "s1", "0", {"lr": 0.1})
    t.log_metrics(run, {"best_val_accuracy": 0.5, "best_val_loss": 1.0})
    t.end_run(run)
    cols = list(t.leaderboard(cls_parent).columns)
    assert cols[2 : 2 + len(SCORE_COLUMNS)] == SCORE_COLUMNS

    parent = t.start_search("s2", {}, {})
    for i, mae in enumerate([3.0, 2.0]):
        run = t.start_trial(parent, "s2", str(i), {"lr": 0.1})
        t.log_metrics(run, {"best_val_loss": 0.5 + i, "best_val_mae": mae, "best_val_r2": 0.5})
        t.end_run(run)
    board = t.leaderboard(parent, "val_mae")
    cols = list(board.columns)
    assert cols[2:8] == ["val_accuracy", "val_loss", "accuracy", "loss", "val_mae", "val_r2"]
    assert sorted(board["val_mae"].tolist()) == [2.0, 3.0]


def test_export_of_a_run_reads_the_tuned_task():
    """`automl export RUN` saves the search's task.json (thresholds tuned after the search)
    rather than the one in the trial's model file (thresholds 0.5 when it was written)."""
    from automl.export import export_model, task_of_run
    from automl.tracking import Tracker

    task, model = _multilabel()
    t = Tracker(None, "export-task")
    parent = t.start_search("s", {}, {})
    run = t.start_trial(parent, "s", "0", {})
    ckpt = export_model(model, "ckpt.keras", task=MultiLabel().fit([["cat"], ["dog"], ["sky"]]))
    t.set_tags(run, {"automl.checkpoint": str(ckpt.resolve())})
    assert task_of_run(t, run).thresholds_.tolist() == [0.5, 0.5, 0.5]  # no task.json yet
    t.log_dict(parent, task.to_config(), "task.json")
    assert task_of_run(t, run).to_config() == task.to_config()
    assert task_of_run(t, parent).thresholds_.tolist() == [0.4, 0.5, 0.6]
    plain = t.start_search("c", {}, {})
    assert task_of_run(t, plain) is None  # a classification search: its class names


def test_refit_is_checked_on_the_task_objective():
    """A regression refit is kept within 25 % of the winner's val_mae, a multi-label one
    within 0.02 of its macro-F1; classification still checks val_accuracy."""
    from automl.refit import _check

    key, ok = _check(_regression()[0], "val_mae")
    assert key == "val_mae" and ok(2.4, 2.0) and not ok(2.6, 2.0)
    key, ok = _check(_multilabel()[0], "val_macro_f1")
    assert key == "val_macro_f1" and ok(0.79, 0.8) and not ok(0.7, 0.8)
    key, ok = _check(Classification().fit(["a", "b"]), "val_loss")
    assert key == "val_accuracy" and ok(0.99, 1.0) and not ok(0.9, 1.0)


def test_search_report_names_the_task_winner():
    """The search's note gives a regression winner's val_mae and test MAE (lower is better
    for the report's best-so-far)."""
    import types

    import pandas as pd

    from automl.search_report import parent_note
    from automl.task_outputs import lower_is_better

    assert lower_is_better("val_mae") and lower_is_better("val_loss")
    assert not lower_is_better("val_r2") and not lower_is_better("val_accuracy")
    parent = types.SimpleNamespace(
        info=types.SimpleNamespace(status="FINISHED"),
        data=types.SimpleNamespace(
            params={},
            tags={"automl.best_trial_id": "1"},
            metrics={"test_mae": 3.25, "best_val_mae": 2.5, "val_test_gap": -0.75},
        ),
    )
    records = pd.DataFrame(
        [{"trial": "1", "name": "t1", "status": "FINISHED", "val_mae": 2.5, "start": 0, "end": 1}]
    )
    note = parent_note(parent, records, [], "val_mae", "", 1)
    assert "val_mae 2.5000; **test mae 3.2500** (val-to-test gap -0.7500)" in note


@pytest.mark.serving_check
def test_logged_mlflow_model_of_a_regression_search(monkeypatch):
    """The search's MLflow model (what --register registers) carries the task: its pyfunc
    answers named columns, and `automl predict models:/...` prints values. Logging it ran
    MLflow's serving check (scoring the input example), which passed."""
    import mlflow.models.utils as mlflow_utils
    import mlflow.pyfunc

    from automl import tracking
    from automl.predict import load_predictor, predict
    from automl.reports import log_mlflow_model
    from automl.tracking import Tracker

    checked, warned = [], []
    real = mlflow_utils._validate_serving_input
    monkeypatch.setattr(
        mlflow_utils, "_validate_serving_input", lambda **kw: checked.append(real(**kw))
    )
    monkeypatch.setattr(tracking.log, "warning", lambda *a, **k: warned.append(a))
    task, model = _regression()
    t = Tracker(None, "logged")
    parent = t.start_search("s", {}, {})
    x = _images(2)
    out = log_mlflow_model(t, parent, model, x, class_names=["age", "price"], task=task)
    assert len(checked) == 1 and not warned, warned
    monkeypatch.setenv("MLFLOW_TRACKING_URI", t.uri)
    frame = mlflow.pyfunc.load_model(out["model_uri"]).predict(x)  # its signature: uint8
    assert list(frame.columns) == ["age", "price"]
    _, want = _expected(task, model, x)
    got = predict(list(x), load_predictor(out["model_uri"], tracking_uri=t.uri))
    _close(got, want, 1e-4)
    from automl.export import task_of_run

    assert task_of_run(t, out["model_uri"]).to_config() == task.to_config()  # export models:/


def test_score_test_classification_adds_the_objective_only_when_not_accuracy_or_loss():
    """A classification search on val_balanced_accuracy also gets test_balanced_accuracy;
    on val_accuracy its test metrics are today's three."""
    from automl import metrics
    from automl.search.result import score_test

    task = Classification().fit(["a", "b", "c", "a"])
    y = ["a", "b", "c", "a", "a", "a", "b", "a"]
    data = _bundle(task, y, y, y)
    model = _model(3, "softmax", seed=7)
    x = np.asarray(data.x_test[:]).astype(np.float32)
    probs = np.asarray(model.predict(x, verbose=0))
    c, _ = _closing(task, data, model, "val_accuracy", 0.5)
    c.result.best_trial["metrics"]["val_accuracy"] = 0.5
    score_test(c)
    assert set(c.result.test_metrics) == {"test_accuracy", "test_loss", "val_test_gap"}
    c, _ = _closing(task, data, model, "val_balanced_accuracy", 0.5)
    c.result.best_trial["metrics"]["val_accuracy"] = 0.5
    score_test(c)
    want = metrics.balanced_accuracy(data.y_test, probs)
    assert c.result.test_metrics["test_balanced_accuracy"] == pytest.approx(want)


def test_cli_board_shows_the_task_objective(capsys):
    """`automl leaderboard` prints a regression search's val_mae, not an empty
    val_accuracy column; a classification board keeps its columns."""
    import pandas as pd

    from automl.cli import _print_board

    row = {"trial": "0", "status": "FINISHED", "val_loss": 0.5, "run_id": "r"}
    _print_board(pd.DataFrame([{**row, "val_accuracy": None, "val_mae": 2.5}]))
    head = capsys.readouterr().out.splitlines()[0].split()
    assert head == ["trial", "status", "val_loss", "val_mae", "run_id"]
    _print_board(pd.DataFrame([{**row, "val_accuracy": 0.9}]))
    assert capsys.readouterr().out.splitlines()[0].split() == [
        "trial", "status", "val_accuracy", "val_loss", "run_id"
    ]  # fmt: skip


def test_datasets_and_learning_curve_per_task():
    """A regression bundle's logged dataset profile gives its targets in their units and a
    multi-label one its label counts (classification: class counts); the learning curve's
    second panel is the task's score."""
    from automl.reports import _score_metric, split_datasets

    task, data = _regression_bundle()
    prof = split_datasets(data, ("train",))[0]["profile"]
    assert set(prof["targets"]) == {"age", "price"} and prof["targets"]["age"]["max"] > 10
    task, data = _multilabel_bundle()
    prof = split_datasets(data, ("train",))[0]["profile"]
    assert prof["label_counts"] == {"cat": 4, "dog": 3, "sky": 3}
    assert _score_metric([{"step": 0, "loss": 1.0, "val_mae": 2.0}]) == "mae"
    assert _score_metric([{"step": 0, "loss": 1.0, "val_accuracy": 0.5}]) == "accuracy"


def test_score_test_of_a_capped_search_scores_and_logs_a_stratified_test_sample():
    """Trials validated on a capped subset (val_images): the test split is scored on a
    stratified sample of 2 x that cap, its size logged and tagged; the scores are the
    sample's."""
    import types

    from automl import fidelity, metrics
    from automl.search.result import score_test

    task, data = _regression_bundle()  # 8 test images
    model = _model(2, "linear", seed=3)
    c, tracker = _closing(task, data, model, "val_mae", 7.0)
    run = types.SimpleNamespace(data=types.SimpleNamespace(params={"val_images": "2"}))
    tracker.trial_runs = lambda parent_id: [run]
    c.settings = types.SimpleNamespace(seed=0)
    score_test(c)
    assert tracker.metrics["test_images"] == 4 and len(c.scored.y_test) == 4
    assert tracker.tags["automl.test_sample"] == "stratified 4 of 8 test images (seed 0)"
    sample = fidelity.test_sample(data, 2, seed=0)
    out = np.asarray(model.predict(np.asarray(sample.x_test[:]).astype(np.float32), verbose=0))
    want = metrics.mae(task.decode(sample.y_test), task.decode(out))
    assert c.result.test_metrics["test_mae"] == pytest.approx(want)
    np.testing.assert_allclose(c.test_outputs, out, rtol=1e-5)  # kept for the reports
