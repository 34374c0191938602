"""Training per task (issue 18): heads and losses, per-epoch objectives, ranking, class weights.

Tiny bundles built directly (32 px images whose targets are their colour), tiny trials.
"""

from __future__ import annotations

import numpy as np
import pytest

from automl.data import DataBundle
from automl.errors import SearchError
from automl.metrics import direction, rank_key
from automl.tasks import Classification, MultiLabel, Regression
from automl.trial import RunOptions, TrialConfig, run_trial

SCRATCH = dict(
    family="scratch",
    image_size=16,
    blocks=1,
    conv_layers=1,
    filters=8,
    pooling="avg",
    dropout=0.0,
    learning_rate=1e-2,
    batch_size=16,
    augment="none",
    lr_schedule="constant",
    label_smoothing=0.1,  # classification's only: the other tasks must ignore it
)


def _bundle(x, targets, task, n_train: int, n_val: int) -> DataBundle:
    """Train / val / test splits of ``x``, ``targets`` encoded by the fitted ``task``."""
    task.fit(targets[:n_train])
    y = task.encode(targets)
    names = getattr(task, "labels_", None) or getattr(task, "target_names_", None)
    a, b = n_train, n_train + n_val
    bundle = DataBundle(
        name="tiny",
        source="arrays",
        class_names=list(names or task.classes_),
        x_train=x[:a],
        y_train=y[:a],
        x_val=x[a:b],
        y_val=y[a:b],
        x_test=x[b:],
        y_test=y[b:],
        task=task,
    )
    return bundle


def _regression(n: int = 96):
    """Grey images whose target is their brightness (in 0-100)."""
    rng = np.random.default_rng(0)
    level = rng.uniform(0, 1, n)
    x = (level[:, None, None, None] * 200 + rng.integers(0, 40, (n, 32, 32, 3))).astype(np.uint8)
    return x, (level * 100.0).astype(np.float64)


def _multilabel(n: int = 96):
    """Images with any of red / green / blue switched on; the labels are the colours on."""
    rng = np.random.default_rng(1)
    on = rng.random((n, 3)) < 0.35
    on[on.sum(axis=1) == 0, rng.integers(0, 3)] = True  # every image has a label
    x = rng.integers(0, 50, (n, 32, 32, 3)).astype(np.uint8)
    x[on[:, None, None, :].repeat(32, 1).repeat(32, 2)] += 180
    labels = [[c for c, v in zip(("red", "green", "blue"), row) if v] for row in on]
    return x, labels


def test_regression_trial_learns_and_logs_val_mae_in_target_units():
    x, v = _regression()
    data = _bundle(x, v, Regression(), 64, 32)
    epochs = []
    out = run_trial(
        TrialConfig.from_values({**SCRATCH, "epochs": 25}),
        data,
        options=RunOptions(objective="val_mae", early_stopping_patience=0),
        on_epoch=epochs.append,
        seed=0,
    )
    val_true = v[64:96]
    baseline = float(np.mean(np.abs(val_true - v[:64].mean())))  # predict the training mean
    assert model_output_shape(out.model) == (None, 1)
    pred = data.task.decode(out.model.predict(x[64:96], verbose=0))
    mae = float(np.mean(np.abs(pred - val_true)))
    assert out.metrics["val_mae"] == pytest.approx(mae, rel=1e-3, abs=1e-3)  # the best epoch's
    assert mae < 0.5 * baseline, (mae, baseline)
    assert all({"val_mae", "val_rmse", "val_r2"} <= set(e) for e in epochs)
    assert min(e["val_mae"] for e in epochs) == pytest.approx(out.metrics["val_mae"])
    assert np.isnan(out.metrics["val_accuracy"])


def model_output_shape(model):
    return tuple(model.output_shape)


