"""What Python users expect of a search's result and of the package: predict, evaluate, the
best n models; explicit, documented keyword options; predict and export_model exported."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import automl
from tests.conftest import TINY_SPACE
from tests.robust_helpers import FakeTrials, fast_search


def test_result_predicts_evaluates_and_gives_the_best_models(monkeypatch, tmp_path, tiny_arrays):
    import automl.reports as reports
    from automl.errors import DataError, SearchError

    search_mod = fast_search(monkeypatch, tmp_path, FakeTrials())
    monkeypatch.setattr(reports, "log_mlflow_model", lambda *a, **k: {"model_uri": "models:/x"})
    x, y = tiny_arrays
    result = search_mod.search(
        (x, y),
        space=TINY_SPACE,
        max_trials=3,
        tuner="random",
        trials_per_worker=0,
        keep_top_k=2,
        verbose=0,
    )
    best = result.best_model()
    probs = best.predict(x, verbose=0)
    want = [result.class_names[i] for i in probs.argmax(axis=1)]
    assert result.predict(x) == want  # class names, from the best model
    assert result.predict([x[0], x[1][:16, :16]]) == [want[0], result.predict(x[1:2, :16, :16])[0]]
    scores = result.evaluate(x, y)
    assert scores["n"] == 48
    assert scores["accuracy"] == pytest.approx(np.mean(probs.argmax(axis=1) == y))
    assert scores["loss"] == pytest.approx(-np.mean(np.log(probs[np.arange(48), y])), rel=1e-4)
    with pytest.raises(DataError, match=r"labels \['9'\] are not classes of this search"):
        result.evaluate(x[:2], [0, 9])
    models = result.best_models(2)
    board = result.leaderboard()
    assert len(models) == 2
    # best first: the FakeTrials scores rise with the trial id (trial 2 is best)
    assert list(board["trial"][:2]) == ["2", "1"]
    assert np.allclose(models[0].predict(x[:4], verbose=0), best.predict(x[:4], verbose=0))
    with pytest.raises(SearchError, match=r"trial 0 \(rank 3\) kept no model file.*keep_top_k"):
        result.best_models(3)


def test_search_options_are_explicit_and_documented():
    sig = inspect.signature(automl.search)
    assert all(p.kind is not inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    doc = automl.search.__doc__
    undocumented = [name for name in sig.parameters if f"        {name}:" not in doc]
    assert undocumented == []
    for name in ("trials_per_worker", "max_retries", "register", "validation_data", "verbose"):
        assert name in sig.parameters


def test_predict_and_export_model_are_exported():
    from automl.export import export_model
    from automl.predict import predict

    assert automl.predict is predict and automl.export_model is export_model
    assert {"predict", "export_model"} <= set(automl.__all__)
