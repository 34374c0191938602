"""Hostile and odd inputs (issue 20, items 6-12): decompression bombs, space files that are
folders, not UTF-8, YAML alias bombs or huge; seeds and ports out of range; read-only
commands that must not create a store; run ids of the wrong kind; models that are not
image classifiers. Each gets one line on stderr, exit code 2, and changes nothing.

The table at the end runs every command against every bad input (these and those of
tests/test_bad_input.py) and hashes the working folder before and after.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from automl import cli
from automl.errors import DataError, SearchError, SpaceError, quoted
from automl.executors import process
from tests.robust_helpers import FAST_SPACE_YAML, prebuilt_store, searched_trial, tiny_model
from tests.test_bad_input import CASES as SEARCH_CASES
from tests.test_bad_input import _one_line_error
from tests.test_bad_input import inputs as inputs  # noqa: F401 (the fixture, reused)

# 285 bytes that expand to 9**7 = 4.8 M strings (39 MB as text) in a YAML loader.
ALIAS_BOMB = """\
name: bomb
description: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
"""


def bomb_png(path: Path, side: int = 20000) -> Path:
    """A valid 1-bit PNG of side x side pixels (400 M for 20000): tens of KB on disk, 400 MB
    once decoded to 8 bits, over twice PIL's limit, so ``Image.open`` itself refuses it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    row = b"\x00" + bytes((side + 7) // 8)
    idat = zlib.compress(row * side, 9)
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture(scope="module")
def bomb_bytes(tmp_path_factory) -> bytes:
    return bomb_png(tmp_path_factory.mktemp("bomb") / "bomb.png").read_bytes()


# --- 6. decompression bombs ---------------------------------------------------------------


def test_a_decompression_bomb_is_an_unreadable_image(image_folder, bomb_bytes, caplog):
    from automl.data import load_data

    assert len(bomb_bytes) < 400_000
    (image_folder / "class_1" / "bomb.png").write_bytes(bomb_bytes)
    with caplog.at_level(logging.WARNING, logger="automl"):
        bundle = load_data(str(image_folder), store_size=32)
    assert bundle.skipped == ["class_1/bomb.png"]
    assert len(bundle.y_train) + len(bundle.y_val) + len(bundle.y_test) == 48
    assert "skipped 1 unreadable or non-image file(s)" in caplog.text
    with pytest.raises(
        DataError, match=r"1 file\(s\) in '.*images' are not readable images: class_1/bomb.png;"
    ):
        load_data(str(image_folder), store_size=32, strict_images=True)


def test_an_image_over_the_pixel_limit_is_refused(image_folder, monkeypatch):
    """Between PIL's limit and twice it, PIL only warns (and would decode): refused too."""
    from PIL import Image

    from automl.data import load_data
    from automl.data.imageio import UnreadableImage, open_image

    big = image_folder / "class_0" / "big.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(big)  # 1600 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1100)  # 32x32 passes, 40x40 is over
    with pytest.raises(UnreadableImage, match=r"decompression bomb \(40x40 = 1600 pixels"):
        open_image(big)
    with pytest.raises(DataError, match=r"class_0/big.png; remove them"):
        load_data(str(image_folder), store_size=32, strict_images=True)


def test_predict_and_calibration_data_refuse_a_bomb_in_one_line(tmp_path, bomb_bytes, capsys):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_bytes)
    model = tmp_path / "m.keras"
    tiny_model(3).save(model)
    line = _one_line_error(["predict", str(bomb), "--model", str(model)], capsys)
    assert re.fullmatch(
        r"automl: error: '.*bomb.png' is not an image PIL can read \(decompression bomb "
        r"\(Image size \(400000000 pixels\) exceeds limit .*\)\); pass PNG, JPEG, .*",
        line,
    ), line


# --- 7. and 10. space files -----------------------------------------------------------------


