"""The Python API and the CLI run the same default search."""

import importlib

from automl.cli import build_parser
from automl.search.settings import DEFAULT_ENSEMBLE, DEFAULT_MAX_TRIALS, DEFAULT_TIME_BUDGET

search_mod = importlib.import_module("automl.search")  # the package (automl.search is the function)


def _settings_of(monkeypatch, **kw):
    seen = {}

    def fake_run_search(space, bundle, settings):
        seen["settings"], seen["space"] = settings, space
        return None

    monkeypatch.setattr(search_mod, "run_search", fake_run_search)
    search_mod.search(**kw)
    return seen["settings"], seen["space"]


def test_python_default_search_is_the_cli_default(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    s, space = _settings_of(monkeypatch, data="demo")
    assert space.name == "auto"  # the data-aware space
    assert (s.time_budget, s.max_trials, s.ensemble) == (
        DEFAULT_TIME_BUDGET,
        DEFAULT_MAX_TRIALS,
        DEFAULT_ENSEMBLE,
    )
    assert s.refit is True
    a = build_parser().parse_args(["search"])
    assert a.space is None and a.ensemble == DEFAULT_ENSEMBLE
    assert a.refit is None  # resolved by automl.search
    assert build_parser().parse_args(["search", "--no-refit"]).refit is False
    assert a.max_trials is None and a.time_budget is None  # resolved by automl.search


def test_a_given_space_keeps_its_trial_count_and_no_budget(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    s, _ = _settings_of(monkeypatch, data="demo", space="default")
    assert (s.time_budget, s.max_trials, s.ensemble, s.refit) == (None, 6, 0, False)
    s, _ = _settings_of(
        monkeypatch, data="demo", max_trials=2, time_budget=1.5, ensemble=2, refit=True
    )
    assert (s.time_budget, s.max_trials, s.ensemble, s.refit) == (1.5, 2, 2, True)
