"""tracking.py owns MLflow: the Tracker's methods, the one ranking rule, the scores from
probabilities, and a guard that no other module imports mlflow."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import automl
from automl.metrics import accuracy, log_loss, rank_key, ranked

NAN, INF = float("nan"), float("inf")


# --- the ranking rule ----------------------------------------------------------------------
def _best_first(scores: list[dict], objective: str) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: rank_key(scores[i], objective), reverse=True)


def test_accuracy_ranks_first_and_a_lower_loss_breaks_ties():
    s = [
        {"val_accuracy": 0.8, "val_loss": 0.5},
        {"val_accuracy": 0.9, "val_loss": 0.9},
        {"val_accuracy": 0.8, "val_loss": 0.3},
    ]
    assert _best_first(s, "val_accuracy") == [1, 2, 0]
    assert _best_first(s, "val_loss") == [2, 0, 1]  # loss first; then the higher accuracy


def test_a_missing_none_or_nan_score_ranks_below_every_real_one():
    s = [
        {"val_accuracy": NAN, "val_loss": NAN},  # a trial without validation scores
        {"val_accuracy": 0.0, "val_loss": 5.0},
        {},  # an epoch with no validation
        {"val_accuracy": None, "val_loss": 0.1},
        {"val_accuracy": 0.0, "val_loss": NAN},
    ]
    # 0.0 with a loss beats 0.0 without; a missing accuracy is below an accuracy of 0;
    # two runs without scores keep their order
    assert _best_first(s, "val_accuracy") == [1, 4, 3, 0, 2]
    assert _best_first(s, "val_loss") == [3, 1, 4, 0, 2]
    assert rank_key({}, "val_accuracy") == rank_key({"val_accuracy": NAN}, "val_accuracy")
    assert rank_key({}) == (-INF, -INF) and not any(math.isnan(v) for v in rank_key(s[0]))


def test_epochs_trials_and_ensembles_rank_with_the_same_rule():
    from automl import ensemble, trial

    cases = [{}, {"val_loss": 0.2}, {"val_accuracy": 0.5}, {"val_accuracy": 0.5, "val_loss": 1}]
    for objective in ("val_accuracy", "val_loss"):
        for c in cases:
            assert trial.rank(c, objective) == rank_key(c, objective)
            assert ensemble._rank(c, objective) == rank_key(c, objective)
    # An epoch without val_accuracy used to rank as accuracy 0.0, level with a real 0.0.
    assert trial.rank({"val_loss": 0.1}) < trial.rank({"val_accuracy": 0.0, "val_loss": 9.0})


def _old_leaderboard_order(df: pd.DataFrame, objective: str) -> list[str]:
    """The leaderboard's sort before the rule was shared (pandas, NaN last)."""
    df = df.assign(
        _ok=df["status"].eq("FINISHED") & df[objective].notna(), _refit=df["trial"].eq("refit")
    )
    other = "val_accuracy" if objective == "val_loss" else "val_loss"
    df = df.sort_values(
        ["_ok", objective, other, "_refit"],
        ascending=[False, objective == "val_loss", other == "val_loss", False],
        kind="stable",
    )
    return list(df["run_id"])


@pytest.mark.parametrize("objective", ["val_accuracy", "val_loss"])
def test_the_leaderboard_keeps_its_order_on_missing_scores_ties_and_refits(objective):
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(1, 12))
        acc = rng.choice([0.5, 0.75, 1.0, NAN], n)
        loss = rng.choice([0.1, 0.2, NAN], n)
        df = pd.DataFrame(
            {
                "trial": rng.choice(["0", "1", "refit", "ensemble"], n),
                "status": rng.choice(["FINISHED", "FAILED", "KILLED"], n, p=[0.7, 0.2, 0.1]),
                "val_accuracy": acc,
                "val_loss": loss,
                "run_id": [f"r{i}" for i in range(n)],
            }
        )
        want = _old_leaderboard_order(df, objective)
        ok = (df["status"].eq("FINISHED") & df[objective].notna()).tolist()
        refit = df["trial"].eq("refit").tolist()
        keys = [rank_key(r, objective) for r in df.to_dict("records")]
        got = sorted(range(n), key=lambda i: (ok[i], keys[i], refit[i]), reverse=True)
        assert [f"r{i}" for i in got] == want
        # the cross-experiment leaderboard (compare.py) sorted by the two scores alone
        other = "val_accuracy" if objective == "val_loss" else "val_loss"
        old = df.sort_values(
            [objective, other],
            ascending=[objective == "val_loss", other == "val_loss"],
            kind="stable",
        )
        assert list(df["run_id"].iloc[ranked(df, objective)]) == list(old["run_id"])


def test_tracker_leaderboard_puts_a_refit_above_the_trial_it_refits_and_failures_last():
    from automl.tracking import Tracker

    t = Tracker(None, "board")
    parent = t.start_search("s", {}, {})
    for trial, acc, status in (
        ("0", 0.5, "FINISHED"),
        ("1", 0.9, "FAILED"),
        ("2", 0.9, "FINISHED"),
    ):
        rid = t.start_trial(parent, "s", trial, {})
        t.log_metrics(rid, {"best_val_accuracy": acc, "best_val_loss": 0.3})
        t.end_run(rid, status)
    rid = t.start_trial(parent, "s", "refit", {})
    t.log_metrics(rid, {"best_val_accuracy": 0.9, "best_val_loss": 0.3})
    t.end_run(rid)
    assert list(t.leaderboard(parent)["trial"]) == ["refit", "2", "0", "1"]


