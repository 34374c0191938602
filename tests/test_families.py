"""Model families in the space (conditional hyperparameters), seed trials, the best-epoch
keeper and greedy ensemble selection: fast checks, no search."""

from __future__ import annotations

import numpy as np
import pytest

from automl.errors import SpaceError
from automl.space import load_space, parse_space

TWO_FAMILIES = {
    "name": "two",
    "seed_trials": [{"family": "scratch", "blocks": 2}, {"family": "pretrained", "image_size": 64}],
    "hyperparameters": {
        "family": {"choice": ["scratch", "pretrained"]},
        "dropout": {"min": 0.0, "max": 0.4},
        "pretrained": {
            "backbone": "mobilenet_v3_small",
            "weights": "random",
            "image_size": {"choice": [32, 64]},
            "learning_rate": 1.0e-3,
            "head_layers": {"choice": [0, 2]},
            "pooling": {"choice": ["avg", "avgmax"]},
        },
        "scratch": {
            "image_size": 16,
            "learning_rate": {"min": 1.0e-3, "max": 1.0e-2, "sampling": "log"},
            "blocks": {"choice": [1, 2]},
            "separable": {"choice": [False, True]},
            "residual": {"choice": [True, False]},
        },
    },
}


def test_two_family_space_round_trips_and_is_conditional():
    space = parse_space(TWO_FAMILIES)
    assert space.families == ("scratch", "pretrained")
    assert parse_space(space.to_dict()) == space  # the logged YAML reproduces the space
    assert "scratch.blocks" in space.params and "pretrained.image_size" in space.params
    assert "dropout" in space.params  # shared, not overridden: one parameter
    hp = space.to_keras_tuner()
    assert hp.values["family"] == "scratch"
    # scratch is chosen: pretrained's own parameters are inactive
    assert hp.is_active("scratch.blocks") and not hp.is_active("pretrained.image_size")
    assert space.upper("image_size") == 64 and space.max_epochs() == 20


def test_existing_spaces_stay_one_family_with_flat_names():
    space = load_space("default")
    assert space.families == ("pretrained",)
    assert "image_size" in space.params and not any("." in k for k in space.params)
    assert "blocks" not in space.params  # scratch keys belong to the scratch family only


@pytest.mark.parametrize(
    "hps, message",
    [
        ({"blocks": 3}, "hyperparameters.blocks=3 is not allowed; it belongs to family scratch"),
        (
            {"family": "scratch", "scratch": {"backbone": "x"}},
            "hyperparameters.scratch.backbone='x' is not allowed; not a scratch hyperparameter",
        ),
        ({"scratch": {}}, "the space does not choose family 'scratch'"),
        ({"family": "cnn"}, "hyperparameters.family='cnn' is not allowed; choose one of"),
        (
            {"family": "scratch", "separable": 1},
            "separable=1 is not allowed; expected true or false",
        ),
        ({"pooling": "sum"}, "pooling='sum' is not allowed; choose one of: avg, max, avgmax"),
        ({"head_layers": 3}, "head_layers=3 is not allowed; allowed range is [0, 2]"),
    ],
)
def test_bad_family_keys_are_one_line_errors(hps, message):
    with pytest.raises(SpaceError, match=message.replace("[", r"\[").replace("(", r"\(")):
        parse_space({"hyperparameters": hps})


def test_seed_trials_are_validated_against_the_space():
    bad = dict(TWO_FAMILIES, seed_trials=[{"family": "scratch", "blocks": 5}])
    with pytest.raises(SpaceError, match=r"seed_trials\[0\].blocks=5 is not allowed; the space"):
        parse_space(bad)
    bad = dict(TWO_FAMILIES, seed_trials=[{"family": "scratch", "backbone": "a"}])
    with pytest.raises(SpaceError, match=r"seed_trials\[0\].backbone='a' is not allowed"):
        parse_space(bad)


def test_seeded_oracle_runs_the_seeds_first_then_explores():
    import keras_tuner as kt

    from automl.autospace import seeded_oracle
    from automl.trial import TrialConfig

    space = parse_space(TWO_FAMILIES)
    cls = seeded_oracle(kt.oracles.RandomSearchOracle, space.seed_trials)
    oracle = cls(
        objective=kt.Objective("val_accuracy", "max"),
        hyperparameters=space.to_keras_tuner(),
        max_trials=10,
        seed=0,
    )
    first = TrialConfig.from_values(oracle.populate_space("0")["values"])
    second = TrialConfig.from_values(oracle.populate_space("1")["values"])
    assert (first.family, first.blocks, first.image_size) == ("scratch", 2, 16)
    assert (second.family, second.image_size) == ("pretrained", 64)
    assert second.backbone == "mobilenet_v3_small"
    # the trial number decides: a resumed search at trial 2 does not seed again
    third = oracle.populate_space("2")["values"]
    assert third["family"] in ("scratch", "pretrained")
    assert {k.split(".")[0] for k in third if "." in k} == {third["family"]}


def test_trial_config_reads_the_chosen_family_and_logs_only_its_keys():
    from automl.trial import TrialConfig

    values = {
        "family": "scratch",
        "dropout": 0.3,
        "scratch.image_size": 16,
        "pretrained.image_size": 64,
        "scratch.separable": 1,
    }
    cfg = TrialConfig.from_values(values)
    assert (cfg.image_size, cfg.separable, cfg.dropout) == (16, True, 0.3)
    assert cfg.schedule() == (cfg.epochs, 0)
    d = cfg.to_dict()
    assert "blocks" in d and "backbone" not in d and d["family"] == "scratch"
    assert TrialConfig.from_values(d) == cfg


