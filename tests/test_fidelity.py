"""Multi-fidelity over data size: capped trials train on a stratified subset; small data not."""

import math

import numpy as np

import automl
from automl import fidelity
from automl.autospace import default_space_dict
from automl.data import load_data
from automl.tracking import Tracker
from automl.trial import TrialConfig, run_trial


def _arrays(n=600, size=16, classes=3):
    rng = np.random.default_rng(0)
    y = np.arange(n) % classes
    x = rng.integers(0, 60, size=(n, size, size, 3)).astype(np.uint8)
    for c in range(classes):
        x[y == c, :, :, c] += 150
    return x, y


def _info(train, val, images):
    return {
        "native_size": 300,
        "grayscale": False,
        "images": images,
        "train": train,
        "val": val,
        "classes": 10,
        "low_res": False,
    }


def test_ladder_caps_large_data_only():
    assert fidelity.ladder(1250, 3) == []  # the demo: no cap
    assert fidelity.ladder(4000, 3) == []  # a few thousand images: no cap
    assert fidelity.ladder(7000, None) == []  # no time budget: no cap
    assert fidelity.ladder(7000, 3) == [1000, 2000, 4000, 7000]
    assert fidelity.ladder(70000, 30)[0] == 10000  # a longer budget starts higher
    assert [fidelity.rung([1500, 3000, 7000], i, 2) for i in range(7)] == [
        1500,
        1500,
        3000,
        3000,
        7000,
        7000,
        7000,
    ]
    small = default_space_dict(_info(700, 150, 1000), budget_minutes=3)
    assert "train_images" not in small["hyperparameters"]
    assert all("train_images" not in s for s in small["seed_trials"])
    large = default_space_dict(_info(70000, 15000, 100000), budget_minutes=3)
    assert large["hyperparameters"]["train_images"]["choice"][0] == 1000
    assert large["hyperparameters"]["train_images"]["choice"][-1] == 70000
    assert large["hyperparameters"]["val_images"] == 1000
    assert all(s["train_images"] == 1000 for s in large["seed_trials"])


def test_stratified_subset_keeps_shares_and_nests():
    y = np.array([0] * 600 + [1] * 300 + [2] * 100)
    a, b = fidelity.stratified(y, 100), fidelity.stratified(y, 400)
    assert np.bincount(y[a]).tolist() == [60, 30, 10]
    assert set(a) <= set(b) and len(b) == 400


def test_capped_trial_trains_on_the_cap():
    data = load_data(_arrays())
    assert len(data.y_train) > 200
    cfg = TrialConfig(
        family="scratch", image_size=16, blocks=1, filters=8, epochs=2, batch_size=16,
        train_images=64, val_images=30,
    )  # fmt: skip
    out = run_trial(cfg, data)
    assert out.metrics["train_images"] == 64 and out.metrics["val_images"] == 30
    assert int(out.model.optimizer.iterations) == 2 * math.ceil(64 / 16)  # steps of 2 epochs
    full = run_trial(TrialConfig(**{**cfg.__dict__, "train_images": 0, "val_images": 0}), data)
    assert full.metrics["train_images"] == len(data.y_train)  # 0: all of them


def test_search_logs_each_trials_fidelity(tmp_path):
    space = {
        "name": "ladder",
        "hyperparameters": {
            "family": "scratch",
            "image_size": 16,
            "blocks": 1,
            "filters": 8,
            "epochs": 1,
            "batch_size": 16,
            "learning_rate": {"min": 1e-3, "max": 1e-2, "sampling": "log"},
            "train_images": {"choice": [48, 96]},
            "val_images": 40,
        },
    }
    result = automl.search(
        data=_arrays(),
        space=space,
        max_trials=2,
        tuner="random",
        experiment="ladder",
        workdir=str(tmp_path / "work"),
    )
    runs = Tracker(None, "ladder").trial_runs(result.parent_run_id)
    got = sorted(
        (
            r.data.params["trial_id"],
            r.data.params["train_images"],
            r.data.params["val_images"],
            r.data.metrics["train_images"],
        )
        for r in runs
    )
    # Trial i takes rung i (one family: one trial per round), whatever the oracle drew.
    assert got == [("0", "48", "40", 48.0), ("1", "96", "40", 96.0)]


def test_a_capped_search_scores_a_stratified_sample_of_a_large_test_split():
    from automl.data import DataBundle

    x, y = _arrays(n=9000, size=8, classes=3)
    data = DataBundle(
        name="t", source="t", class_names=["a", "b", "c"],
        x_train=x[:100], y_train=y[:100], x_val=x[100:200], y_val=y[100:200],
        x_test=x[200:], y_test=y[200:],
    )  # fmt: skip
    assert fidelity.test_images(8800, 0) == 8800  # validation not capped: the whole split
    assert fidelity.test_images(1500, 1000) == 1500  # 10k images: the whole split
    assert fidelity.test_images(15000, 1000) == fidelity.TEST_PER_VAL * 1000  # 100k: a sample
    assert fidelity.test_sample(data, 0) is data
    assert fidelity.test_sample(data, 5000) is data  # 2 x 5000 >= 8800: nothing cut
    cut = fidelity.test_sample(data, 1000)
    assert len(cut.y_test) == 2000 and len(cut.x_test) == 2000
    shares = np.bincount(cut.y_test) / 2000
    assert np.allclose(shares, np.bincount(y[200:]) / 8800, atol=0.01)  # stratified
    assert cut.x_train is data.x_train and cut.x_val is data.x_val  # only the test split
    np.testing.assert_array_equal(np.asarray(cut.x_test[:5]), x[200:][np.sort(
        fidelity.stratified(y[200:], 2000))[:5]])  # fmt: skip