def test_space_that_is_a_folder_or_not_utf8_or_an_alias_bomb_is_one_line(tmp_path):
    from automl.space import load_space

    (tmp_path / "spaces").mkdir()
    with pytest.raises(SpaceError, match=r"search space '.*spaces' is a folder; pass a YAML"):
        load_space(str(tmp_path / "spaces"))
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(SpaceError, match=r"is not UTF-8 text \(byte 0xe9 at position 9\)"):
        load_space(str(latin))
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB)
    assert bomb.stat().st_size < 400
    with pytest.raises(SpaceError, match=r"uses a YAML alias \(\*a at line 3\)") as e:
        load_space(str(bomb))
    assert len(str(e.value)) < 300


def test_space_file_over_the_size_limit_and_huge_values_are_cut(tmp_path):
    from automl.space import MAX_SPACE_BYTES, load_space

    big = tmp_path / "big.yaml"
    big.write_text(FAST_SPACE_YAML + "#" + "x" * MAX_SPACE_BYTES + "\n")
    with pytest.raises(SpaceError, match=r"is \d+ bytes, over the 262144 byte limit"):
        load_space(str(big))
    long_text = tmp_path / "description.yaml"
    long_text.write_text(f"description: {'d' * 100_000}\n" + FAST_SPACE_YAML)
    with pytest.raises(SpaceError, match=r"description='dddd.*'... \(100000 characters\) is") as e:
        load_space(str(long_text))
    assert len(str(e.value)) < 300
    value = tmp_path / "value.yaml"
    value.write_text(FAST_SPACE_YAML + f"  augment: {'x' * 100_000}\n")
    with pytest.raises(SpaceError, match=r"augment='x{120}'... \(100000 characters\) is not") as e:
        load_space(str(value))
    assert len(str(e.value)) < 300
    value.write_text(FAST_SPACE_YAML + f"  backbone: {'x' * 100_000}\n")
    with pytest.raises(SpaceError, match=r"unknown backbone 'x{120}'... \(100000 characters\)"):
        load_space(str(value))
    digits = tmp_path / "digits.yaml"  # Python refuses to read an int of 100,000 digits
    digits.write_text(FAST_SPACE_YAML.replace("dropout: 0.1", f"dropout: {'9' * 100_000}"))
    with pytest.raises(SpaceError, match=r"holds a value that cannot be read \(Exceeds the limit"):
        load_space(str(digits))


def test_quoted_cuts_long_values_and_nested_ones_without_building_them():
    assert quoted("abc") == "'abc'"
    assert quoted(2.5) == "2.5"
    assert quoted("x" * 1000) == repr("x" * 120) + "... (1000 characters)"
    deep = [["y" * 10_000] * 1000] * 1000  # 10 G characters if written out in full
    assert len(quoted(deep)) <= 123


def test_a_local_file_named_like_a_built_in_space_does_not_shadow_it(tmp_path):
    from automl.space import BUILTIN_SPACES, load_space

    (tmp_path / "default").mkdir()  # a folder named default
    (tmp_path / "gpu").write_text("hyperparameters:\n  dropout: 0.3\n")
    assert load_space("default").source == str(BUILTIN_SPACES / "default.yaml")
    assert load_space("gpu").source == str(BUILTIN_SPACES / "gpu.yaml")
    mine = load_space("./gpu")  # asked for: the file
    assert mine.params["dropout"].value == 0.3 and mine.source == "gpu"
    with pytest.raises(SpaceError, match=r"search space './default' is a folder"):
        load_space("./default")


# --- 8. seeds, read-only outputs, models that are not image classifiers ---------------------


@pytest.mark.parametrize("seed", [-5, 2**32, "99999999999999999999"])
def test_seed_out_of_range_is_refused_by_the_api(seed, tiny_arrays, tiny_space):
    import automl

    with pytest.raises(
        SearchError, match=r"seed=.* is out of range; pass --seed from 0 to 4294967295"
    ):
        automl.search(tiny_arrays, space=tiny_space, seed=int(seed), max_trials=1)