def test_families_load_in_safe_mode(tmp_path):
    import keras

    from automl.families import build
    from automl.trial import TrialConfig

    x = np.random.default_rng(0).integers(0, 255, (2, 20, 24, 3)).astype("float32")
    for cfg in (
        TrialConfig(family="scratch", image_size=16, blocks=2, separable=True, residual=True),
        TrialConfig(family="scratch", image_size=16, blocks=1, pooling="avgmax", kernel_size=5),
        TrialConfig(
            backbone="mobilenet_v3_small",
            weights="random",
            image_size=32,
            pooling="avgmax",
            head_layers=2,
            head_batchnorm=True,
        ),
    ):
        model = build(cfg, 3).model
        path = tmp_path / f"{cfg.family}_{cfg.pooling}.keras"
        model.save(path)
        again = keras.models.load_model(path, safe_mode=True, compile=False)
        np.testing.assert_allclose(
            again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
        )


def test_best_epoch_keeper_follows_the_objective_and_restores_weights():
    import keras

    from automl.trial import BestEpoch

    class Target:
        def __init__(self):
            self.weights = [keras.Variable(np.zeros(2, "float32"))]

    t = Target()
    acc = BestEpoch("val_accuracy")
    loss = BestEpoch("val_loss")
    epochs = [
        {"val_accuracy": 0.5, "val_loss": 0.9},
        {"val_accuracy": 0.8, "val_loss": 0.7},  # best accuracy
        {"val_accuracy": 0.8, "val_loss": 0.6},  # same accuracy, lower loss: better still
        {"val_accuracy": 0.7, "val_loss": 0.4},  # best loss
        {"val_accuracy": 0.6, "val_loss": 0.8},
    ]
    for i, logs in enumerate(epochs):
        t.weights[0].assign(np.full(2, i, "float32"))
        acc.offer(i, logs, t)
        loss.offer(i, logs, t)
    assert (acc.epoch, loss.epoch) == (2, 3)
    acc.restore(t)
    assert np.asarray(t.weights[0]).tolist() == [2.0, 2.0]
    loss.restore(t)
    assert np.asarray(t.weights[0]).tolist() == [3.0, 3.0]


def test_phase2_learning_rate_is_bounded():
    from automl.trial import PHASE2_MAX_LR, TrialConfig, phase2_learning_rate

    assert phase2_learning_rate(TrialConfig(learning_rate=1e-3, fine_tune_lr_factor=0.1)) == 1e-4
    assert phase2_learning_rate(TrialConfig(learning_rate=3e-2, fine_tune_lr_factor=1.0)) == (
        PHASE2_MAX_LR
    )


def test_greedy_selection_finds_a_better_mix():
    from automl.ensemble import greedy_selection

    y = np.array([0, 1, 0, 1, 0, 1])

    def probs(correct):  # confident and right where `correct`, else mildly wrong
        p = np.zeros((6, 2))
        for i, ok in enumerate(correct):
            p[i, y[i]] = 0.9 if ok else 0.4
            p[i, 1 - y[i]] = 1 - p[i, y[i]]
        return p

    a = probs([1, 1, 1, 1, 0, 0])  # 4/6 right
    b = probs([0, 0, 1, 1, 1, 1])  # 4/6 right
    c = probs([0, 0, 0, 0, 0, 0])  # all wrong
    chosen = greedy_selection([a, b, c], y, rounds=6)
    assert 2 not in chosen and {0, 1} <= set(chosen)
    mix = np.mean([[a, b, c][i] for i in chosen], axis=0)
    assert np.mean(mix.argmax(1) == y) == 1.0  # each alone gets 4/6


def test_greedy_selection_starts_from_the_two_best():
    from automl.ensemble import greedy_selection

    y = np.array([0, 1, 0, 1])
    eye = np.eye(2)
    best = eye[y] * 0.8 + 0.1  # 4/4 right
    second = eye[[0, 1, 0, 0]] * 0.6 + 0.2  # 3/4 right
    worst = eye[1 - y] * 0.8 + 0.1  # all wrong
    # Sorted initialisation: the two best singles come first, whatever follows.
    assert greedy_selection([worst, second, best], y, rounds=1)[:1] == [2]
    assert greedy_selection([worst, second, best], y, rounds=4)[:2] == [2, 1]
    assert greedy_selection([worst, second, best], y, init=1, rounds=1) == [2]


@pytest.mark.parametrize(
    "info, families",
    [
        (dict(native_size=8, grayscale=True, images=1797, classes=10), ("scratch",)),
        (dict(native_size=25, grayscale=True, images=200, classes=2), ("scratch", "pretrained")),
        (dict(native_size=300, grayscale=False, images=400, classes=10), ("pretrained", "scratch")),
    ],
)
def test_default_space_follows_the_data(info, families):
    from automl.autospace import LOW_RES, default_space_dict

    info = dict(info, low_res=info["native_size"] <= LOW_RES)
    space = parse_space(default_space_dict(info, gpu=False))
    assert space.families == families
    assert [s["family"] for s in space.seed_trials] == list(families)  # one seed per family
    assert parse_space(space.to_dict()) == space  # the logged YAML reproduces it (seeds too)
    if "pretrained" in families:
        assert space.upper("image_size") <= 128  # CPU sizes
