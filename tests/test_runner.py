"""The one trial runner (automl.executors.runner.train_streamed) that the search's trials,
the refit and retrain all train through."""

from __future__ import annotations

from automl.executors.runner import train_streamed
from automl.tracking import Tracker
from automl.trial import RunOptions, TrialConfig
from tests.robust_helpers import prebuilt_store


def test_train_streamed_sends_each_epoch_to_the_run_and_the_display(tmp_path):
    prebuilt_store(tmp_path)
    tracker = Tracker(None, "exp")
    parent = tracker.start_search("s-1", {}, {})
    run_id = tracker.start_trial(parent, "s-1", "0", {})
    calls, shown = [], []

    def fake_trial(cfg, data, *, options, on_epoch, seed, stop_after):
        calls.append((cfg, data, options, seed, stop_after))
        for step, phase in enumerate(["phase1", "phase1", "phase2"]):
            on_epoch({"step": step, "phase": phase, "val_accuracy": 0.25 * step, "loss": 1.0})
        return "the outcome"

    cfg, options = TrialConfig(), RunOptions(embedding_cache=False)
    out = train_streamed(
        cfg,
        "data",
        tracker=tracker,
        run_id=run_id,
        options=options,
        train=fake_trial,
        on_progress=shown.append,
        seed=7,
        stop_after=3,
    )
    assert out == "the outcome"
    assert calls == [(cfg, "data", options, 7, 3)]  # what differs goes through untouched
    assert [e["step"] for e in shown] == [0, 1, 2]
    history = tracker.client.get_metric_history(run_id, "val_accuracy")
    assert [(m.step, m.value) for m in history] == [(0, 0.0), (1, 0.25), (2, 0.5)]
    phases = tracker.client.get_metric_history(run_id, "phase")
    assert [m.value for m in phases] == [1.0, 1.0, 2.0]
