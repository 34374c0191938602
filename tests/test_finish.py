"""The steps that close a search (automl.search.result), each run alone."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from automl.search.result import Closing, check_registry, refit_winner, score_test
from tests.conftest import TINY_SPACE
from tests.robust_helpers import FakeTrials, fast_search, settings


def test_score_test_alone_scores_the_best_model_on_the_test_split(monkeypatch, tmp_path):
    import automl.reports as reports
    from automl.data import load_data

    search_mod = fast_search(monkeypatch, tmp_path, FakeTrials())
    monkeypatch.setattr(reports, "log_mlflow_model", lambda *a, **k: {"model_uri": "models:/x"})
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (48, 32, 32, 3), dtype=np.uint8), np.arange(48) % 2
    result = search_mod.search(
        (x, y), space=copy.deepcopy(TINY_SPACE), max_trials=1, tuner="random", verbose=0
    )
    data = load_data((x, y), seed=0)
    c = Closing(result, result.tracker, data, None, settings(), checkpoints=None)
    result.test_metrics = {}
    score_test(c)  # alone: no ensemble, no refit, no reports before or after it
    best = result.leaderboard()["trial"][0]
    assert c.best["trial_id"] == best
    names = [result.class_names[i] for i in data.y_test]
    want = result.evaluate(np.stack(list(data.x_test)), names)["accuracy"]
    assert result.test_metrics["test_accuracy"] == pytest.approx(want)
    parent = result.tracker.get_run(result.parent_run_id)
    assert parent.data.tags["automl.best_trial_id"] == best
    assert parent.data.metrics["test_accuracy"] == pytest.approx(want)
    assert c.model is not None  # handed to the next step (log_reports), one model in memory


def test_refit_winner_alone_does_nothing_without_refit_and_check_registry_raises_its_error():
    from automl.errors import RegistrationError

    c = Closing(None, None, None, None, settings(refit=False), checkpoints=None)
    refit_winner(c)  # would need a result and a tracker if it refit
    check_registry(c)  # nothing failed: nothing to raise
    c.result = type("R", (), {"parent_run_id": "abc"})()
    c.tags = {"automl.register_error": "could not register the best model as 'm' (boom)"}
    with pytest.raises(RegistrationError, match=r"as 'm' \(boom\); the search finished.*run abc"):
        check_registry(c)
