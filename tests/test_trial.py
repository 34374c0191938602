"""One trial (automl/trial.py): the configuration, the epoch watch, and a trial's phases as
its family sets them. Tiny and CPU-only: 48 images of 32 px, one or two epochs."""

from __future__ import annotations

import math

import pytest

from automl.trial import BestEpoch, RunOptions, TrialConfig, _EpochWatch, run_trial


class _Model:
    stop_training = False
    weights: list = []


def _watch(guard=None, deadline=None):
    best = BestEpoch("val_accuracy")
    w = _EpochWatch(_Model(), "phase2", None, best, deadline, guard)
    w.set_model(_Model())
    return w, best


def test_the_phase2_guard_stops_after_patience_epochs_below_phase1s_best():
    w, best = _watch(guard=((0.8, -0.5), 2))
    w.on_epoch_end(0, {"val_accuracy": 0.7, "val_loss": 0.6})
    assert not w.model.stop_training and w.worse_in_a_row == 1
    w.on_epoch_end(1, {"val_accuracy": 0.75, "val_loss": 0.6})
    assert w.guard_hit and w.model.stop_training
    assert [e["step"] for e in best.history] == [0, 1] and best.epoch == 1


def test_an_epoch_above_the_baseline_turns_the_guard_off():
    w, _ = _watch(guard=((0.8, -0.5), 1))
    w.on_epoch_end(0, {"val_accuracy": 0.9, "val_loss": 0.3})
    w.on_epoch_end(1, {"val_accuracy": 0.1, "val_loss": 2.0})
    assert w.beat_baseline and not w.guard_hit and not w.model.stop_training


def test_a_nan_loss_or_a_past_deadline_stops_the_fit():
    w, best = _watch()
    w.on_train_batch_end(0, {"loss": math.nan})
    assert w.diverged and w.model.stop_training
    w, best = _watch(deadline=0.0)  # long past
    w.on_epoch_end(0, {"val_accuracy": 0.5, "val_loss": 1.0})
    assert w.deadline_hit and w.model.stop_training and best.epoch == 0


def test_trial_config_keeps_its_fields_and_reads_the_chosen_familys_values():
    positional = TrialConfig("mobilenet_v3_small", "imagenet", 32, 1e-3, 8, 0.1, 0.0, 1, 0)
    assert (positional.backbone, positional.batch_size, positional.fine_tune_epochs) == (
        "mobilenet_v3_small",
        8,
        0,
    )
    cfg = TrialConfig.from_values({"family": "scratch", "scratch.residual": "true", "x/y": 1})
    assert cfg.residual is True and cfg.extra == ()
    assert cfg.to_dict() == TrialConfig.from_values(cfg.to_dict()).to_dict()
    with pytest.raises(AttributeError, match="TrialConfig has no attribute 'units'"):
        _ = cfg.units


@pytest.mark.parametrize(
    "family, kw, phases, metrics",
    [
        ("scratch", dict(image_size=16, blocks=1, filters=8, epochs=2), {"phase1"}, set()),
        (
            "pretrained",
            dict(
                backbone="mobilenet_v3_small",
                weights="random",
                image_size=32,
                fine_tune_depth=0.2,
                head_epochs=1,
                fine_tune_epochs=1,
            ),
            {"phase1", "phase2"},
            {"phase2_learning_rate", "phase2_guard"},
        ),
    ],
)
def test_a_trial_runs_the_phases_of_its_family(tiny_arrays, family, kw, phases, metrics):
    from automl.data import load_data

    cfg = TrialConfig(family=family, batch_size=16, **kw)
    seen = []
    out = run_trial(
        cfg,
        load_data(tiny_arrays),
        options=RunOptions(embedding_cache=False, jit_compile=False),
        on_epoch=seen.append,
    )
    assert {e["phase"] for e in seen} == phases and len(seen) == sum(cfg.schedule())
    assert metrics <= set(out.metrics) and not (
        {"phase2_learning_rate", "phase2_guard"} - metrics
    ) & set(out.metrics)
    assert out.metrics["epochs_run"] == len(seen) == 2
    if family == "pretrained":  # guarded, and the model keeps a frozen backbone, as saved
        assert "automl.phase2_guard" in out.tags
        head = out.model.get_layer("head")
        assert len(out.model.trainable_weights) == len(head.trainable_weights) > 0
