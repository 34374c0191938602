"""The executor contract: every executor (in-process, process, Ray, and a fourth one
registered from the test folder) runs a search's trials, hands back their results, turns a
failing trial and a dying worker process into one failed trial each, and resumes.

One tiny search per executor (48 images, 32 px, one epoch of a one-convolution backbone
from tests/executor_plugin.py), then the same command with one more trial: the resume.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import automl
from automl.backbones.registry import load_plugins
from automl.errors import SearchError
from automl.executors import ProcessExecutor, executor_class, executor_names
from tests.distributed_helpers import trial_runs
from tests.robust_helpers import prebuilt_store

REPO = Path(__file__).resolve().parent.parent
SPACE = {
    "name": "contract",
    "hyperparameters": {
        "backbone": {"choice": ["contract_ok", "contract_fail", "contract_die"]},
        "weights": "random",
        "image_size": 32,
        "learning_rate": 0.01,
        "batch_size": 16,
        "dropout": 0.0,
        "fine_tune_depth": 0.0,
        "head_epochs": 1,
        "fine_tune_epochs": 0,
    },
}
# What each trial's run says, by backbone and by where the trial ran.
DIED = {
    "process": "worker process died",
    "ray": "Ray worker or node lost",
}


@pytest.fixture(scope="module")
def ray_runtime():
    """One local Ray runtime for the module, whose workers import the test plugin."""
    ray = pytest.importorskip(
        "ray", reason='Ray is an optional extra: pip install -e ".[distributed]"'
    )
    env = {"PYTHONPATH": str(REPO), "AUTOML_PLUGINS": "tests.executor_plugin"}
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": env},
    )
    yield
    ray.shutdown()


@pytest.fixture
def contract_plugin(monkeypatch):
    """The test plugin loaded here and in every worker process a search starts."""
    monkeypatch.setenv("AUTOML_PLUGINS", "")  # restored after the test (load_plugins sets it)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    )
    # tests/executor_plugin.py's SEARCH_PID. Not imported at the top: importing the plugin
    # registers its backbones, which adds it to AUTOML_PLUGINS for good, and every later
    # test's worker processes (without this PYTHONPATH) would fail to import it.
    monkeypatch.setenv("AUTOML_TEST_SEARCH_PID", str(os.getpid()))
    load_plugins("tests.executor_plugin")


def _search(data, executor, max_trials: int):
    return automl.search(
        data,
        space=SPACE,
        executor=executor,
        max_trials=max_trials,
        tuner="random",
        seed=0,
        experiment="contract",
        max_retries=0,
        embedding_cache=False,
        verbose=0,
    )


def _by_backbone(uri: str) -> dict[str, list]:
    parents, runs = trial_runs(uri, "contract")
    assert len(parents) == 1  # the second search resumed the first one's parent run
    return {rs[0].data.params["backbone"]: rs for rs in runs.values()}


@pytest.mark.parametrize("name", ["inprocess", "process", "ray", "thread"])
def test_every_executor_keeps_the_contract(name, request, contract_plugin, tmp_path, tiny_arrays):
    if name == "ray":
        request.getfixturevalue("ray_runtime")
    if name == "thread":
        import tests.thread_executor  # noqa: F401  (registers it: one file, outside automl)
    prebuilt_store(tmp_path)
    uri = os.environ["MLFLOW_TRACKING_URI"]
    first = _search(tiny_arrays, name, max_trials=2)
    done_first = {b: len(rs) for b, rs in _by_backbone(uri).items()}
    result = _search(tiny_arrays, name, max_trials=3)  # resume: one more trial
    runs = _by_backbone(uri)
    assert sorted(runs) == ["contract_die", "contract_fail", "contract_ok"]
    # Each trial ran once: the resumed search did not run the first search's trials again.
    assert all(len(rs) == 1 for rs in runs.values()), runs
    assert len(done_first) == 2 and all(n == 1 for n in done_first.values())
    ok, fail, die = (runs[b][0] for b in ("contract_ok", "contract_fail", "contract_die"))
    # Submit and collect: the trial's scores came back and the search ranked it first.
    assert ok.info.status == "FINISHED"
    assert result.best_trial["run_id"] == ok.info.run_id
    best = result.best_trial["metrics"]["val_accuracy"]
    assert ok.data.metrics["best_val_accuracy"] == pytest.approx(best)
    assert first.parent_run_id == result.parent_run_id
    in_worker = name in DIED
    pid = int(ok.data.tags["automl.pid"])
    assert (pid != os.getpid()) == in_worker
    # A failing trial is one FAILED run with its reason; the search went on.
    assert fail.info.status == "FAILED"
    assert "contract_fail: this trial fails on purpose" in fail.data.tags["automl.failure_reason"]
    # A dying worker process is one FAILED run too (in-process: the trial just fails).
    assert die.info.status == "FAILED"
    reason = die.data.tags["automl.failure_reason"]
    assert (DIED[name] if in_worker else "contract_die: no worker process") in reason, reason
    if name == "thread":
        assert ok.data.tags["automl.executor"] == "contract"


def test_executors_are_registered_by_name_and_own_their_options(tiny_arrays):
    assert executor_names()[:4] == ["auto", "inprocess", "process", "ray"]
    assert executor_class("process") is ProcessExecutor
    with pytest.raises(
        SearchError, match=r"unknown executor 'nope'; choose one of: auto, inprocess"
    ):
        automl.search(tiny_arrays, space=SPACE, executor="nope")
    with pytest.raises(SearchError, match=r"workers=2 is not an option of the 'process' executor"):
        automl.search(tiny_arrays, space=SPACE, executor="process", workers=2)
    with pytest.raises(
        SearchError,
        match=r"trials_per_worker=5 is an option of the executor; pass it to ProcessExecutor",
    ):
        automl.search(tiny_arrays, space=SPACE, executor=ProcessExecutor(), trials_per_worker=5)
    with pytest.raises(SearchError, match=r"trials_per_worker=-1 must be 0 or more"):
        ProcessExecutor(trials_per_worker=-1)
