"""Bad input gets one line on stderr (exit code 2) naming the value and the fix, before any
training and before the MLflow store is even created; odd but valid images simply work."""

from __future__ import annotations

import logging
import re
import shutil
import time

import numpy as np
import pytest

import automl
from automl import cli
from automl.errors import DataError, SearchError, WeightsUnavailableError
from tests.robust_helpers import FAST_SPACE_YAML


@pytest.fixture
def inputs(tmp_path, image_folder):
    """Every bad input of the table below, made from the 48-image fixture folder."""
    p = {"images": image_folder, "space": tmp_path / "space.yaml", "file": tmp_path / "space.yaml"}
    p["space"].write_text(FAST_SPACE_YAML)
    (tmp_path / "empty").mkdir()
    for c in ("a", "b"):
        (tmp_path / "texts" / c).mkdir(parents=True)
        (tmp_path / "texts" / c / "notes.txt").write_text("not an image")
    shutil.copytree(image_folder / "class_0", tmp_path / "single" / "class_0")
    few = tmp_path / "few"
    shutil.copytree(image_folder, few)
    for f in sorted((few / "class_2").iterdir())[2:]:
        f.unlink()
    corrupt = tmp_path / "corrupt"
    shutil.copytree(image_folder, corrupt)
    (corrupt / "class_0" / "broken.png").write_bytes(
        (image_folder / "class_0" / "0.png").read_bytes()[:100]
    )
    (corrupt / "class_1" / "readme.txt").write_text("notes")
    for name, text in {
        "badyaml": "hyperparameters:\n  dropout: [0.1\n",
        "range": "hyperparameters:\n  dropout: 2.0\n",
        "minmax": "hyperparameters:\n  learning_rate: {min: 0.1, max: 0.01}\n",
        "key": "hyperparameters:\n  dropuot: 0.1\n",
        "backbone": "hyperparameters:\n  backbone: resnet9000\n",
        "noweights": FAST_SPACE_YAML + "  weights: missing.weights.h5\n",
    }.items():
        p[name] = tmp_path / f"{name}.yaml"
        p[name].write_text(text.replace("  weights: random\n", ""))
    for name in ("empty", "texts", "single", "few", "corrupt"):
        p[name] = tmp_path / name
    return p