# --- scores from probabilities -----------------------------------------------------------------
def test_accuracy_and_log_loss_from_probabilities():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.0, 1.0, 0.0]], np.float32)
    y = np.array([0, 1, 1])
    assert accuracy(y, probs) == pytest.approx(2 / 3)
    assert accuracy(y, np.array([0, 2, 1])) == pytest.approx(2 / 3)  # predicted classes
    assert log_loss(y, probs) == pytest.approx(-(np.log(0.7) + np.log(0.1) + np.log(1.0)) / 3)
    zero = np.array([[1.0, 0.0]])
    assert log_loss(np.array([1]), zero) == pytest.approx(-np.log(1e-7))  # clipped, not inf


# --- Tracker methods ------------------------------------------------------------------------
def test_run_reading_and_removing_methods():
    from automl.tracking import Tracker, experiment_id, experiment_name, experiments, holds_search

    t = Tracker(None, "reads")
    parent = t.start_search("s", {"objective": "val_loss"}, {"mlflow.runName": "search-reads"})
    trial = t.start_trial(parent, "s", "0", {"lr": 0.1})
    assert t.run_params(parent) == {"objective": "val_loss"}
    assert t.run_tags(trial)["mlflow.parentRunId"] == parent
    assert t.get_run(trial).info.run_id == trial
    assert t.experiment_name(t.experiment_id) == "reads"
    Tracker(None, "empty")
    uri = t.uri
    assert experiments(uri)["reads"] == t.experiment_id and "empty" in experiments(uri)
    assert holds_search(uri, t.experiment_id)
    assert not holds_search(uri, experiments(uri)["empty"])
    assert experiment_id(uri, "reads") == t.experiment_id and experiment_id(uri, "nope") is None
    assert experiment_name(uri, t.experiment_id) == "reads"
    assert [
        r.info.run_id for r in t.runs_tagged({"automl.search_id": "s", "automl.kind": "search"})
    ] == [parent]
    t.set_tags(parent, {"automl.refit_run_id": "x"})
    t.delete_tag(parent, "automl.refit_run_id")
    assert "automl.refit_run_id" not in t.run_tags(parent)
    t.delete_run(trial)
    assert t.trial_runs(parent) == []


def test_log_datasets_logs_each_split_as_an_input_with_its_context():
    from automl.tracking import Tracker

    t = Tracker(None, "inputs")
    run = t.start_search("s", {}, {})
    profile = {"num_rows": 3, "class_counts": {"a": 2, "b": 1}}
    t.log_datasets(
        run,
        [
            {
                "split": "train",
                "name": "d-train",
                "source": "demo",
                "digest": "abc",
                "profile": profile,
            },
            {"split": "test", "name": "d-test", "source": "demo", "digest": "def", "profile": {}},
        ],
    )
    inputs = t.get_run(run).inputs.dataset_inputs
    got = {i.tags[0].value: i.dataset for i in inputs}
    assert set(got) == {"train", "test"}
    assert got["train"].name == "d-train" and got["train"].digest == "abc"
    assert got["train"].source_type == "automl" and '"uri": "demo"' in got["train"].source


def _tiny_model():
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    return keras.Model(
        inp, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inp))
    )


def test_log_model_sets_no_global_tracking_uri_and_registering_restores_it(monkeypatch):
    import mlflow

    from automl import reports
    from automl.tracking import Tracker, download_model

    t = Tracker(None, "models")
    run = t.start_search("s", {"objective": "val_accuracy"}, {})
    t.log_metrics(run, {"test_accuracy": 0.5})
    model = _tiny_model()
    x = np.zeros((1, 8, 8, 3), np.float32)

    def refuse(uri):
        raise AssertionError(f"MLflow's global tracking URI set to {uri}")

    with monkeypatch.context() as m:
        m.setattr(mlflow, "set_tracking_uri", refuse)
        out = reports.log_mlflow_model(t, run, model, x, class_names=["a", "b"])
    logged = t.client.get_logged_model(out["model_id"])
    assert str(logged.status) in ("READY", "LoggedModelStatus.READY")
    assert logged.source_run_id == run and out["registered_version"] is None
    assert [o.model_id for o in t.get_run(run).outputs.model_outputs] == [out["model_id"]]
    assert (download_model(out["model_uri"], t.uri) / "MLmodel").is_file()

    before = mlflow.get_tracking_uri()
    assert reports.register_model(t, out["model_uri"], "tiny") == "1"
    assert mlflow.get_tracking_uri() == before  # restored after MLflow's registry call
    assert t.client.get_model_version("tiny", "1").run_id == run
    assert (download_model("models:/tiny/1", t.uri) / "MLmodel").is_file()


# --- MLflow stays in tracking.py -------------------------------------------------------------
# No module but tracking.py imports MLflow or reaches for the tracker's client.
STILL_IMPORTING: set[str] = set()
STILL_USING_CLIENT: set[str] = set()


def _uses(path: Path) -> tuple[bool, bool]:
    tree = ast.parse(path.read_text())
    imports = client = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports |= any(a.name.split(".")[0] == "mlflow" for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            imports |= (node.module or "").split(".")[0] == "mlflow"
        elif isinstance(node, ast.Attribute):
            client |= node.attr == "client" or node.attr == "set_tracking_uri"
    return imports, client


def test_no_module_but_tracking_imports_mlflow_or_reaches_for_the_client():
    root = Path(automl.__file__).parent
    importing, reaching = set(), set()
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root).as_posix()
        if name == "tracking.py":
            continue
        imports, client = _uses(path)
        if imports:
            importing.add(name)
        if client:
            reaching.add(name)
    assert importing <= STILL_IMPORTING, f"mlflow imported outside tracking.py: {importing}"
    assert reaching <= STILL_USING_CLIENT, f"tracker.client used outside tracking.py: {reaching}"
    assert _uses(root / "tracking.py") == (True, True)  # the guard sees what it looks for