def _read_only(folder: Path):
    """Make ``folder`` unwritable, also for root (immutable); returns the undo, or skips."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return lambda: folder.chmod(0o755)
    if (
        shutil.which("chattr") is None
        or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode
    ):
        pytest.skip("root without chattr +i: no folder is read-only to this test")
    return lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_export_into_a_read_only_folder_is_one_line_naming_it(tmp_path, capsys):
    undo = _read_only(tmp_path / "ro")
    try:
        line = _one_line_error(
            ["export", "--format", "keras", "--output", str(tmp_path / "ro" / "m.keras")], capsys
        )
    finally:
        undo()
    assert re.fullmatch(
        r"automl: error: cannot write output '.*/ro/m.keras': folder '.*/ro' is not writable "
        r"\(.+\); choose another --output",
        line,
    ), line


def test_predict_refuses_models_that_are_not_image_classifiers(tmp_path, capsys):
    import keras

    img = tmp_path / "a.png"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    dense = tmp_path / "dense.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(dense)
    line = _one_line_error(["predict", str(img), "--model", str(dense)], capsys)
    assert re.fullmatch(
        r"automl: error: model '.*dense.keras' takes inputs of shape \(None, 4\), not images "
        r"\(batch, height, width, 3\); pass an image classifier, e.g. one `automl export` wrote",
        line,
    ), line
    code = tmp_path / "lambda.keras"
    keras.Sequential([keras.Input((None, None, 3)), keras.layers.Lambda(lambda x: x * 2)]).save(
        code
    )
    line = _one_line_error(["predict", str(img), "--model", str(code)], capsys)
    assert re.fullmatch(
        r"automl: error: model '.*lambda.keras' holds Python code \(a Lambda layer or a custom "
        r"function\), which automl never loads: it opens models in Keras safe mode, since "
        r"loading that code would run it; export the model without Lambda layers, as "
        r"`automl export` does",
        line,
    ), line
    model = tmp_path / "m.keras"
    tiny_model(3).save(model)
    line = _one_line_error(["predict", str(tmp_path), "--model", str(model)], capsys)
    assert re.fullmatch(
        r"automl: error: image '.*' is a folder; pass the image files in it .*", line
    )


# --- 9. automl ui ---------------------------------------------------------------------------


def test_ui_exits_with_one_line_when_its_server_dies(tmp_path, monkeypatch, capsys):
    prebuilt_store(tmp_path)

    class DeadServer:
        def __init__(self, cmd, *args, **kwargs):
            pass

        def wait(self):
            return 3

    monkeypatch.setattr(subprocess, "Popen", DeadServer)
    assert cli.main(["ui", "--port", "5003"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "automl: error: the MLflow server stopped (exit code 3); see its messages above"
    )


# --- 11. read-only commands create no store -------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["leaderboard"],
        ["export", "--format", "keras", "--output", "m.keras"],
        ["retrain", "--run-id", "0123abcd"],
        ["leaderboard", "--tracking-uri", "sqlite:///{tmp}/nonexistent/dir/x.db"],
        ["predict", "{img}", "--model", "models:/cats/1"],
    ],
    ids=["leaderboard", "export", "retrain", "leaderboard-uri", "predict-models-uri"],
)
def test_read_only_commands_create_no_store(argv, tmp_path, monkeypatch, capsys):
    from PIL import Image

    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # the defaults: ./mlruns/mlflow.db (automl)
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    before = sorted(p.name for p in tmp_path.iterdir())
    line = _one_line_error([a.format(tmp=tmp_path, img=img) for a in argv], capsys)
    assert re.fullmatch(
        r"automl: error: no automl search found in 'sqlite:///.*': '.*' does not exist; run "
        r"`automl search` first, or pass --tracking-uri of the store it used",
        line,
    ), line
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no mlruns/, no mlflow.db


def test_predict_reads_a_registered_model_from_the_project_store(tmp_path, monkeypatch, capsys):
    """``models:/NAME/1`` is looked up in mlruns/mlflow.db (or --tracking-uri), not in
    MLflow's own default store (which would create ./mlflow.db)."""
    from mlflow.tracking import MlflowClient
    from PIL import Image

    from automl.tracking import Tracker

    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    prebuilt_store(tmp_path)
    t = Tracker(None, "automl")
    run = t.client.create_run(t.experiment_id)
    folder = tmp_path / "mlmodel"
    folder.mkdir()
    tiny_model(2).save(folder / "model.keras")
    (folder / "MLmodel").write_text(
        yaml.safe_dump({"flavors": {"keras": {}}, "metadata": {"class_names": ["cat", "dog"]}})
    )
    t.client.log_artifacts(run.info.run_id, str(folder), "model")
    client = MlflowClient("sqlite:///mlruns/mlflow.db", registry_uri="sqlite:///mlruns/mlflow.db")
    client.create_registered_model("cats")
    client.create_model_version("cats", f"runs:/{run.info.run_id}/model", run.info.run_id)
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    capsys.readouterr()
    assert cli.main(["predict", str(img), "--model", "models:/cats/1", "--top-k", "1"]) == 0
    assert re.fullmatch(r".*a.png: (cat|dog) \(0.\d+\)\n", capsys.readouterr().out)
    assert not (tmp_path / "mlflow.db").exists()
    other = tmp_path / "elsewhere.db"
    shutil.copy(tmp_path / "mlruns" / "mlflow.db", other)
    argv = [
        "predict",
        str(img),
        "--model",
        "models:/cats/1",
        "--tracking-uri",
        f"sqlite:///{other}",
    ]
    assert cli.main(argv) == 0


