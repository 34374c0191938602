"""Comparing trials: run names and notes, the search report, compare-view links, the
leaderboard across experiments, and a quiet stderr (issue 21)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np
import pytest

from tests.robust_helpers import prebuilt_store

ROOT = Path(__file__).resolve().parents[1]


def _link_runs(link: str) -> tuple[list[str], list[str]]:
    """The run and experiment ids of a compare-view link, parsed as MLflow's frontend does."""
    query = parse_qs(urlparse(link).fragment.split("?", 1)[1])
    return json.loads(unquote(query["runs"][0])), json.loads(unquote(query["experiments"][0]))


def fake_search(name: str, trials: list[dict], objective: str = "val_accuracy") -> tuple:
    """A search's runs written straight to MLflow (no training): returns (tracker, parent id,
    trial run ids in order). Each trial dict holds params and ``score`` (val_accuracy)."""
    from automl.search_report import trial_name
    from automl.tracking import Tracker

    t = Tracker(None, name)
    parent = t.start_search(
        f"{name}-1",
        {
            "objective": objective,
            "searched": "learning_rate,dropout",
            "space_name": "synthetic",
            "tuner": "random",
            "max_trials": len(trials),
            "data_name": "fake",
            "n_train": 30,
            "n_val": 10,
            "n_test": 8,
            "num_classes": 3,
        },
        {"mlflow.runName": f"search-{name}"},
    )
    ids = []
    for i, tr in enumerate(trials):
        cfg = {k: v for k, v in tr.items() if k != "score"}
        rid = t.start_trial(parent, f"{name}-1", str(i), cfg, run_name=trial_name(i, cfg))
        t.log_metrics(
            rid,
            {
                "best_val_accuracy": tr["score"],
                "best_val_loss": 1 - tr["score"],
                "best_epoch": 2.0,
                "epochs_run": 4.0,
            },
        )
        t.end_run(rid, "FINISHED")
        ids.append(rid)
    return t, parent, ids