def test_multilabel_trial_learns_macro_f1_well_above_all_positive():
    x, labels = _multilabel()
    data = _bundle(x, np.array(labels, dtype=object), MultiLabel(), 64, 32)
    out = run_trial(
        TrialConfig.from_values({**SCRATCH, "epochs": 20}),
        data,
        options=RunOptions(objective="val_macro_f1", early_stopping_patience=0),
        seed=0,
    )
    from automl.metrics import macro_f1

    y_val = data.y_val
    all_positive = macro_f1(y_val, np.ones_like(y_val))
    probs = out.model.predict(x[64:96], verbose=0)
    assert probs.min() >= 0 and probs.max() <= 1 and probs.shape == (32, 3)  # sigmoid units
    f1 = macro_f1(y_val, (probs >= 0.5).astype(int))
    assert out.metrics["val_macro_f1"] == pytest.approx(f1)
    assert f1 > all_positive + 0.25, (f1, all_positive)


def test_regression_phase1_on_cached_embeddings_uses_the_targets():
    from automl.embeddings import EmbeddingCache

    x, v = _regression(64)
    data = _bundle(x, v, Regression(), 40, 24)
    cfg = TrialConfig.from_values(
        dict(
            family="pretrained",
            backbone="efficientnet_lite0",
            weights="imagenet",  # the ImageNet weights a pip package ships (no network)
            image_size=32,
            head_epochs=20,
            fine_tune_epochs=0,
            fine_tune_depth=0.0,
            learning_rate=1e-2,
            batch_size=16,
            dropout=0.0,
            head_batchnorm=True,  # the features vary little: normalised, the head learns fast
            label_smoothing=0.1,
        )
    )
    cache = EmbeddingCache()
    epochs = []
    out = run_trial(
        cfg,
        data,
        options=RunOptions(objective="val_rmse"),
        embeddings=cache,
        on_epoch=epochs.append,
        seed=0,
    )
    assert cache.misses == 1  # phase 1 trained on the cached features
    assert out.model.layers[-1].get_layer("head_dense").activation.__name__ == "linear"
    assert out.metrics["val_rmse"] == min(e["val_rmse"] for e in epochs)
    baseline = float(np.sqrt(np.mean((v[40:] - v[:40].mean()) ** 2)))  # predict the mean
    assert out.metrics["val_rmse"] < 0.7 * baseline, (out.metrics["val_rmse"], baseline)


def test_class_weight_balanced_reaches_fit(monkeypatch):
    import keras

    seen = []
    real_fit = keras.Model.fit

    def fit(self, *args, **kwargs):
        seen.append({k: kwargs.get(k) for k in ("class_weight", "sample_weight")})
        spec = getattr(args[0], "element_spec", ()) if args else ()
        seen[-1]["weighted_dataset"] = len(spec) == 3  # (images, targets, sample weights)
        kwargs["epochs"] = min(kwargs.get("epochs", 1), 1)
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", fit)
    rng = np.random.default_rng(2)
    x = rng.integers(0, 255, (40, 32, 32, 3)).astype(np.uint8)
    y = np.array([0] * 32 + [1] * 8)[rng.permutation(40)]
    data = _bundle(x, y, Classification(), 24, 8)
    cfg = {**SCRATCH, "epochs": 1, "class_weight": "balanced"}
    run_trial(TrialConfig.from_values(cfg), data, seed=0)
    counts = np.bincount(data.y_train, minlength=2)
    expect = {i: len(data.y_train) / (2 * c) for i, c in enumerate(counts)}
    assert seen[-1]["class_weight"] == pytest.approx(expect)
    # multi-label: one weight per image (its labels' positive weights), not a class dict
    xm, labels = _multilabel(40)
    mdata = _bundle(xm, np.array(labels, dtype=object), MultiLabel(), 24, 8)
    run_trial(
        TrialConfig.from_values(cfg), mdata, options=RunOptions(objective="val_micro_f1"), seed=0
    )
    assert seen[-1]["class_weight"] is None and seen[-1]["weighted_dataset"]

    # phase 1 on cached embeddings: the per-image weights go to the head's fit
    class Cache:  # stands in for EmbeddingCache: zero features of the right width
        def get(self, features, cfg, data, seed=0):
            width = features.output_shape[-1]
            return np.zeros((len(data.y_train), width)), np.zeros((len(data.y_val), width))

    head = dict(family="pretrained", backbone="mobilenet_v3_small", weights="random")
    pcfg = {**head, "image_size": 32, "head_epochs": 1, "fine_tune_depth": 0.0}
    pcfg["class_weight"] = "balanced"
    run_trial(
        TrialConfig.from_values(pcfg),
        mdata,
        options=RunOptions(objective="val_micro_f1"),
        embeddings=Cache(),
        seed=0,
    )
    from automl.imbalance import sample_weights

    assert seen[-1]["sample_weight"] == pytest.approx(sample_weights(mdata.y_train))
    # without it (the default) fit gets neither, as before
    run_trial(TrialConfig.from_values({**SCRATCH, "epochs": 1}), data, seed=0)
    assert seen[-1] == {"class_weight": None, "sample_weight": None, "weighted_dataset": False}
    assert "class_weight" not in TrialConfig.from_values(SCRATCH).to_dict()  # not logged


