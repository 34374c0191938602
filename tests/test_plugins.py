"""Third-party backbones without forking: an installed package's ``automl.backbones`` entry point
and ``--plugin MODULE`` both reach the trial worker processes of a search, and Ray's workers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.robust_helpers import prebuilt_store

PLUGIN_PKG = Path(__file__).resolve().parent / "plugin_pkg"

SPACE = """\
name: plugins
hyperparameters:
  backbone: {choice: [plugin_tiny, plugin_tiny_cli]}
  weights: random
  image_size: 32
  learning_rate: {min: 1.0e-3, max: 1.0e-2, sampling: log}
  batch_size: 32
  dropout: 0.1
  fine_tune_depth: 0.0
  head_epochs: 1
  fine_tune_epochs: 0
"""


@pytest.fixture
def plugin_installed(tmp_path, monkeypatch):
    """tests/plugin_pkg installed (not editable) into a folder on the path of this process and
    of every process it starts, as `pip install` into the environment would."""
    src = shutil.copytree(PLUGIN_PKG, tmp_path / "plugin_src")  # pip builds in the tree
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "--target", str(site), str(src)],
        check=True,
        capture_output=True,
    )
    assert (site / "automl_test_plugin").is_dir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.setenv("AUTOML_PLUGINS", "")  # restored after the test (load_plugins sets it)
    return site


@pytest.mark.parametrize("executor", ["process", "ray"])
def test_plugin_backbones_run_in_the_worker_processes_of_a_search(
    plugin_installed, tmp_path, capsys, image_folder, executor
):
    if executor == "ray":
        pytest.importorskip(
            "ray", reason='Ray is an optional extra: pip install -e ".[distributed]"'
        )
    from mlflow.tracking import MlflowClient

    from automl import cli
    from automl.backbones.registry import get_backbone

    assert get_backbone("plugin_tiny").family == "plugin"  # found through the entry point
    prebuilt_store(tmp_path)
    space = tmp_path / "plugins.yaml"
    space.write_text(SPACE)
    rc = cli.main(
        ["search", "--space", str(space), "--max-trials", "2", "--tuner", "random"]
        + ["--seed", "3", "--experiment", "plug", "--data", str(image_folder)]
        + ["--plugin", "automl_test_plugin.extra"]
        + (["--workers", "2", "--cpus-per-trial", "1"] if executor == "ray" else [])
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    # The worker's epochs reach the search's progress display; its TensorFlow start-up
    # chatter does not; no stray Keras progress bar before the leaderboard.
    if executor == "process":  # (Ray's workers report trials, not epochs)
        assert "epoch 1/1 (phase1)" in out.err
    assert "trial 1 done" in out.err
    assert "oneDNN" not in out.err and "absl::InitializeLog" not in out.err
    assert "━" not in out.out and "1/1" not in out.out.split("trial")[0]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    exp = client.get_experiment_by_name("plug")
    trials = client.search_runs([exp.experiment_id], "tags.`automl.kind` = 'trial'")
    assert [r.info.status for r in trials] == ["FINISHED", "FINISHED"]
    # (seed 3: the random oracle proposes one of each)
    assert {r.data.params["backbone"] for r in trials} == {"plugin_tiny", "plugin_tiny_cli"}
    pids = {r.data.tags["automl.pid"] for r in trials}
    assert str(os.getpid()) not in pids  # trained in a worker process, which knew both
    if executor == "ray":
        assert all(r.data.tags.get("automl.node") for r in trials)  # on a Ray node


def test_a_plugin_that_cannot_be_imported_is_one_line_exit_2(capsys, monkeypatch):
    from automl import cli

    monkeypatch.setenv("AUTOML_PLUGINS", "")
    assert cli.main(["search", "--plugin", "no_such_plugin_module", "--max-trials", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("automl: error: plugin 'no_such_plugin_module' (--plugin)")
