"""Settings are defined once: every search option is one SearchSettings field, and
``search()``'s keywords, the ``automl search`` options and cmd_search's forwarding are
exactly those fields (a new option in one place only fails here)."""

from __future__ import annotations

import argparse
import inspect
from dataclasses import fields

import pytest

import automl
from automl import cli
from automl.errors import SearchError
from automl.search import SearchSettings, search
from automl.search.settings import Flag

INPUTS = {"data", "space", "validation_data"}  # what is searched, not how: not settings
PYTHON_ONLY = {"workdir"}  # the CLI keeps its files beside the tracking store
CLI_ONLY = {"data", "space", "plugin", "help"}


def _search_parser() -> argparse.ArgumentParser:
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["search"]


def test_search_keywords_are_the_settings_fields_with_their_defaults():
    params = inspect.signature(automl.search).parameters
    names = {f.name for f in fields(SearchSettings)}
    assert set(params) - INPUTS == names
    for f in fields(SearchSettings):
        # None: "this search's default" (the data-aware space's, or a given space's)
        expected = None if f.metadata["none"] is not None else f.default
        assert params[f.name].default == expected, f.name
        assert f.metadata["doc"], f.name
        assert f"{f.name}: " in automl.search.__doc__  # documented once, listed in help()


def test_the_cli_options_are_the_settings_fields():
    dests = {a.dest for a in _search_parser()._actions}
    flags = {f.name: f.metadata["cli"] for f in fields(SearchSettings)}
    assert {n for n, flag in flags.items() if flag is None} == PYTHON_ONLY
    assert all(isinstance(flag, Flag) for n, flag in flags.items() if n not in PYTHON_ONLY)
    assert dests == CLI_ONLY | {flag.dest for flag in flags.values() if flag is not None}


def test_cmd_search_forwards_every_option_and_the_cli_defaults_are_the_search_defaults(
    monkeypatch,
):
    seen = {}

    def fake_search(**kw):
        seen.update(kw)
        raise SearchError("stop here")

    monkeypatch.setattr(automl, "search", fake_search)
    assert cli.main(["search"]) == 2
    keywords = set(inspect.signature(search).parameters)
    assert set(seen) == keywords - {"validation_data"} - PYTHON_ONLY
    # Without --space (the data-aware search) the command line and Python agree on every
    # default; with a space only --ensemble differs (3 on the command line, 0 in Python).
    options = {k: v for k, v in seen.items() if k not in INPUTS}
    assert SearchSettings.for_search(True, **options) == SearchSettings.for_search(True)
    given = SearchSettings.for_search(False, **options)
    assert given.ensemble == 3 and SearchSettings.for_search(False).ensemble == 0
    assert {**vars(given), "ensemble": 0} == vars(SearchSettings.for_search(False))


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"seed": -1}, r"seed=-1 is out of range; pass --seed from 0 to 4294967295"),
        ({"tuner": "grid"}, r"unknown tuner 'grid'; choose one of: random, bayesian, hyperband"),
        ({"keep_top_k": 0}, r"keep_top_k=0 must be at least 1"),
        ({"refit": "yes"}, r"refit='yes' must be True or False"),
        ({"trials_per_worker": -1}, r"trials_per_worker=-1 must be 0 or more"),
        ({"ray_address": " "}, r"ray_address=' ' must be a cluster address"),
        ({"executor": "nope"}, r"unknown executor 'nope'; choose one of: auto, inprocess"),
    ],
)
def test_each_setting_is_checked_by_its_field(kw, message):
    with pytest.raises(SearchError, match=message):
        SearchSettings(**kw).validate()


def test_auto_chooses_the_executor_as_before():
    def chosen(**kw):
        return type(SearchSettings(**kw).make_executor()).__name__

    assert chosen() == "ProcessExecutor"
    assert chosen(max_trials=1) == "InProcessExecutor"
    assert chosen(trials_per_worker=0) == "InProcessExecutor"
    assert chosen(workers=2) == "RayExecutor"
    assert chosen(ray_address="head:6379") == "RayExecutor"
    ray = SearchSettings(workers=3, cpus_per_trial=2.0, gpus_per_trial=0.5).make_executor()
    assert ray.options() == {
        "workers": 3,
        "ray_address": None,
        "cpus_per_trial": 2.0,
        "gpus_per_trial": 0.5,
        "trials_per_worker": 10,
    }
    # A name gets only its own options; an object keeps its own.
    assert SearchSettings(executor="process", trials_per_worker=4).make_executor().options() == {
        "trials_per_worker": 4
    }
    from automl.executors import RayExecutor

    mine = RayExecutor(workers=4, gpus_per_trial=0.25)
    assert SearchSettings(executor=mine).make_executor() is mine and mine.slots == 4
