"""Search-space loading and validation: every error names the key, the value and what is allowed."""

import pytest

from automl.errors import SpaceError
from automl.space import BUILTIN_SPACES, load_space, parse_space


def test_builtin_spaces_load_and_convert():
    for name in ("default", "gpu"):
        space = load_space(name)
        hp = space.to_keras_tuner()
        assert set(hp.values) == set(space.params)
        assert "learning_rate" in space.searched()
    assert load_space(BUILTIN_SPACES / "default.yaml").name == "default"


def test_log_range_and_fixed_values():
    space = parse_space(
        {
            "hyperparameters": {
                "learning_rate": {"min": 1e-4, "max": 1e-2, "sampling": "log"},
                "batch_size": 16,
            }
        }
    )
    lr = space.params["learning_rate"]
    assert (lr.kind, lr.low, lr.high, lr.sampling) == ("range", 1e-4, 1e-2, "log")
    assert space.params["batch_size"].value == 16
    assert space.params["dropout"].kind == "fixed"  # unspecified keys take their defaults


@pytest.mark.parametrize(
    "hps, message",
    [
        (
            {"learnin_rate": 0.1},
            r"unknown key hyperparameters.learnin_rate \(value 0.1\); known keys are: backbone",
        ),
        (
            {"backbone": "resnet9000"},
            r"hyperparameters.backbone: unknown backbone 'resnet9000'; choose one of: .*mobilenet_v3_small",
        ),
        ({"backbone": {"choice": ["mobilenet_v3_small", "nope"]}}, r"unknown backbone 'nope'"),
        (
            {"learning_rate": {"min": 0.1, "max": 0.01}},
            r"hyperparameters.learning_rate: min=0.1 is above max=0.01; swap them so that min <= max",
        ),
        (
            {"dropout": -0.1},
            r"hyperparameters.dropout=-0.1 is not allowed; allowed range is \[0, 0.95\]",
        ),
        (
            {"dropout": {"min": -0.2, "max": 0.3}},
            r"hyperparameters.dropout.min=-0.2 is not allowed",
        ),
        (
            {"batch_size": 0},
            r"hyperparameters.batch_size=0 is not allowed; allowed range is \[1, 4096\]",
        ),
        ({"batch_size": 12.5}, r"batch_size=12.5 is not allowed; expected an integer"),
        ({"augment": "heavy"}, r"augment=.heavy. is not allowed; choose one of: none, light, flip"),
        (
            {"dropout": {"min": 0.0, "max": 0.3, "sampling": "log"}},
            r"dropout.min=0.0 is not allowed; log sampling needs min > 0",
        ),
        (
            {"learning_rate": {"min": 0.001, "max": 0.1, "samplin": "log"}},
            r"learning_rate.samplin='log' is not allowed; a range takes min, max",
        ),
        (
            {"image_size": {"choice": []}},
            r"image_size.choice=\[\] is not allowed; expected a non-empty list",
        ),
        (
            {"weights": "somewhere"},
            r"weights='somewhere' is not allowed; use 'imagenet', 'random', or a path",
        ),
    ],
)
def test_invalid_values_name_key_value_and_fix(hps, message):
    with pytest.raises(SpaceError, match=message):
        parse_space({"hyperparameters": hps})


def test_unknown_top_level_key():
    with pytest.raises(SpaceError, match=r"hyperparamters=.* is not allowed; top-level keys are"):
        parse_space({"hyperparamters": {}})


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("hyperparameters:\n  dropout: [0.1\n")
    with pytest.raises(SpaceError, match=r"is not valid YAML at line \d+ \(.*\): fix the syntax"):
        load_space(bad)
    with pytest.raises(SpaceError, match=r"search space file 'missing.yaml' does not exist"):
        load_space("missing.yaml")