def synthetic_trials(n: int = 30, seed: int = 0) -> list[dict]:
    """The score is decided by log10(learning_rate) (best at 1e-3); dropout is noise."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        lr = float(10 ** rng.uniform(-5, -1))
        dropout = float(rng.uniform(0.0, 0.01))
        score = 0.95 - 0.1 * (np.log10(lr) + 3) ** 2 + rng.normal(0, 0.005)
        out.append(
            {
                "family": "scratch",
                "image_size": 16,
                "learning_rate": lr,
                "dropout": dropout,
                "score": score,
            }
        )
    return out


def test_trial_names_say_what_a_trial_is():
    from automl.search_report import short_number, trial_name

    assert trial_name("2", {"family": "scratch", "image_size": 16, "learning_rate": 0.0012}) == (
        "trial-002 scratch 16px lr 1.2e-3"
    )
    pretrained = {"family": "pretrained", "backbone": "mobilenet_v3_small", "image_size": 96}
    assert trial_name("12", {**pretrained, "learning_rate": 0.05}, attempt=2) == (
        "trial-012 pretrained mobilenet_v3_small 96px lr 0.05 (attempt 2)"
    )
    assert short_number(3e-4) == "3.0e-4" and short_number(32) == "32"


def test_importance_ranks_the_deciding_hyperparameter_first():
    import pandas as pd

    from automl.search_report import importances

    rows = [{**t, "val_accuracy": t.pop("score"), "status": "FINISHED"} for t in synthetic_trials()]
    imp = importances(pd.DataFrame(rows), ["learning_rate", "dropout"], "val_accuracy")
    assert list(imp) == ["learning_rate", "dropout"]
    assert imp["learning_rate"] > 0.8 > imp["dropout"]
    # too few trials to say: no importances rather than noise
    assert importances(pd.DataFrame(rows[:3]), ["learning_rate", "dropout"], "val_accuracy") == {}


def test_refresh_writes_notes_report_and_compare_link(tmp_path, monkeypatch):
    from automl import search_report
    from automl.search_report import NOTE, REPORT_HTML, REPORT_PNG

    monkeypatch.setattr(search_report, "COMPARE_MAX", 5)  # 20 in use: 8 trials say the same
    prebuilt_store(tmp_path)
    trials = synthetic_trials(8)
    t, parent, ids = fake_search("rep", trials)
    out = search_report.refresh(t, parent, ui_base="http://ui:5000")
    assert out["compare"].startswith("http://ui:5000/#/compare-runs?runs=")
    runs, exps = _link_runs(out["compare"])
    assert exps == [t.experiment_id] and len(runs) == 5  # the best 5 of 8
    order = np.argsort([-tr["score"] for tr in trials])
    assert runs == [ids[i] for i in order[:5]]
    best = int(order[0])
    trial = t.client.get_run(ids[best])
    assert trial.info.run_name.startswith(f"trial-{best:03d} scratch 16px lr ")
    assert f"Best val_accuracy **{trials[best]['score']:.4f}**" in trial.data.tags[NOTE]
    assert "at epoch 3 of 4" in trial.data.tags[NOTE]  # best_epoch is 0-based
    note = t.client.get_run(parent).data.tags[NOTE]
    assert "searching learning_rate, dropout" in note and "8 trial(s) finished" in note
    assert f"[Compare the best 5 finished trials side by side]({out['compare']})" in note
    html = t.download(parent, REPORT_HTML).read_text()
    assert "data:image/png;base64," in html and "<td>learning_rate</td>" in html
    assert t.download(parent, REPORT_PNG).stat().st_size > 20_000


def _rows(printed: str) -> list[list[str]]:
    return [
        w for w in (line.split() for line in printed.splitlines()) if w and w[0].startswith("exp-")
    ]


def test_leaderboard_ranks_trials_of_two_experiments(tmp_path, capsys):
    from automl import cli

    prebuilt_store(tmp_path)
    a_trials = [{"learning_rate": 0.01, "dropout": 0.1, "score": s} for s in (0.5, 0.9)]
    b_trials = [{"learning_rate": 0.001, "dropout": 0.2, "score": s} for s in (0.7, 0.95)]
    ta, _, a_ids = fake_search("exp-a", a_trials)
    tb, _, b_ids = fake_search("exp-b", b_trials)
    assert cli.main(["leaderboard", "--experiment", "exp-a", "--experiment", "exp-b"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert [r[0] for r in rows] == ["exp-b", "exp-a", "exp-b", "exp-a"]  # 0.95, 0.9, 0.7, 0.5
    assert [r[-1] for r in rows] == [b_ids[1], a_ids[1], b_ids[0], a_ids[0]]
    link = next(w for w in out.split() if "#/compare-runs" in w)
    runs, exps = _link_runs(link)
    assert runs == [b_ids[1], a_ids[1], b_ids[0], a_ids[0]]
    assert exps == [tb.experiment_id, ta.experiment_id]
    assert cli.main(["leaderboard", "--all"]) == 0
    assert [r[0] for r in _rows(capsys.readouterr().out)] == ["exp-b", "exp-a", "exp-b", "exp-a"]
    # one search: its compare link
    assert cli.main(["leaderboard", "--experiment", "exp-a"]) == 0
    assert _link_runs(capsys.readouterr().out.split()[-1])[0] == [a_ids[1], a_ids[0]]


@pytest.mark.parametrize(
    "argv",
    [
        ["leaderboard", "--experiment", "exp-a", "--experiment", "nope"],
        ["leaderboard", "--experiment", "nope"],
    ],
)
def test_leaderboard_unknown_experiment_is_one_line(tmp_path, capsys, argv):
    from automl import cli

    prebuilt_store(tmp_path)
    fake_search("exp-a", [{"learning_rate": 0.01, "dropout": 0.1, "score": 0.5}])
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "experiment 'nope' is not in" in err and "exp-a" in err
    from mlflow.tracking import MlflowClient

    assert MlflowClient().get_experiment_by_name("nope") is None  # not created by a look-up


@pytest.mark.slow
def test_search_prints_compare_link_names_trials_and_keeps_stderr_quiet(tmp_path, tiny_arrays):
    """`automl search` in a fresh process, fresh store and fresh matplotlib cache."""
    from PIL import Image

    x, y = tiny_arrays
    for i, (img, label) in enumerate(zip(x, y)):
        d = tmp_path / "images" / f"c{label}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i}.png")
    (tmp_path / "space.yaml").write_text(
        "name: two\nhyperparameters:\n  family: scratch\n  image_size: 16\n  blocks: 1\n"
        "  filters: 8\n  epochs: 2\n  batch_size: 16\n"
        "  learning_rate: {min: 0.001, max: 0.01, sampling: log}\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MPLCONFIGDIR": str(tmp_path / "mpl"),  # matplotlib builds its font cache here
    }
    proc = subprocess.run(
        [sys.executable, "-m", "automl", "search", "--data", "images", "--space", "space.yaml"]
        + ["--max-trials", "2", "--tuner", "random", "--experiment", "quiet"]
        + ["--trials-per-worker", "0", "--ensemble", "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for noise in (
        "fontManager",
        "Creating initial MLflow database tables",
        "Updating database tables",
    ):
        assert noise not in proc.stderr, proc.stderr
    assert (tmp_path / "mpl").exists()  # the cache was built in this run, quietly
    from automl.search_report import NOTE
    from automl.tracking import Tracker

    t = Tracker(None, "quiet")
    parent = t.latest_search()
    trials = t.trial_runs(parent.info.run_id)
    link = next(w for w in proc.stdout.split() if "#/compare-runs" in w)
    assert "compare the 2 finished trials:" in proc.stdout
    runs, exps = _link_runs(link)
    assert sorted(runs) == sorted(r.info.run_id for r in trials) and exps == [t.experiment_id]
    names = sorted(r.info.run_name for r in trials)
    assert names[0].startswith("trial-000 scratch 16px lr ") and names[1].startswith("trial-001 ")
    assert all("Best val_accuracy" in r.data.tags[NOTE] for r in trials)
    note = t.client.get_run(parent.info.run_id).data.tags[NOTE]
    assert "**Winner**: trial-00" in note and "test accuracy" in note and link in note


def test_ui_prints_the_compare_link_of_the_latest_search(tmp_path, monkeypatch, capsys):
    from automl import cli

    class FakeServer:  # starts nothing
        def __init__(self, cmd, *args, **kwargs):
            pass

        def wait(self):
            return 0

    monkeypatch.setattr(subprocess, "Popen", FakeServer)
    prebuilt_store(tmp_path)
    t, _, ids = fake_search("shown", [{"learning_rate": 0.01, "score": s} for s in (0.4, 0.8)])
    assert cli.main(["ui", "--port", "5003"]) == 0
    out = capsys.readouterr().out
    assert "compare the 2 finished trials: http://127.0.0.1:5003/#/compare-runs?runs=" in out
    link = next(w for w in out.split() if "#/compare-runs" in w)
    assert _link_runs(link) == ([ids[1], ids[0]], [t.experiment_id])


def test_refresh_with_no_finished_trial_says_why(tmp_path):
    from automl import search_report
    from automl.search_report import NOTE
    from automl.tracking import Tracker

    prebuilt_store(tmp_path)
    t = Tracker(None, "failing")
    parent = t.start_search("f-1", {"objective": "val_accuracy", "searched": "dropout"}, {})
    assert search_report.refresh(t, parent)["compare"] == ""  # no trial yet
    rid = t.start_trial(parent, "f-1", "0", {"family": "scratch", "dropout": 0.1})
    t.fail_trial(rid, "diverged: loss is NaN")
    out = search_report.refresh(t, parent)
    assert out["compare"] == "" and out["finished"] == 0
    assert t.client.get_run(rid).data.tags[NOTE].endswith("Failed: diverged: loss is NaN.")
    assert "0 trial(s) finished, 1 failed or stopped" in t.client.get_run(parent).data.tags[NOTE]
