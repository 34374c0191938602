"""Model families in the space (conditional hyperparameters), seed trials, the best-epoch
keeper and greedy ensemble selection: fast checks, no search."""

from __future__ import annotations

import os
from pathlib import Path

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


# --- the family registry ---------------------------------------------------------------------


def test_the_registry_is_the_one_source_of_defaults():
    from automl.families.registry import HYPERPARAMETERS, default_of
    from automl.trial import TrialConfig

    # A space that leaves every hyperparameter out trains what TrialConfig() trains (the
    # learning-rate schedule was "cosine" in the space, "constant" in TrialConfig).
    assert TrialConfig.from_values(parse_space({}).defaults()) == TrialConfig()
    assert TrialConfig().lr_schedule == HYPERPARAMETERS["lr_schedule"].default == "cosine"
    # A family's own defaults hold wherever a configuration leaves them out.
    scratch = parse_space({"hyperparameters": {"family": "scratch"}}).defaults()
    assert TrialConfig.from_values(scratch) == TrialConfig.from_values({"family": "scratch"})
    assert TrialConfig.from_values({"family": "scratch"}).image_size == 32
    assert default_of("scratch", "image_size") == 32 and TrialConfig().image_size == 96


def test_families_are_declared_once_with_their_policies():
    import automl.families
    import automl.refit
    import automl.space
    from automl.families.registry import HYPERPARAMETERS, family_names, get_family, refit_refusal

    assert automl.families.FAMILIES == family_names() == ("pretrained", "scratch")
    assert HYPERPARAMETERS["family"].allowed == family_names()
    assert not hasattr(automl.space, "FAMILIES") and not hasattr(automl.refit, "FAMILIES")
    assert get_family("pretrained").refit_pays and not get_family("scratch").refit_pays
    assert refit_refusal("pretrained") is None
    assert refit_refusal("scratch") == (
        "only pretrained trials are refit (a scratch net's replay scored worse)"
    )
    from automl.trial import TrialConfig

    assert get_family("pretrained").schedule(TrialConfig(fine_tune_depth=0.2), 6) == (5, 1)


def test_a_bad_family_class_is_refused_at_registration():
    from automl.errors import SpaceError
    from automl.families import HP, Family, get_family, register_family

    class Twice(Family):
        name = "scratch"

    with pytest.raises(ValueError, match="model family 'scratch' is registered twice"):
        register_family(Twice)

    class Clash(Family):
        name = "clash"
        hyperparameters = {"epochs": HP("float", 1.0, 0.0, 2.0)}

    with pytest.raises(ValueError, match="a shared name needs the same kind and bounds"):
        register_family(Clash)

    class Shares(Family):
        name = "shares"
        hyperparameters = {"dropout": HP("float", 0.1, 0.0, 0.5)}

    with pytest.raises(ValueError, match="declares 'dropout', which every family shares"):
        register_family(Shares)
    with pytest.raises(SpaceError, match="unknown model family 'cnn'; choose one of: pretrained"):
        get_family("cnn")


def test_no_module_compares_family_names():
    """Which family does what is the registry's: no ``family == "scratch"`` anywhere."""
    import ast
    from pathlib import Path

    import automl
    from automl.families.registry import family_names

    names = set(family_names())
    found = []
    for path in sorted(Path(automl.__file__).parent.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(
                isinstance(c, ast.Constant) and c.value in names for c in ast.walk(node)
            ):
                found.append(f"{path.name}:{node.lineno}")
    assert found == []


@pytest.fixture
def dense_family(monkeypatch):
    """tests/plugin_family.py's family, unregistered after the test (the registry is global)."""
    import sys

    from automl.families import registry

    monkeypatch.setenv("AUTOML_PLUGINS", "")  # restored after the test (--plugin sets it)
    root = str(Path(__file__).resolve().parent.parent)  # worker processes import tests.*
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    )
    yield
    registry._REGISTRY.pop("dense", None)
    registry._rebuild()
    sys.modules.pop("tests.plugin_family", None)


def test_a_third_family_is_one_module_that_plugin_registers(
    dense_family, image_folder, tmp_path, capsys
):
    """``--plugin tests.plugin_family`` registers a family with a hyperparameter of its own;
    a search trains it, logs its params, names it, and does not refit it."""
    from mlflow.tracking import MlflowClient

    from automl import cli
    from tests.robust_helpers import prebuilt_store

    prebuilt_store(tmp_path)
    space = Path("dense.yaml")
    space.write_text(
        "hyperparameters:\n  family: dense\n  learning_rate: 1.0e-2\n  batch_size: 16\n"
        "  dense: {units: {choice: [8, 16]}, epochs: 2}\n"
    )
    rc = cli.main(
        ["search", "--data", str(image_folder), "--space", str(space), "--max-trials", "1"]
        + ["--seed", "0", "--experiment", "dense", "--refit", "--plugin", "tests.plugin_family"]
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    client = MlflowClient()
    exp = client.get_experiment_by_name("dense")
    (trial,) = client.search_runs([exp.experiment_id], "tags.`automl.kind` = 'trial'")
    (parent,) = client.search_runs([exp.experiment_id], "tags.`automl.kind` = 'search'")
    assert trial.info.status == "FINISHED"
    params = trial.data.params
    assert params["family"] == "dense" and params["units"] in ("8", "16")
    assert "backbone" not in params and "blocks" not in params  # only the family's own keys
    assert trial.data.tags["mlflow.runName"].startswith("trial-000 dense 8px")
    assert int(trial.data.metrics["epochs_run"]) == 2  # its schedule: one phase of epochs
    assert parent.data.tags["automl.refit"] == (
        "skipped: trial 0 is a dense trial; only pretrained trials are refit "
        "(its refit is not measured)"
    )


def test_a_worker_process_imports_the_plugin_family_it_is_sent(dense_family, monkeypatch):
    """A trial worker knows only AUTOML_PLUGINS, which --plugin sets: asking the registry
    for the family imports the module (as a fresh process would)."""
    import sys

    from automl.families import registry
    from automl.trial import TrialConfig

    assert "tests.plugin_family" not in sys.modules and "dense" not in registry.family_names()
    monkeypatch.setenv("AUTOML_PLUGINS", "tests.plugin_family")
    cfg = TrialConfig.from_values({"family": "dense", "dense.units": 12, "dropout": 0.0})
    assert (cfg.units, cfg.epochs, cfg.image_size) == (12, 2, 8)  # the family's defaults
    assert cfg.to_dict()["units"] == 12 and "blocks" not in cfg.to_dict()
    assert registry.HYPERPARAMETERS["family"].allowed == ("pretrained", "scratch", "dense")
