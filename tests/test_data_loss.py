"""No command deletes what it did not create: each attack below must leave the user's files."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from automl import cli
from automl.errors import AutoMLError, ExportError, SearchError
from automl.export import check_export_args, is_own_export
from automl.paths import check_experiment_name, inside, remove_owned
from tests.robust_helpers import FAST_SPACE_YAML


def _plant(root: Path) -> list[Path]:
    """User files in and around the store; returns them so a test can check they survive."""
    files = [
        root / "mlruns" / "keep" / "precious.txt",
        root / "mlruns" / "automl" / "exp" / "mine.txt",
        root / "mlruns" / "automl" / "exp" / "notes" / "more.txt",
        root / "report.txt",
    ]
    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("the user's work")
    return files


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "a\\b", "../x", " x", ".hidden", "a\nb"])
def test_bad_experiment_names_refused_before_anything(name, tmp_path, capsys):
    files = _plant(tmp_path)
    (tmp_path / "space.yaml").write_text(FAST_SPACE_YAML)
    argv = ["search", "--space", "space.yaml", "--experiment", name, "--overwrite"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"automl: error: experiment name {name!r} is not valid; use 1-128")
    assert len(err.splitlines()) == 1
    assert all(f.read_text() == "the user's work" for f in files)
    with pytest.raises(SearchError, match="is not valid; use 1-128 letters"):
        check_experiment_name(name, SearchError)


@pytest.mark.parametrize("name", ["automl", "my run 2", "cats-vs-dogs_v1.2", "a+b=c@x"])
def test_good_experiment_names(name):
    assert check_experiment_name(name) == name


def test_inside_refuses_paths_that_leave_their_folder(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "link").symlink_to(tmp_path)
    assert inside(tmp_path / "base", tmp_path / "base" / "x") == (tmp_path / "base" / "x")
    for bad in ("..", ".", "link", "x/../.."):
        with pytest.raises(AutoMLError, match="leaves the folder"):
            inside(tmp_path / "base", tmp_path / "base" / bad)


def test_remove_owned_keeps_unmarked_folders_and_unnamed_entries(tmp_path):
    d = tmp_path / "d"
    (d / "tuner").mkdir(parents=True)
    (d / "tuner" / "user.txt").write_text("x")
    assert remove_owned(d, [".marker"], ["tuner"]) == []  # no marker: not ours, untouched
    assert (d / "tuner" / "user.txt").exists()
    (d / ".marker").touch()
    (d / "mine.txt").write_text("x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("x")
    (d / "checkpoints").symlink_to(outside)  # a link is removed as a link, never followed
    assert remove_owned(d, [".marker"], ["tuner", "checkpoints"]) == [
        "tuner",
        "checkpoints",
        ".marker",
    ]
    assert (d / "mine.txt").exists() and (outside / "keep.txt").exists() and d.is_dir()


def test_overwrite_removes_only_what_the_search_wrote(tmp_path, capsys):
    """A real search, then `--overwrite`: the user's files in its folder and beside it stay."""
    from tests.robust_helpers import prebuilt_store

    prebuilt_store(tmp_path)
    (tmp_path / "space.yaml").write_text(FAST_SPACE_YAML)
    argv = ["search", "--data", "demo", "--space", "space.yaml", "--experiment", "exp"]
    argv += ["--max-trials", "1", "--tracking-uri", f"sqlite:///{tmp_path}/mlruns/mlflow.db"]
    files = _plant(tmp_path)
    assert cli.main(argv) == 0
    project = tmp_path / "mlruns" / "automl" / "exp"
    assert (project / "automl_search.json").is_file() and (project / ".automl-search").is_file()
    first = (project / "automl_search.json").read_text()
    assert cli.main([*argv, "--overwrite"]) == 0
    assert (project / "automl_search.json").read_text() != first  # a new search did start
    assert all(f.read_text() == "the user's work" for f in files)
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()


@pytest.mark.parametrize("fmt", ["saved_model", "mlflow", "keras", "onnx", "tflite"])
def test_export_force_never_replaces_what_is_not_an_export(tmp_path, fmt, capsys):
    files = _plant(tmp_path)
    # --output . (the current folder), and a folder / file of the user's with the right name
    outputs = ["."] if fmt in ("saved_model", "mlflow") else []
    user = tmp_path / ("userdir" if fmt in ("saved_model", "mlflow") else f"user.{fmt}")
    if user.suffix:
        user.write_bytes(b"the user's model")
    else:
        user.mkdir()
        (user / "data.csv").write_text("a,b")
    outputs.append(str(user))
    for out in outputs:
        assert cli.main(["export", "--format", fmt, "--output", out, "--force"]) == 2
        err = capsys.readouterr().err.strip()
        assert "is not an automl" in err and "nothing was deleted" in err, err
        assert len(err.splitlines()) == 1
    assert all(f.read_text() == "the user's work" for f in files)
    assert user.exists() and (user.is_file() or (user / "data.csv").exists())


def test_export_force_replaces_its_own_earlier_export(tmp_path):
    keras_file = tmp_path / "m.keras"
    with zipfile.ZipFile(keras_file, "w") as z:
        z.writestr("automl.json", "{}")
    sm = tmp_path / "sm"
    (sm / "assets").mkdir(parents=True)
    (sm / "saved_model.pb").write_bytes(b"x")
    (sm / "assets" / "automl.json").write_text("{}")
    tfl = tmp_path / "m.tflite"
    tfl.write_bytes(b"x")
    Path(str(tfl) + ".labels.json").write_text("{}")
    for path, fmt in ((keras_file, "keras"), (sm, "saved_model"), (tfl, "tflite")):
        assert is_own_export(path, fmt)
        check_export_args(path, format=fmt, force=True)  # no error: it may be replaced
    assert not is_own_export(sm, "mlflow")
    with pytest.raises(ExportError, match="is not an automl mlflow export"):
        check_export_args(sm, format="mlflow", force=True)