def test_class_weight_balanced_on_regression_is_refused():
    x, v = _regression(40)
    data = _bundle(x, v, Regression(), 24, 8)
    cfg = TrialConfig.from_values({**SCRATCH, "epochs": 1, "class_weight": "balanced"})
    with pytest.raises(SearchError, match="class_weight='balanced' does not apply to regression"):
        run_trial(cfg, data, options=RunOptions(objective="val_mae"))


def test_objective_of_another_task_is_refused():
    x, v = _regression(40)
    data = _bundle(x, v, Regression(), 24, 8)
    with pytest.raises(SearchError, match="objective 'val_accuracy' does not apply to regression"):
        run_trial(TrialConfig.from_values({**SCRATCH, "epochs": 1}), data)


def test_rank_key_ranks_each_objective_in_its_direction():
    a = {"val_accuracy": float("nan"), "val_loss": 0.5, "val_mae": 3.0, "val_r2": 0.2}
    b = {"val_accuracy": float("nan"), "val_loss": 0.4, "val_mae": 4.0, "val_r2": 0.9}
    assert rank_key(a, "val_mae") > rank_key(b, "val_mae")  # lower error is better
    assert rank_key(b, "val_r2") > rank_key(a, "val_r2")
    assert rank_key({"val_loss": 0.1}, "val_mae") < rank_key(a, "val_mae")  # missing: worst
    # equal objective: the lower val_loss wins
    assert rank_key({**a, "val_loss": 0.1}, "val_mae") > rank_key(a, "val_mae")
    # classification's two objectives rank exactly as they always did
    s = {"val_accuracy": 0.8, "val_loss": 0.3}
    assert rank_key(s, "val_accuracy") == (0.8, -0.3)
    assert rank_key(s, "val_loss") == (-0.3, 0.8)
    assert [direction(o) for o in ("val_mae", "val_rmse", "val_r2", "val_macro_f1")] == [
        "min",
        "min",
        "max",
        "max",
    ]


def test_oracle_objective_has_the_objectives_direction():
    from automl.search.oracle import make_oracle
    from automl.search.settings import SearchSettings
    from automl.space import parse_space
    from tests.conftest import TINY_SPACE

    for objective, want in (("val_mae", "min"), ("val_macro_f1", "max"), ("val_loss", "min")):
        space = parse_space({**TINY_SPACE, "objective": objective})
        oracle = make_oracle(space, SearchSettings(max_trials=2))
        assert (oracle.objective.name, oracle.objective.direction) == (objective, want)


def test_space_takes_every_tasks_objective_and_names_them_on_a_typo():
    from automl.errors import SpaceError
    from automl.space import parse_space
    from tests.conftest import TINY_SPACE

    assert parse_space({**TINY_SPACE, "objective": "val_r2"}).objective == "val_r2"
    with pytest.raises(SpaceError, match="objective.*'val_mea'.*val_mae"):
        parse_space({**TINY_SPACE, "objective": "val_mea"})


