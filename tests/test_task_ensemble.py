"""automl.task_ensemble (greedy selection on any task's objective) and automl.task_reports."""

from __future__ import annotations

import numpy as np
import pytest

from automl import metrics as m
from automl.errors import SearchError
from automl.task_ensemble import greedy_selection, objective_key
from automl.task_reports import per_label_scores, task_reports
from automl.tasks import resolve_task


def test_regression_ensemble_averages_out_opposite_errors():
    y = np.linspace(0.0, 10.0, 40)
    task = resolve_task(y)
    enc = task.encode(y)
    high, low = enc + 0.3, enc - 0.3  # each off by 0.3 std; their average is exact
    worse = enc + 0.5
    chosen = greedy_selection(task, [worse, high, low], enc, rounds=4)
    assert sorted(chosen[:2]) == [1, 2]  # starts from the two best singles
    avg = np.mean([[worse, high, low][i] for i in chosen], axis=0)
    assert m.score(task, enc, avg) < 1e-6  # val_mae of the chosen average: exact
    # the key prefers lower MAE (a "min" objective) and higher R2 (a "max" one)
    assert objective_key(task)(enc, high) > objective_key(task)(enc, worse)
    assert objective_key(task, "val_r2")(enc, high) > objective_key(task, "val_r2")(enc, worse)


def test_multilabel_ensemble_on_macro_f1():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    task = resolve_task(y)
    good_a = np.array([[0.9, 0.4], [0.1, 0.9], [0.8, 0.2], [0.2, 0.1]])  # misses one label
    good_b = np.array([[0.9, 0.1], [0.4, 0.8], [0.7, 0.9], [0.6, 0.2]])  # one false positive
    noise = np.full((4, 2), 0.5)
    chosen = greedy_selection(task, [noise, good_a, good_b], task.encode(y), rounds=3)
    assert 0 not in chosen and set(chosen) == {1, 2}
    avg = (good_a + good_b) / 2
    assert m.score(task, y, avg) == 1.0 > m.score(task, y, good_a)
    with pytest.raises(SearchError, match=r"objective 'val_mae' does not apply to multilabel"):
        greedy_selection(task, [noise], y, objective="val_mae")
    assert greedy_selection(task, [], y) == []


def test_reports_per_task():
    y = np.array([2.0, 4.5, 7.0, 9.5, 12.0])
    task = resolve_task(y)
    figures, tables = task_reports(task, task.encode(y), task.encode(y + 1.0), split="test")
    assert sorted(figures) == ["plots/predicted_vs_true_test.png", "plots/residuals_test.png"]
    assert tables["regression_scores_test"]["value"]["mae"] == pytest.approx(1.0)
    for fig in figures.values():
        fig.savefig("fig.png")  # renders
    labels = np.array([[1, 0], [1, 1], [0, 1]])
    ml = resolve_task(labels)
    figures, tables = task_reports(ml, labels, np.array([[0.9, 0.2], [0.7, 0.3], [0.1, 0.8]]))
    assert list(figures) == ["plots/per_label_validation.png"]
    rows = tables["per_label_scores_validation"]
    assert rows["0"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2, "threshold": 0.5}
    assert rows["1"]["recall"] == 0.5 and rows["1"]["precision"] == 1.0
    assert per_label_scores(labels, labels, ["a", "b"])["b"]["f1"] == 1.0
    assert task_reports(resolve_task(["a", "b"]), [0, 1], np.eye(2)) == ({}, {})


def test_format_predictions_per_task():
    cls = resolve_task(["cat", "dog"])
    assert cls.format_predictions(np.array([[0.07, 0.93]])) == ["dog (0.93)"]
    ml = resolve_task(["cat;dog", "car"])
    probs = np.array([[0.2, 0.62, 0.91], [0.1, 0.3, 0.2]])
    assert ml.format_predictions(probs) == ["dog (0.91), cat (0.62)", "(no label)"]
    reg = resolve_task(np.array([10.0, 30.0]))
    assert reg.format_predictions(reg.encode([23.41, 10.0])) == ["23.41", "10"]