# (arguments after `automl search`, the whole stderr line as a regex)
CASES = {
    "data path missing": (
        "--data {tmp}/nope --space {space}",
        r"automl: error: data path '.*/nope' does not exist; pass 'demo', 'tfds:NAME' or a folder of class sub-folders",
    ),
    "data path is a file": (
        "--data {file} --space {space}",
        r"automl: error: data path '.*space.yaml' is a file; pass a folder with one sub-folder of images per class",
    ),
    "folder without images": (
        "--data {empty} --space {space}",
        r"automl: error: data folder '.*empty' has no images; it needs one sub-folder per class with image files inside \(e.g. cats/1.jpg, dogs/2.png\)",
    ),
    "folder of non-image files": (
        "--data {texts} --space {space}",
        r"automl: error: data folder '.*texts' has no readable images \(all 2 files failed to decode\)",
    ),
    "single class": (
        "--data {single} --space {space}",
        r"automl: error: data '.*single' has a single class \(class_0\); a classifier needs at least 2 classes",
    ),
    "class too small to split": (
        "--data {few} --space {space}",
        r"automl: error: class 'class_2' in '.*few' has 2 image\(s\); the train/val/test split needs at least 3 per class: add images or drop the class",
    ),
    "corrupt and non-image files, --strict-images": (
        "--data {corrupt} --space {space} --strict-images",
        r"automl: error: 2 file\(s\) in '.*corrupt' are not readable images: class_0/broken.png, class_1/readme.txt; remove them or run without --strict-images to skip them",
    ),
    "invalid YAML": (
        "--data {images} --space {badyaml}",
        r"automl: error: search space '.*badyaml.yaml' is not valid YAML at line 3 \(expected ',' or '\]', but got '<stream end>'\): fix the syntax",
    ),
    "value out of range": (
        "--data {images} --space {range}",
        r"automl: error: search space: hyperparameters.dropout=2.0 is not allowed; allowed range is \[0, 0.95\]",
    ),
    "range min above max": (
        "--data {images} --space {minmax}",
        r"automl: error: search space: hyperparameters.learning_rate: min=0.1 is above max=0.01; swap them so that min <= max",
    ),
    "unknown space key": (
        "--data {images} --space {key}",
        r"automl: error: search space: unknown key hyperparameters.dropuot \(value 0.1\); known keys are: backbone, weights, .*",
    ),
    "space file missing": (
        "--data {images} --space {tmp}/nospace.yaml",
        r"automl: error: search space file '.*nospace.yaml' does not exist; pass a YAML file or a built-in name \(default, gpu\)",
    ),
    "unknown backbone": (
        "--data {images} --space {backbone}",
        r"automl: error: search space: hyperparameters.backbone: unknown backbone 'resnet9000'; choose one of: .*mobilenet_v3_small.*",
    ),
    "weights file missing": (
        "--data {images} --space {noweights}",
        r"automl: error: weights file 'missing.weights.h5' in the search space does not exist; pass an existing .weights.h5 file, or weights: imagenet / random",
    ),
    "unknown tuner": (
        "--data {images} --space {space} --tuner grid",
        r"automl search: error: argument --tuner: invalid choice: 'grid' \(choose from .*random.*bayesian.*hyperband.*\) \(see automl search --help\)",
    ),
    "--max-trials 0": (
        "--data {images} --space {space} --max-trials 0",
        r"automl search: error: argument --max-trials: 0 must be 1 or more \(see automl search --help\)",
    ),
    "--max-retries -1": (
        "--data {images} --space {space} --max-retries -1",
        r"automl search: error: argument --max-retries: -1 must be 0 or more \(see automl search --help\)",
    ),
    "--time-budget 0": (
        "--data {images} --space {space} --time-budget 0",
        r"automl: error: time_budget=0.0 minutes must be positive; omit it for no budget",
    ),
    "experiment name with a slash": (
        "--data {images} --space {space} --experiment a/b",
        r"automl: error: experiment name 'a/b' is not valid; use 1-128 letters, digits, spaces or .*",
    ),
    "tracking server not running": (
        "--data {images} --space {space} --tracking-uri http://127.0.0.1:9",
        r"automl: error: tracking URI 'http://127.0.0.1:9' cannot be reached; start the MLflow server or pass another --tracking-uri",
    ),
    "tracking URI of an unknown scheme": (
        "--data {images} --space {space} --tracking-uri ftp://example.org/x",
        r"automl: error: tracking URI 'ftp://example.org/x' has an unknown scheme 'ftp'; use sqlite:///PATH or http://HOST:PORT",
    ),
}


def _one_line_error(argv, capsys) -> str:
    try:
        rc = cli.main(argv)
    except SystemExit as e:  # argparse
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_before_any_work(case, inputs, tmp_path, capsys):
    args, expected = CASES[case]
    argv = ["search", *args.format(tmp=tmp_path, **inputs).split()]
    t0 = time.perf_counter()
    line = _one_line_error(argv, capsys)
    assert re.fullmatch(expected, line), line
    assert time.perf_counter() - t0 < 10  # e.g. the unreachable server fails fast, no hang
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()  # nothing was started


def test_weights_file_that_does_not_fit_the_backbone_is_refused_up_front(inputs, tmp_path, capsys):
    import keras

    bad = tmp_path / "dense.weights.h5"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save_weights(bad)
    space = tmp_path / "bad_weights.yaml"
    space.write_text(FAST_SPACE_YAML.replace("weights: random", f"weights: {bad}"))
    argv = ["search", "--data", str(inputs["images"]), "--space", str(space)]
    line = _one_line_error(argv, capsys)
    assert re.fullmatch(
        rf"automl: error: weights file '{re.escape(str(bad))}' does not fit backbone "
        r"mobilenet_v3_small \(.+\); use a file saved from the same backbone",
        line,
    ), line
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()