def test_default_space_per_task_and_class_weights_when_imbalanced():
    from automl.autospace import default_space

    rng = np.random.default_rng(3)
    x = rng.integers(0, 255, (60, 32, 32, 3)).astype(np.uint8)
    balanced = _bundle(x, np.arange(60) % 3, Classification(), 40, 10)
    space = default_space(balanced, gpu=False)
    assert space.objective == "val_accuracy" and "class_weight" not in space.params
    assert "label_smoothing" in space.params
    y = np.array([0] * 36 + [1] * 4 + [0] * 10 + [1] * 10)  # 9:1 in training
    skewed = default_space(_bundle(x, y, Classification(), 40, 10), gpu=False)
    assert tuple(skewed.params["class_weight"].values) == ("balanced", "none")
    assert all(s["class_weight"] == "balanced" for s in skewed.seed_trials)
    reg = default_space(_bundle(x, rng.normal(size=60), Regression(), 40, 10), gpu=False)
    assert reg.objective == "val_mae"
    assert reg.params["label_smoothing"].value == 0.0 and "class_weight" not in reg.params
    ml = default_space(_bundle(x, rng.random((60, 3)) < 0.5, MultiLabel(), 40, 10), gpu=False)
    assert ml.objective == "val_macro_f1"


def test_regression_default_space_seeds_no_augmentation_and_a_frozen_backbone_first():
    """A flip, rotation, shift or zoom can change a regression target (an angle, a count near
    the border): the seeds augment nothing, the search may still pick it. The first seed is
    the frozen backbone at its native 224 px with a long head phase; classification's seeds
    stay as they were."""
    from automl.autospace import default_space

    rng = np.random.default_rng(4)
    x = rng.integers(0, 255, (60, 32, 32, 3)).astype(np.uint8)
    reg = default_space(_bundle(x, rng.normal(size=60), Regression(), 40, 10), gpu=False)
    assert reg.params["augment"].values[0] == "none" and len(reg.params["augment"].values) > 1
    assert {s["augment"] for s in reg.seed_trials} == {"none"}
    first = reg.seed_trials[0]
    assert (first["family"], first["image_size"], first["fine_tune_depth"]) == (
        "pretrained",
        224,
        0.0,
    )
    assert first["head_epochs"] >= 40
    cls = default_space(_bundle(x, np.arange(60) % 3, Classification(), 40, 10), gpu=False)
    assert [(s["family"], s["augment"]) for s in cls.seed_trials] == [
        ("scratch", "light"),
        ("pretrained", "none"),
    ]
    assert cls.upper("image_size") == 128


def test_trial_scores_and_config_yaml_carry_the_task():
    from automl.executors.base import JobResult
    from automl.executors.runner import _task_config

    m = {"val_accuracy": float("nan"), "val_loss": 0.2, "val_mae": 3.5, "val_images": 8.0}
    assert JobResult(metrics=m).score == {
        "val_accuracy": m["val_accuracy"],
        "val_loss": 0.2,
        "val_mae": 3.5,
    }
    x, v = _regression(40)
    data = _bundle(x, v, Regression(), 24, 8)
    assert _task_config(data)["task"]["mean"] == pytest.approx([v[:24].mean()])


def test_progress_keeps_the_lowest_error_as_best_and_shows_the_objective_per_epoch():
    import io

    from automl.progress import Progress

    out = io.StringIO()
    p = Progress(verbose=1, stream=out)
    p.bars = False
    p.objective = "val_mae"
    p.trial_finished("0", {"val_mae": 5.0})
    p.trial_finished("1", {"val_mae": 3.0})
    p.trial_finished("2", {"val_mae": 4.0})
    assert p.best == 3.0
    p.epoch({"step": 0, "phase": "phase1", "loss": 0.5, "val_loss": 0.4, "val_mae": 2.5})
    assert "val_mae=2.5000" in out.getvalue()
