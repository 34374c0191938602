"""A search shows its progress by default, from Python and the CLI, through one reporter."""

from __future__ import annotations

import io
import time

from tests.conftest import TINY_SPACE
from tests.robust_helpers import FakeTrials, fast_search, searched_trial


def test_plain_lines_when_not_a_terminal():
    from automl.progress import Progress

    out = io.StringIO()
    p = Progress(stream=out)  # a StringIO is not a terminal: plain lines
    assert not p.bars
    p.search_started(3, "val_accuracy", deadline=time.time() + 125)
    p.trial_started("0", 1, epochs=2, summary="backbone=x")
    p.epoch({"step": 0, "phase": "phase1", "loss": 1.5, "val_accuracy": 0.25})
    p.trial_finished("0", {"val_accuracy": 0.5, "val_loss": 1.0})
    p.trial_started("1", 2, epochs=2)
    p.trial_finished("1", {"val_accuracy": 0.4, "val_loss": 1.1})
    p.trial_finished("2", failed="diverged")
    lines = out.getvalue().splitlines()
    assert "search: up to 3 trials (0 done), objective val_accuracy, 2m0" in lines[0]
    assert lines[2].endswith("trial 0 epoch 1/2 (phase1): loss=1.5000 val_accuracy=0.2500")
    assert "trial 0 done: val_accuracy=0.5000 | best val_accuracy=0.5000, 2m" in lines[3]
    assert "left in the budget" in lines[3]
    assert "trial 1 done: val_accuracy=0.4000 | best val_accuracy=0.5000" in lines[5]
    assert "trial 2 failed: diverged" in lines[6]


def test_bars_in_a_terminal_and_nothing_when_quiet():
    from automl.progress import Progress

    out = io.StringIO()
    p = Progress(stream=out, bars=True)
    p.search_started(2, "val_loss")
    p.trial_started("0", 1, epochs=3)
    p.epoch({"step": 1, "phase": "phase1", "val_loss": 0.7})
    p.trial_finished("0", {"val_accuracy": 0.5, "val_loss": 0.7})
    p.close()
    text = out.getvalue()
    assert "trials:" in text and "1/2" in text and "best val_loss=0.7000" in text
    assert "trial 0:" in text and "2/3" in text  # the epoch bar of the running trial
    quiet = io.StringIO()
    q = Progress(0, stream=quiet, bars=True)
    q.search_started(2, "val_accuracy")
    q.trial_started("0", 1, 3)
    q.epoch({"step": 0})
    q.trial_finished("0", {"val_accuracy": 1.0})
    q.close()
    assert quiet.getvalue() == ""


def test_search_from_python_shows_progress_by_default(monkeypatch, tmp_path, tiny_arrays, capsys):
    import automl.reports as reports

    search_mod = fast_search(monkeypatch, tmp_path, FakeTrials())
    # (the best model as an MLflow model is not what this test is about, and takes seconds)
    monkeypatch.setattr(reports, "log_mlflow_model", lambda *a, **k: {"model_uri": "models:/x"})
    kw = dict(space=TINY_SPACE, max_trials=2, tuner="random", trials_per_worker=0)
    search_mod.search(tiny_arrays, experiment="loud", **kw)
    err = capsys.readouterr().err
    assert "search: up to 2 trials" in err
    assert "trial 0 epoch 1/3 (phase1)" in err
    assert "trial 1 done: val_accuracy=0.5100 | best val_accuracy=0.5100" in err
    search_mod.search(tiny_arrays, experiment="quiet", verbose=0, **{**kw, "max_trials": 1})
    assert "trial" not in capsys.readouterr().err


def test_tensorflow_startup_noise_is_told_from_warnings():
    from automl.progress import is_startup_noise

    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
        "I0000 00:00:1795619785.287941   20450 port.cc:153] oneDNN custom operations are on.\n",
        "I0000 00:00:1795619785.288449   20450 cudart_stub.cc:31] Could not find cuda drivers\n",
    ]
    real = [
        "W0000 00:00:1795619785.288449   20450 gpu_device.cc:2342] Cannot dlopen some GPU libraries\n",
        "E0000 00:00:1795619785.288449   20450 cuda_blas.cc:1418] Unable to register cuBLAS\n",
        "UserWarning: something real\n",
        "12:00:01 trial 0 failed: diverged\n",
    ]
    assert all(is_startup_noise(line) for line in noise)
    assert not any(is_startup_noise(line) for line in real)


def test_a_single_run_outside_a_search_as_lines_or_one_bar():
    from automl.progress import Progress

    out = io.StringIO()
    p = Progress(stream=out)
    p.run_started("retrain of trial 3", 2, summary="backbone=x")
    p.epoch({"step": 0, "phase": "phase1", "loss": 1.5, "val_accuracy": 0.25})
    p.close()
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("retrain of trial 3 started (2 epochs): backbone=x")
    assert lines[1].endswith(
        "retrain of trial 3 epoch 1/2 (phase1): loss=1.5000 val_accuracy=0.2500"
    )
    bar = io.StringIO()
    b = Progress(stream=bar, bars=True)
    b.run_started("retrain of trial 3", 2)
    b.epoch({"step": 1, "phase": "phase2", "val_loss": 0.7})
    b.close()
    assert "retrain of trial 3:" in bar.getvalue() and "2/2" in bar.getvalue()


def test_retrain_shows_its_epochs_and_nothing_when_quiet(
    monkeypatch, tmp_path, image_folder, capsys
):
    import automl.reports as reports
    from automl import cli

    trial_run = searched_trial(monkeypatch, tmp_path, image_folder)
    monkeypatch.setattr(reports, "log_mlflow_model", lambda *a, **k: {"model_uri": "models:/x"})
    capsys.readouterr()
    assert cli.main(["retrain", "--run-id", trial_run]) == 0
    out = capsys.readouterr()
    assert "retrain of trial 0 started (3 epochs): " in out.err  # not a terminal: lines
    assert "retrain of trial 0 epoch 1/3 (phase1): loss=1.0000 val_loss=1.0000" in out.err
    assert "━" not in out.out + out.err  # no Keras progress bar
    assert out.out.startswith(f"retrained run {trial_run} as run ")
    assert cli.main(["retrain", "--run-id", trial_run, "-q"]) == 0
    out = capsys.readouterr()
    assert out.err == ""  # no progress, no MLflow download bar
    assert out.out.startswith(f"retrained run {trial_run} as run ")