def test_weights_file_of_the_same_backbone_passes_the_check(tmp_path):
    from automl.backbones import create_backbone
    from automl.search import check_weights_files
    from automl.space import load_space

    good = tmp_path / "mnv3s.weights.h5"
    create_backbone(
        "mobilenet_v3_small", weights=None, include_top=False, input_size=32
    ).save_weights(good)
    space = {
        "hyperparameters": {
            "backbone": "mobilenet_v3_small",
            "weights": str(good),
            "image_size": 32,
        }
    }
    check_weights_files(load_space(space))  # no error
    with pytest.raises(
        WeightsUnavailableError, match=r"weights file '.*' does not fit backbone mobilenet_v3_large"
    ):
        space["hyperparameters"]["backbone"] = "mobilenet_v3_large"
        check_weights_files(load_space(space))


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda x, y: (x, y[:-1]),
            r"x has 48 images but y has 47 labels; they must have the same length",
        ),
        (  # floats are a regression target (issue 18); one value is nothing to learn
            lambda x, y: (x, np.full(len(y), 0.5)),
            r"the target 'value' has one value only \(0.5\) in 48 rows; there is nothing to learn",
        ),
        (  # a 0/1 matrix is multi-label (issue 18); with no label at all it is refused
            lambda x, y: (x, np.zeros((len(y), 3))),
            r"no image has any label \(48 rows with an empty label set\)",
        ),
        (
            lambda x, y: (x, np.where(y == 0, np.nan, y)),
            r"the targets hold NaN at row 0; every image needs a finite target",
        ),
        (
            lambda x, y: (x[:, :, :, 0].reshape(48, -1), y),
            r"x has shape \(48, 1024\); expected images shaped \(N, H, W\) or \(N, H, W, C\)",
        ),
        (
            lambda x, y: (x, np.zeros_like(y)),
            r"has a single class \(0\); a classifier needs at least 2 classes",
        ),
        (lambda x, y: (x, y, y), r"arrays data must be a pair \(x, y\), got a sequence of 3"),
    ],
)
def test_bad_arrays(make, message, tiny_arrays, tiny_space, tmp_path):
    with pytest.raises(DataError, match=message):
        automl.search(make(*tiny_arrays), space=tiny_space, max_trials=1)
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"tuner": "grid"}, r"unknown tuner 'grid'; choose one of: random, bayesian, hyperband"),
        (
            {"max_trials": 0},
            r"max_trials=0 must be a positive integer; pass --max-trials 1 or more",
        ),
    ],
)
def test_bad_settings_through_the_api(kw, message, tiny_arrays, tiny_space):
    with pytest.raises(SearchError, match=message):
        automl.search(tiny_arrays, space=tiny_space, **kw)


def test_corrupt_and_non_image_files_are_skipped_by_default_with_a_warning(inputs, caplog):
    from automl.data import load_data

    with caplog.at_level(logging.WARNING, logger="automl"):
        bundle = load_data(str(inputs["corrupt"]), store_size=32)
    assert bundle.skipped == ["class_0/broken.png", "class_1/readme.txt"]
    assert len(bundle.y_train) + len(bundle.y_val) + len(bundle.y_test) == 48
    assert re.search(
        r"skipped 2 unreadable or non-image file\(s\) in .*corrupt: class_0/broken.png, class_1/readme.txt",
        caplog.text,
    )


def test_help_says_which_is_the_default_for_unreadable_images(capsys):
    with pytest.raises(SystemExit):
        cli.main(["search", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert (
        "--strict-images refuse corrupt or non-image files in the data folder (default: skip them with a warning that counts and names them)"
        in out
    )


def test_mixed_modes_16_bit_and_tiny_images_simply_work(tmp_path):
    from PIL import Image

    from automl.data import load_data

    rng = np.random.default_rng(0)
    root = tmp_path / "mixed"
    for c in range(3):
        d = root / f"c{c}"
        d.mkdir(parents=True)
        rgb = Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
        rgb.convert("L").save(d / "gray.png")
        rgb.convert("RGBA").save(d / "rgba.png")
        rgb.convert("P").save(d / "palette.gif")
        rgb.convert("LA").save(d / "gray_alpha.png")
        rgb.convert("1").save(d / "bilevel.bmp")
        rgb.convert("CMYK").save(d / "cmyk.jpg")
        Image.fromarray(rng.integers(0, 65535, (30, 30)).astype(np.uint16)).save(d / "gray16.png")
        Image.fromarray(rng.integers(0, 255, (8, 5, 3), dtype=np.uint8)).save(d / "tiny.png")
        Image.fromarray(rng.integers(0, 255, (1, 1, 3), dtype=np.uint8)).save(d / "one_pixel.tif")
    modes = {Image.open(f).mode for f in root.rglob("*.*")}
    assert {"L", "RGBA", "P", "LA", "1", "CMYK", "I;16", "RGB"} <= modes
    b = load_data(str(root), store_size=32)
    assert b.skipped == [] and b.num_classes == 3
    n = len(b.y_train) + len(b.y_val) + len(b.y_test)
    assert n == 27
    x = np.concatenate([b.x_train, b.x_val, b.x_test])
    assert x.dtype == np.uint8 and x.shape == (27, 32, 32, 3)
    assert 0 < x.mean() < 255  # 16-bit values scaled, not clipped to white