# --- 12. run ids of the wrong kind, retrain on other classes --------------------------------


@pytest.fixture
def store(tmp_path, image_folder):
    """A store with a search of experiment "automl" (a finished trial with a model file and a
    config.yaml), and a search of experiment "other"."""
    from automl.tracking import TAG_KIND, TAG_PARENT, TAG_TRIAL, Tracker

    prebuilt_store(tmp_path)
    t = Tracker(None, "automl")
    ckpt = tmp_path / "mlruns" / "automl" / "trial_1.keras"
    ckpt.parent.mkdir(parents=True)
    tiny_model(3).save(ckpt)
    parent = t.client.create_run(t.experiment_id, tags={TAG_KIND: "search"}).info.run_id
    trial = t.client.create_run(
        t.experiment_id,
        tags={
            TAG_KIND: "trial",
            TAG_PARENT: parent,
            TAG_TRIAL: "1",
            "automl.checkpoint": str(ckpt),
        },
    ).info.run_id
    config = {
        "hyperparameters": yaml.safe_load(FAST_SPACE_YAML)["hyperparameters"] | {"batch_size": 8},
        "seed": 0,
        "data": {
            "source": str(image_folder),
            "class_names": ["class_0", "class_1", "class_2"],
            "split_seed": 0,
            "store_size": 32,
            "digest": "0",
        },
    }
    config["hyperparameters"]["learning_rate"] = 1e-3
    t.log_text(trial, yaml.safe_dump(config), "config.yaml")
    t.end_run(trial, "FINISHED")
    t.end_run(parent, "FINISHED")
    o = Tracker(None, "other")
    other = o.client.create_run(o.experiment_id, tags={TAG_KIND: "search"}).info.run_id
    o.end_run(other, "FINISHED")
    return {"search": parent, "trial": trial, "other": other}


def test_leaderboard_run_id_of_the_wrong_kind_is_one_line(store, capsys):
    line = _one_line_error(["leaderboard", "--run-id", "0123abcd"], capsys)
    assert re.fullmatch(r"automl: error: run id '0123abcd' is not in 'sqlite:///.*'; .*", line)
    line = _one_line_error(["leaderboard", "--run-id", store["trial"]], capsys)
    assert line == (
        f"automl: error: run {store['trial']} is a trial run, not a search; its search is run "
        f"{store['search']} (automl leaderboard --run-id SEARCH_RUN_ID)"
    )
    line = _one_line_error(["leaderboard", "--run-id", store["other"]], capsys)
    assert line == (
        f"automl: error: search run {store['other']} belongs to experiment 'other', not "
        "'automl'; pass --experiment 'other'"
    )
    assert cli.main(["leaderboard", "--run-id", store["other"], "--experiment", "other"]) == 0


