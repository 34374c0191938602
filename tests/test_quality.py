"""Learning tests: a search must hand back a model that learned, not just plumbing.

Each asserts a test-split accuracy that a broken model (untrained head, frozen random
features, shuffled labels, a wrong preprocessing) cannot reach: far above chance.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _lfw():
    """scikit-image's LFW subset: 200 real 25x25 grayscale photos, 100 faces, 100 not."""
    skdata = pytest.importorskip("skimage.data")
    x = (skdata.lfw_subset() * 255).round().astype(np.uint8)
    y = np.repeat([0, 1], 100)
    return x, y


def test_pretrained_family_learns_real_photos():
    """EfficientNet-Lite0 (its shipped ImageNet weights) + a searched head on real faces."""
    import automl

    x, y = _lfw()
    space = {
        "hyperparameters": {
            "family": "pretrained",
            "backbone": "efficientnet_lite0",
            "weights": "imagenet",
            "image_size": 64,
            "learning_rate": 3.0e-3,
            "batch_size": 32,
            "fine_tune_depth": 0.0,
            "head_epochs": 15,
            "pooling": "avgmax",
            "head_layers": 1,
            "head_units": 64,
            "weight_decay": 1.0e-2,
            "lr_schedule": "cosine",
        }
    }
    result = automl.search(data=(x, y), space=space, max_trials=1, tuner="random", experiment="q1")
    acc = result.test_metrics["test_accuracy"]
    print(f"\nlfw pretrained: test_accuracy={acc:.3f} on {len(result.data.y_test)} images")
    assert acc >= 0.8  # chance is 0.5 (balanced); P(>= 0.8 | chance) < 0.001 on 30 images


def test_scratch_family_learns_the_digits():
    import automl

    space = {
        "hyperparameters": {
            "family": "scratch",
            "image_size": 16,
            "blocks": 2,
            "filters": 16,
            "conv_layers": 1,
            "epochs": 8,
            "learning_rate": 5.0e-3,
            "batch_size": 64,
            "augment": "none",
            "weight_decay": 1.0e-2,
            "lr_schedule": "cosine",
        }
    }
    result = automl.search(data="demo", space=space, max_trials=1, tuner="random", experiment="q2")
    acc = result.test_metrics["test_accuracy"]
    print(f"\ndigits scratch: test_accuracy={acc:.3f}")
    assert acc >= 0.9  # chance is 0.1
    board = result.leaderboard()
    assert board.loc[0, "family"] == "scratch" and board.loc[0, "blocks"] == 2


def test_exported_model_is_the_best_epoch_not_the_last(tmp_path):
    """Validation labels that disagree with training make later epochs worse on validation:
    the export must score exactly like the best epoch (objective val_loss), not the last."""
    import keras

    import automl
    from automl.data import DataBundle
    from tests.conftest import make_tiny_arrays

    x, y = make_tiny_arrays()
    bundle = DataBundle(
        name="tiny",
        source="arrays",
        class_names=["a", "b", "c"],
        x_train=x[:36],
        y_train=y[:36],
        x_val=x[36:],
        y_val=(y[36:] + 1) % 3,  # wrong on purpose: learning the training set hurts val_loss
        x_test=x[36:],
        y_test=y[36:],
    )
    space = {
        "objective": "val_loss",
        "hyperparameters": {
            "family": "scratch",
            "image_size": 16,
            "blocks": 1,
            "filters": 8,
            "conv_layers": 1,
            "epochs": 6,
            "learning_rate": 1.0e-2,
            "batch_size": 12,
            "lr_schedule": "constant",
        },
    }
    result = automl.search(data=bundle, space=space, max_trials=1, tuner="random", experiment="q3")
    run = result.tracker.client.get_run(result.best_trial["run_id"])
    history = result.tracker.client.get_metric_history(run.info.run_id, "val_loss")
    losses = [m.value for m in sorted(history, key=lambda m: m.step)]
    best_epoch = int(run.data.metrics["best_epoch"])
    assert len(losses) >= 3 and best_epoch < len(losses) - 1  # the run this test needs
    assert abs(losses[best_epoch] - losses[-1]) > 1e-3
    path = result.export(tmp_path / "best.keras")
    model = keras.models.load_model(path, safe_mode=True, compile=False)
    p = model.predict(bundle.x_val, verbose=0)
    loss = float(np.mean(-np.log(np.clip(p[np.arange(len(p)), bundle.y_val], 1e-7, 1.0))))
    assert loss == pytest.approx(losses[best_epoch], rel=1e-3, abs=1e-4)
    assert loss == pytest.approx(run.data.metrics["best_val_loss"], rel=1e-3, abs=1e-4)
