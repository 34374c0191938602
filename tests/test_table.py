"""automl.data.table: a CSV (or DataFrame) of image paths and targets."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from automl.data.table import is_table_path, read_table
from automl.errors import DataError


@pytest.fixture()
def images(tmp_path):
    """Eight 8x8 PNGs under tmp_path/img/."""
    (tmp_path / "img").mkdir()
    for i in range(8):
        Image.fromarray(np.full((8, 8, 3), i * 20, np.uint8)).save(tmp_path / "img" / f"{i}.png")
    return tmp_path


def _csv(folder, text, name="labels.csv"):
    path = folder / name
    path.write_text(text)
    return path


def test_regression_csv_relative_absolute_and_missing(images, caplog):
    absolute = images / "img" / "7.png"
    rows = [f"img/{i}.png,{i * 1.5 + 0.25}" for i in range(6)]
    rows += [f"{absolute},9.5", "img/missing.png,4.0"]
    sub = images / "meta"
    sub.mkdir()
    # the CSV sits in another folder: relative paths start at root=
    path = _csv(sub, "file,age\n" + "\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING, logger="automl"):
        table = read_table(path, root=images)
    assert table.task.name == "regression"
    assert table.task.describe() == "task: regression (1 target, range 0.25-9.5)"
    assert table.paths[0] == str(images / "img" / "0.png") and table.paths[-1] == str(absolute)
    assert table.n_skipped == 1 and table.skipped == ["img/missing.png"]
    np.testing.assert_array_equal(table.rows, [0, 1, 2, 3, 4, 5, 6])  # row 7 (missing) left out
    np.testing.assert_allclose(table.targets[:2], [0.25, 1.75])
    assert (table.path_column, table.target_columns, table.label_names) == (
        "file",
        ["age"],
        ["age"],
    )
    assert "skipped 1 row(s) whose file is missing: 'img/missing.png'" in caplog.text
    with pytest.raises(DataError, match=r"1 of the 8 files in .*labels.csv's 'file' column are missing: 'img/missing.png'; fix the paths .* or run without --strict-images"):  # fmt: skip
        read_table(path, root=images, strict=True)
    # next to the images, relative paths resolve from the CSV's own folder
    assert len(read_table(_csv(images, "file,age\n" + "\n".join(rows) + "\n"))) == 7


def test_every_file_missing_is_an_error(images):
    path = _csv(
        images / "img", "path,label\n" + "\n".join(f"img/{i}.png,{i % 2}" for i in range(4))
    )
    with pytest.raises(DataError, match=r"none of the 4 files in .*'path' column exists .*relative paths start at"):  # fmt: skip
        read_table(path)


def test_no_path_column_lists_the_columns(images):
    path = _csv(images, "name,score\nalpha,1\nbeta,2\n")
    with pytest.raises(DataError, match=r"has no column of image paths \(columns: 'name', 'score'\); name it with --path-column"):  # fmt: skip
        read_table(path)
    with pytest.raises(DataError, match=r"has no column 'picture' \(columns: 'name', 'score'\)"):
        read_table(path, path_column="picture")
    # a column of image file names is found by its values when its name says nothing
    found = read_table(_csv(images, "pic,kind\n" + "\n".join(f"img/{i}.png,{'ab'[i % 2]}" for i in range(8))))  # fmt: skip
    assert found.path_column == "pic" and found.task.name == "classification"
    assert found.label_names == ["a", "b"]


def test_several_path_columns_and_no_target(images):
    two = "path,image,label\nimg/0.png,img/1.png,a\nimg/1.png,img/0.png,b\n"
    with pytest.raises(DataError, match=r"several columns that could hold the image paths \('path', 'image'\); pick one with --path-column"):  # fmt: skip
        read_table(_csv(images, two))
    table = read_table(_csv(images, two), path_column="image")
    assert table.paths[0].endswith("1.png")
    with pytest.raises(DataError, match=r"no target column besides the path column 'path' \(columns: 'id', 'path'\)"):  # fmt: skip
        read_table(_csv(images, "id,path\n1,img/0.png\n2,img/1.png\n"))


def test_mixed_target_types(images):
    text = "path,age\nimg/0.png,3\nimg/1.png,unknown\nimg/2.png,5\nimg/3.png,8\n"
    with pytest.raises(DataError, match=r"target column 'age' mixes numbers and text \(line 3: 'unknown'\); fix the value, or pass --task classification"):  # fmt: skip
        read_table(_csv(images, text))
    as_classes = read_table(_csv(images, text), task="classification")
    assert as_classes.label_names == ["3", "5", "8", "unknown"]
    cols = "path,kind,score\nimg/0.png,a,1.5\nimg/1.png,b,2.5\n"
    with pytest.raises(DataError, match=r"target columns mix text \('kind'\) and numbers \('score'\); pick the target with --label-column"):  # fmt: skip
        read_table(_csv(images, cols))
    assert read_table(_csv(images, cols), label_column="score").task.name == "regression"


def test_bad_targets_name_the_line(images):
    with pytest.raises(DataError, match=r"no value in target column 'label' at line 3 \(1 empty in all\)"):  # fmt: skip
        read_table(_csv(images, "path,label\nimg/0.png,a\nimg/1.png,\nimg/2.png,b\n"))
    with pytest.raises(DataError, match=r"column 'label': the targets hold one class only \('a'\) in 2 rows"):  # fmt: skip
        read_table(_csv(images, "path,label\nimg/0.png,a\nimg/1.png,a\n"))
    with pytest.raises(DataError, match=r"no image has any label"):
        read_table(_csv(images, "path,tags\nimg/0.png,\nimg/1.png,\n"), task="multilabel")


def test_multilabel_one_column(images):
    rows = ["img/0.png,cat;dog", "img/1.png,car", "img/2.png,", "img/3.png,dog | car"]
    table = read_table(_csv(images, "id,image,tags\n" + "\n".join(f"{i},{r}" for i, r in enumerate(rows))))  # fmt: skip
    assert table.task.name == "multilabel" and table.label_names == ["car", "cat", "dog"]
    np.testing.assert_array_equal(table.targets, [[0, 1, 1], [1, 0, 0], [0, 0, 0], [1, 0, 1]])
    assert table.target_columns == ["tags"]  # 'id' is not a target


def test_multilabel_one_column_per_label(images):
    text = "file,cat,dog,car\n" + "\n".join(
        f"img/{i}.png,{i % 2},{int(i % 3 == 0)},{int(i > 4)}" for i in range(8)
    )
    table = read_table(_csv(images, text))
    assert table.task.name == "multilabel" and table.label_names == ["cat", "dog", "car"]
    assert table.targets[3].tolist() == [1, 1, 0]
    assert table.task.describe().startswith("task: multilabel (3 labels, 8 images")
    # the same columns forced to regression: three targets
    assert read_table(_csv(images, text), task="regression").task.units_ == 3
    with pytest.raises(DataError, match=r"classification takes one target column, got 3"):
        read_table(_csv(images, text), task="classification")


def test_dataframe_and_label_column(images):
    df = pd.DataFrame(
        {
            "path": [f"img/{i}.png" for i in range(6)],
            "width": [10.5, 11.0, 12.25, 9.0, 8.5, 10.0],
            "breed": list("xyxyxy"),
        }
    )
    table = read_table(df, root=images, label_column="width")
    assert table.task.name == "regression" and table.source == "the DataFrame"
    assert table.paths[1] == str(images / "img" / "1.png")
    table = read_table(df, root=images, label_column=["breed"])
    assert table.task.name == "classification" and table.label_names == ["x", "y"]
    with pytest.raises(DataError, match=r"the DataFrame has no column 'colour' \(columns: 'path', 'width', 'breed'\); pass one of them as --label-column"):  # fmt: skip
        read_table(df, root=images, label_column="colour")


def test_unreadable_table(tmp_path):
    with pytest.raises(DataError, match=r"the table 'nope.csv' does not exist or is not a file"):
        read_table("nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match=r"empty.csv is empty; it needs a header line"):
        read_table(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("path,label\n")
    with pytest.raises(DataError, match=r"header.csv has no rows; it needs one row per image"):
        read_table(tmp_path / "header.csv")
    assert is_table_path("labels.csv") and not is_table_path("images/")


@pytest.mark.parametrize(("task", "stored"), [("regression", 224), ("classification", 128)])
def test_photos_in_a_table_are_stored_at_what_the_tasks_default_space_asks_for(
    tmp_path, monkeypatch, task, stored
):
    """On a CPU the default space runs regression's pretrained seed at 224 px (classification's
    at most at 128): a table of 300-px photos is stored at 224 px for regression, so that seed
    never sees 128-px images upsampled, and at 128 px for classification."""
    import automl.autospace
    from automl.search import _space_and_data
    from automl.search.settings import SearchSettings

    monkeypatch.setattr(automl.autospace, "has_gpu", lambda: False)  # a CPU, whatever runs this
    (tmp_path / "img").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (300, 320, 3), np.uint8)).save(
            tmp_path / "img" / f"{i}.png"
        )
        target = f"{i * 1.7 + 0.3:.2f}" if task == "regression" else "ab"[i % 2]
        rows.append(f"img/{i}.png,{target}")
    path = _csv(tmp_path, "file,target\n" + "\n".join(rows) + "\n")
    settings = SearchSettings(cache_dir=str(tmp_path / "stores"), verbose=0)
    space, bundle = _space_and_data(str(path), None, None, settings, "sqlite:///unused.db")
    assert bundle.task.name == task
    assert bundle.image_shape[:2] == (stored, stored)
    if task == "regression":
        assert space.upper("image_size") == 224  # the pretrained seed's size


def test_table_task_reads_the_targets_only_and_logs_nothing(images, caplog):
    from automl.data.table import table_task

    rows = [f"img/{i}.png,{i * 1.5 + 0.25}" for i in range(6)] + ["img/missing.png,4.0"]
    path = _csv(images, "file,age\n" + "\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING, logger="automl"):
        assert table_task(path) == "regression"
    assert caplog.records == []  # the missing file is read_table's to report, once
    tags = _csv(images, "file,tags\nimg/0.png,a;b\nimg/1.png,b\n", name="tags.csv")
    assert table_task(tags) == "multilabel"
    with pytest.raises(DataError, match="has no rows"):
        table_task(_csv(images, "file,age\n", name="empty.csv"))