def test_retrain_on_data_with_other_classes_is_refused(tmp_path, monkeypatch, image_folder):
    from automl.retrain import retrain

    trial = searched_trial(monkeypatch, tmp_path, image_folder)
    two = tmp_path / "two"
    for c in ("class_0", "class_1"):
        shutil.copytree(image_folder / c, two / c)
    renamed = tmp_path / "renamed"
    for c, new in (("class_0", "ant"), ("class_1", "bee"), ("class_2", "cat")):
        shutil.copytree(image_folder / c, renamed / new)
    for data, n in ((two, 2), (renamed, 3)):
        with pytest.raises(
            DataError,
            match=rf"data '.*{data.name}' has {n} classes \(.*\) but run {trial} trained on 3 "
            r"\('class_0, class_1, class_2'\); pass data with the same class folders",
        ):
            retrain(trial, data=str(data), verbose=0)


# --- the table: every command, every bad input ----------------------------------------------


def _tree_digest(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with a hash of its content."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_dir():
            out[rel + "/"] = ""
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture
def hostile(tmp_path, inputs, store, bomb_bytes):  # noqa: F811 (the reused fixture)
    """Every bad input of the table, on top of tests/test_bad_input.py's."""
    import keras

    p = dict(inputs)
    p["store"] = store
    p["model"] = tmp_path / "m.keras"
    tiny_model(3).save(p["model"])
    p["dense"] = tmp_path / "dense.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(p["dense"])
    p["lambda"] = tmp_path / "lambda.keras"
    keras.Sequential([keras.Input((None, None, 3)), keras.layers.Lambda(lambda x: x)]).save(
        p["lambda"]
    )
    p["img"] = next((tmp_path / "images" / "class_0").iterdir())
    p["bomb"] = tmp_path / "bomb.png"
    p["bomb"].write_bytes(bomb_bytes)
    bombs = tmp_path / "bombs"
    for c in ("a", "b"):
        (bombs / c).mkdir(parents=True)
        (bombs / c / "bomb.png").write_bytes(bomb_bytes)
    p["bombs"] = bombs
    p["withbomb"] = tmp_path / "withbomb"
    shutil.copytree(inputs["images"], p["withbomb"])
    (p["withbomb"] / "class_1" / "bomb.png").write_bytes(bomb_bytes)
    other = tmp_path / "twoclasses"
    for c in ("class_0", "class_1"):
        shutil.copytree(inputs["images"] / c, other / c)
    p["twoclasses"] = other
    (tmp_path / "spacedir").mkdir()
    p["spacedir"] = tmp_path / "spacedir"
    p["latin"] = tmp_path / "latin.yaml"
    p["latin"].write_bytes(b"name: caf\xe9\n")
    p["aliases"] = tmp_path / "aliases.yaml"
    p["aliases"].write_text(ALIAS_BOMB)
    p["huge"] = tmp_path / "huge.yaml"
    p["huge"].write_text(FAST_SPACE_YAML + "#" + "x" * 300_000 + "\n")
    p["longdesc"] = tmp_path / "longdesc.yaml"
    p["longdesc"].write_text(f"description: {'d' * 100_000}\n" + FAST_SPACE_YAML)
    p["longvalue"] = tmp_path / "longvalue.yaml"
    p["longvalue"].write_text(FAST_SPACE_YAML + f"  augment: {'x' * 50_000}\n")
    p["digits"] = tmp_path / "digits.yaml"
    p["digits"].write_text(FAST_SPACE_YAML.replace("dropout: 0.1", f"dropout: {'9' * 50_000}"))
    undo = _read_only(tmp_path / "ro")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    p["busy"] = listener.getsockname()[1]
    yield p
    listener.close()
    undo()


S = "--data {images} --space {space}"
# (command and arguments, the whole stderr line as a regex)
TABLE = {
    **{f"search: {k}": ("search " + a, r) for k, (a, r) in SEARCH_CASES.items()},
    "search: --seed -5": (
        f"search {S} --seed -5",
        r"automl search: error: argument --seed: '-5' is out of range; a seed is an integer "
        r"from 0 to 4294967295 \(see automl search --help\)",
    ),
    "search: --seed 99999999999999999999": (
        f"search {S} --seed 99999999999999999999",
        r"automl search: error: argument --seed: '99999999999999999999' is out of range; .*",
    ),
    "search: space is a folder": (
        "search --data {images} --space {spacedir}",
        r"automl: error: search space '.*spacedir' is a folder; pass a YAML file or a built-in "
        r"name \(default, gpu\)",
    ),
    "search: space not UTF-8": (
        "search --data {images} --space {latin}",
        r"automl: error: search space '.*latin.yaml' is not UTF-8 text \(byte 0xe9 at "
        r"position 9\); save it as UTF-8 YAML",
    ),
    "search: YAML alias bomb": (
        "search --data {images} --space {aliases}",
        r"automl: error: search space '.*aliases.yaml' uses a YAML alias \(\*a at line 3\), .*",
    ),
    "search: space file over the size limit": (
        "search --data {images} --space {huge}",
        r"automl: error: search space '.*huge.yaml' is \d+ bytes, over the 262144 byte limit .*",
    ),
    "search: description of 100,000 characters": (
        "search --data {images} --space {longdesc}",
        r"automl: error: search space: description='d{120}'... \(100000 characters\) is not "
        r"allowed; write at most 2000 characters",
    ),
    "search: value of 50,000 characters": (
        "search --data {images} --space {longvalue}",
        r"automl: error: search space: hyperparameters.augment='x{120}'... \(50000 characters\) "
        r"is not allowed; choose one of: none, light, flip",
    ),
    "search: integer of 50,000 digits": (
        "search --data {images} --space {digits}",
        r"automl: error: search space '.*digits.yaml' holds a value that cannot be read "
        r"\(Exceeds the limit \(4300 digits\) for integer string conversion.*\); fix the value",
    ),
    "search: decompression bomb, --strict-images": (
        "search --data {withbomb} --space {space} --strict-images",
        r"automl: error: 1 file\(s\) in '.*withbomb' are not readable images: class_1/bomb.png; "
        r"remove them or run without --strict-images to skip them",
    ),
    "search: only decompression bombs": (
        "search --data {bombs} --space {space}",
        r"automl: error: data folder '.*bombs' has no readable images \(all 2 files failed to "
        r"decode\)",
    ),
    "leaderboard: no store there": (
        "leaderboard --tracking-uri sqlite:///{tmp}/nonexistent/dir/x.db",
        r"automl: error: no automl search found in 'sqlite:///.*/nonexistent/dir/x.db': .*",
    ),
    "leaderboard: unknown experiment": (
        "leaderboard --experiment nosuch",
        r"automl: error: experiment 'nosuch' is not in 'sqlite:///.*' \(experiments there: "
        r".*\); pass one of them to --experiment, or --all",
    ),
    "leaderboard: unknown run id": (
        "leaderboard --run-id 0123abcd",
        r"automl: error: run id '0123abcd' is not in 'sqlite:///.*'; .*",
    ),
    "leaderboard: a trial's run id": (
        "leaderboard --run-id {store[trial]}",
        r"automl: error: run \w+ is a trial run, not a search; its search is run \w+ .*",
    ),
    "leaderboard: another experiment's run id": (
        "leaderboard --run-id {store[other]}",
        r"automl: error: search run \w+ belongs to experiment 'other', not 'automl'; .*",
    ),
    "export: output in a read-only folder": (
        "export --format keras --output {tmp}/ro/m.keras",
        r"automl: error: cannot write output '.*/ro/m.keras': folder '.*/ro' is not writable .*",
    ),
    "export: calibration data of decompression bombs": (
        "export --run-id {store[trial]} --format tflite --quantize int8 "
        "--calibration-data {bombs} --output {tmp}/out/m.tflite",
        r"automl: error: data folder '.*bombs' has no readable images .*",
    ),
    "export: no store there": (
        "export --format keras --output {tmp}/out/m.keras --tracking-uri sqlite:///{tmp}/x/y.db",
        r"automl: error: no automl search found in .*",
    ),
    "predict: decompression bomb": (
        "predict {bomb} --model {model}",
        r"automl: error: '.*bomb.png' is not an image PIL can read \(decompression bomb .*",
    ),
    "predict: a folder": (
        "predict {images} --model {model}",
        r"automl: error: image '.*images' is a folder; pass the image files in it \(e.g. "
        r"'.*images/\*.jpg'\)",
    ),
    "predict: missing image": (
        "predict {tmp}/nope.png --model {model}",
        r"automl: error: image '.*nope.png' does not exist",
    ),
    "predict: not an image": (
        "predict {file} --model {model}",
        r"automl: error: '.*space.yaml' is not an image PIL can read .*",
    ),
    "predict: model input is not an image": (
        "predict {img} --model {dense}",
        r"automl: error: model '.*dense.keras' takes inputs of shape \(None, 4\), not images .*",
    ),
    "predict: model with a Lambda layer": (
        "predict {img} --model {lambda}",
        r"automl: error: model '.*lambda.keras' holds Python code .* as `automl export` does",
    ),
    "predict: models:/ URI, no store there": (
        "predict {img} --model models:/cats/1 --tracking-uri sqlite:///{tmp}/x/y.db",
        r"automl: error: no automl search found in .*",
    ),
    "predict: --top-k 0": (
        "predict {img} --model {model} --top-k 0",
        r"automl predict: error: argument --top-k: 0 must be 1 or more .*",
    ),
    "retrain: other classes": (
        "retrain --run-id {store[trial]} --data {twoclasses}",
        r"automl: error: data '.*twoclasses' has 2 classes \('class_0, class_1'\) but run \w+ "
        r"trained on 3 .*",
    ),
    "retrain: unknown run id": (
        "retrain --run-id 0123abcd",
        r"automl: error: run id '0123abcd' is not in sqlite:///.*",
    ),
    "retrain: no store there": (
        "retrain --run-id 0123abcd --tracking-uri sqlite:///{tmp}/x/y.db",
        r"automl: error: no automl search found in .*",
    ),
    "ui: --port 99999": (
        "ui --port 99999",
        r"automl ui: error: argument --port: '99999' is out of range; a port is an integer "
        r"from 1 to 65535 \(see automl ui --help\)",
    ),
    "ui: --port -1": (
        "ui --port -1",
        r"automl ui: error: argument --port: '-1' is out of range; .*",
    ),
    "ui: port in use": (
        "ui --port {busy}",
        r"automl: error: cannot serve on 127.0.0.1:\d+ \(Address already in use\); pass another "
        r"--port \(or stop what uses it\)",
    ),
}


@pytest.mark.parametrize("case", list(TABLE))
def test_every_command_answers_every_bad_input_in_one_line(
    case, hostile, tmp_path, monkeypatch, capsys
):
    argv, expected = TABLE[case]
    started = []
    before = _tree_digest(tmp_path)
    with monkeypatch.context() as mp:  # no MLflow server, whatever happens
        mp.setattr(subprocess, "Popen", lambda *a, **k: started.append(a))
        line = _one_line_error(argv.format(tmp=tmp_path, **hostile).split(), capsys)
    assert re.fullmatch(expected, line), line
    assert len(line) < 1200
    assert _tree_digest(tmp_path) == before
    # Nothing started but, for a search, its first trial worker ahead of time (the worker
    # the search starts while it reads the data), which the refusal stopped again.
    assert [a for a in started if "automl.executors.process" not in a[0]] == []
    assert process._spare == {}


def test_table_counts():
    """docs/reliability.md quotes these counts."""
    commands = {k.split(":")[0] for k in TABLE}
    assert commands == {"search", "leaderboard", "export", "predict", "retrain", "ui"}
    assert len(SEARCH_CASES) == 21 and len(TABLE) == 54
