"""Issue 18, the data side: a CSV / DataFrame of paths + targets and arrays of any task become a
DataBundle whose ``task`` is fitted and whose targets are encoded; bad targets are one line,
exit 2 and nothing in mlruns/; the task travels to workers and into the resume identity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from automl import cli
from automl.data import DataBundle, load_data
from automl.errors import DataError, SearchError

N = 24


@pytest.fixture
def table_dir(tmp_path):
    """``N`` 32 px images, image ``i`` filled with grey ``10 * i``, and their targets."""
    folder = tmp_path / "set"
    (folder / "img").mkdir(parents=True)
    for i in range(N):
        Image.fromarray(np.full((32, 32, 3), 10 * i, np.uint8)).save(folder / "img" / f"{i}.png")
    return folder


def _csv(folder, rows, header, name="labels.csv"):
    path = folder / name
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def _load(path, tmp_path, **kw):
    return load_data(str(path), store_size=32, cache_dir=tmp_path / "stores", **kw)


def _all(bundle):
    """(grey level of each image, its encoded target), every split together."""
    x = np.concatenate([bundle.x_train[:], bundle.x_val[:], bundle.x_test[:]])
    y = np.concatenate([bundle.y_train, bundle.y_val, bundle.y_test])
    return x[:, 0, 0, 0].astype(int), y


def _cli(argv, capsys) -> tuple[int, list[str]]:
    try:
        rc = cli.main(argv)
    except SystemExit as e:  # argparse
        rc = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err.strip().splitlines()


def test_csv_relative_and_absolute_paths_give_a_regression_bundle(table_dir, tmp_path):
    rows = [
        (f"img/{i}.png" if i % 2 else str(table_dir / "img" / f"{i}.png")) + f",{i * 2.5}"
        for i in range(N)
    ]
    b = _load(_csv(table_dir, rows, "path,age"), tmp_path)
    assert b.task.name == "regression"
    assert b.task.describe() == "task: regression (1 target, range 0.0-57.5)"
    assert b.class_names == ["age"] and b.num_classes == 1
    assert b.y_train.dtype == np.float32 and b.y_train.shape == (len(b.x_train), 1)
    grey, y = _all(b)
    assert len(grey) == N and b.skipped == []
    assert abs(float(b.y_train.mean())) < 1e-5  # standardised on the training split
    assert abs(float(b.y_train.std()) - 1.0) < 1e-5
    # each image keeps its own target: grey 10 * i <-> age 2.5 * i
    np.testing.assert_allclose(b.task.decode(y).reshape(-1), grey / 4, atol=1e-4)
    # split stratified by target range: every split spans low and high targets
    for split in (b.y_train, b.y_val, b.y_test):
        assert split.min() < 0 < split.max()


def test_missing_file_is_skipped_and_counted_or_refused_with_strict_images(
    table_dir, tmp_path, capsys
):
    rows = [f"img/{i}.png,{i * 2.5}" for i in range(N)] + ["img/gone.png,3.0"]
    path = _csv(table_dir, rows, "path,age")
    b = _load(path, tmp_path)
    assert b.skipped == ["img/gone.png"]
    assert len(_all(b)[0]) == N
    with pytest.raises(DataError, match=r"1 of the 25 files in .*'path' column are missing"):
        _load(path, tmp_path, strict_images=True)
    rc, lines = _cli(["search", "--data", str(path), "--strict-images", "-q"], capsys)
    assert rc == 2 and len(lines) == 1
    assert "'img/gone.png'" in lines[0] and "--strict-images" in lines[0]
    assert not (tmp_path / "mlruns").exists()


def test_a_header_that_names_no_path_column_and_path_column(table_dir, tmp_path):
    for i in range(N):  # files without an extension: no column looks like image paths
        (table_dir / "img" / f"{i}.png").rename(table_dir / "img" / f"photo{i}")
    path = _csv(table_dir, [f"img/photo{i},{i * 2.5}" for i in range(N)], "name,age")
    with pytest.raises(
        DataError, match=r"has no column of image paths \(columns: 'name', 'age'\); name it with"
    ):
        _load(path, tmp_path)
    b = _load(path, tmp_path, path_column="name")
    assert b.task.name == "regression" and len(_all(b)[0]) == N


def test_multilabel_from_one_separated_column_or_0_1_columns(table_dir, tmp_path):
    tags = [";".join(t for t, on in (("a", i % 2), ("b", i % 3 == 0), ("c", i < 6)) if on)
            for i in range(N)]  # fmt: skip
    b = _load(
        _csv(table_dir, [f"img/{i}.png,{t}" for i, t in enumerate(tags)], "path,tags"), tmp_path
    )
    assert b.task.name == "multilabel" and b.class_names == ["a", "b", "c"]
    grey, y = _all(b)
    assert y.dtype == np.float32 and y.shape == (N, 3)
    for g, row in zip(grey, y):
        i = g // 10
        assert row.tolist() == [i % 2, i % 3 == 0, i < 6]
    wide = [f"img/{i}.png,{int(i % 2)},{int(i % 3 == 0)},{7}" for i in range(N)]
    b2 = _load(
        _csv(table_dir, wide, "path,cat,dog,other", "wide.csv"), tmp_path, label_column="cat,dog"
    )
    assert b2.task.name == "multilabel" and b2.class_names == ["cat", "dog"]
    assert _all(b2)[1].shape == (N, 2)


def test_task_override_and_integer_codes(table_dir, tmp_path):
    path = _csv(table_dir, [f"img/{i}.png,{i % 3}" for i in range(N)], "path,score")
    b = _load(path, tmp_path)  # integers: classes
    assert b.task.name == "classification" and b.class_names == ["0", "1", "2"]
    assert b.y_train.dtype == np.int64
    r = _load(path, tmp_path, task="regression")
    assert r.task.describe() == "task: regression (1 target, range 0.0-2.0)"
    grey, y = _all(r)
    np.testing.assert_allclose(r.task.decode(y).reshape(-1), (grey // 10) % 3, atol=1e-4)


def test_mixed_target_types_are_one_line(table_dir, tmp_path, capsys):
    rows = [f"img/{i}.png,{'abc' if i == 1 else i * 2.5}" for i in range(N)]
    path = _csv(table_dir, rows, "path,age")
    rc, lines = _cli(["search", "--data", str(path), "-q"], capsys)
    assert rc == 2 and len(lines) == 1
    assert "target column 'age' mixes numbers and text (line 3: 'abc')" in lines[0]
    assert not (tmp_path / "mlruns").exists()


BAD_TARGETS = {
    "text in a regression column": (
        [f"img/{i}.png,{'high' if i == 5 else i}" for i in range(N)],
        ["--task", "regression"],
        r"mixes numbers and text \(line 7: 'high'\)",
    ),
    "an empty label set everywhere": (
        [f"img/{i}.png,;" for i in range(N)],
        ["--task", "multilabel"],
        r"no image has any label \(24 rows with an empty label set\)",
    ),
    "one value only": (
        [f"img/{i}.png,2.5" for i in range(N)],
        [],
        r"the target 'y' has one value only \(2.5\) in 24 rows; there is nothing to learn",
    ),
}


@pytest.mark.parametrize("case", list(BAD_TARGETS))
def test_bad_targets_exit_2_and_create_nothing_in_mlruns(case, table_dir, tmp_path, capsys):
    import re

    rows, extra, message = BAD_TARGETS[case]
    path = _csv(table_dir, rows, "path,y")
    rc, lines = _cli(["search", "--data", str(path), *extra], capsys)
    assert rc == 2 and len(lines) == 1, lines
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "mlruns").exists()


def test_task_is_printed_at_the_start_and_objective_is_checked_against_it(
    table_dir, tmp_path, capsys
):
    path = _csv(table_dir, [f"img/{i}.png,{i * 4.0}" for i in range(N)], "path,age")
    rc, lines = _cli(["search", "--data", str(path), "--objective", "val_accuracy"], capsys)
    assert rc == 2
    assert any(line.endswith("task: regression (1 target, range 0.0-92.0)") for line in lines)
    assert lines[-1] == (
        "automl: error: objective 'val_accuracy' does not apply to regression; use one of: "
        "val_mae, val_rmse, val_r2, val_loss (default val_mae)"
    )
    rc, lines = _cli(["search", "--data", str(path), "--objective", "val_mea"], capsys)
    assert rc == 2 and "unknown objective 'val_mea'; use one of: val_accuracy" in lines[-1]


def test_with_objective_picks_the_tasks_default_or_the_spaces_own():
    from automl.search import with_objective
    from automl.space import load_space
    from automl.tasks import Classification, Regression

    sp = load_space("default")
    reg = Regression().fit([1.0, 2.5, 4.0])
    assert with_objective(sp, reg, None).objective == "val_mae"
    assert with_objective(sp, reg, "val_r2").objective == "val_r2"
    cls = Classification().fit(["a", "b"])
    assert with_objective(sp, cls, None) is sp  # val_accuracy, as before
    with pytest.raises(SearchError, match=r"objective 'val_mae' does not apply to classification"):
        with_objective(sp, cls, "val_mae")


def test_arrays_of_every_task(tmp_path):
    x = np.stack([np.full((16, 16, 3), 8 * i, np.uint8) for i in range(30)])
    kw = dict(cache_dir=tmp_path / "stores")
    r = load_data((x, np.arange(30) * 0.5), **kw)
    assert r.task.name == "regression" and r.y_train.shape[1] == 1
    grey, y = _all(r)
    np.testing.assert_allclose(r.task.decode(y).reshape(-1), grey / 16, atol=1e-4)
    m = load_data((x, [[1, 0], [0, 1], [1, 1]] * 10), **kw)
    assert m.task.name == "multilabel" and _all(m)[1].shape == (30, 2)
    lists = load_data((x, [["cat"], ["dog", "cat"], []] * 10), **kw)
    assert lists.task.name == "multilabel" and lists.class_names == ["cat", "dog"]
    with pytest.raises(DataError, match=r"--label-column names a column of a CSV or DataFrame"):
        load_data((x, np.arange(30) * 0.5), label_column="age", **kw)
    c = load_data((x, np.array(["b", "a", "c"] * 10)), **kw)  # classes: as before
    assert c.task.name == "classification" and c.task.classes_ == c.class_names == ["a", "b", "c"]
    assert "task" not in c.summary() and c.y_train.dtype == np.int64


def test_a_bundle_without_task_is_classification_in_its_class_order():
    x = np.zeros((6, 8, 8, 3), np.uint8)
    y = np.array([0, 1, 1, 0, 1, 1])
    b = DataBundle("d", "s", ["zebra", "ant"], x, y, x, y, x, y)
    assert b.task.name == "classification" and b.task.classes_ == ["zebra", "ant"]
    assert b.task.encode(["ant", "zebra"]).tolist() == [1, 0]
    assert b.task.counts_.tolist() == [2, 4]
    with pytest.raises(TypeError, match=r"is not class indices; pass the bundle's task"):
        DataBundle("d", "s", ["v"], x, y * 0.5, x, y, x, y)


def test_regression_bundle_travels_to_workers_and_into_the_resume_identity(table_dir, tmp_path):
    from automl.data.persist import load_bundle, save_bundle
    from automl.search.settings import SearchSettings
    from automl.search.state import identity

    path = _csv(table_dir, [f"img/{i}.png,{i * 2.5}" for i in range(N)], "path,age")
    b = _load(path, tmp_path)
    back = load_bundle(save_bundle(b, tmp_path / "worker_data"))
    assert back.task.to_config() == b.task.to_config()
    assert back.digest() == b.digest() and back.y_train.dtype == np.float32
    np.testing.assert_array_equal(back.y_val, b.y_val)
    import pickle

    from automl.data.store import for_ray

    ray_copy = pickle.loads(pickle.dumps(for_ray(b, lambda store: None)))  # what Ray sends
    assert ray_copy.task.to_config() == b.task.to_config() and ray_copy.digest() == b.digest()
    settings = SearchSettings()
    assert identity("s", b.digest(), settings, b.task)["task"] == "regression"
    ints = _csv(table_dir, [f"img/{i}.png,{i % 2}" for i in range(N)], "path,kind", "c.csv")
    c = _load(ints, tmp_path, task="classification")
    assert "task" not in identity("s", c.digest(), settings, c.task)
    assert c.digest() != b.digest()


def test_dataframe_of_paths_and_targets(table_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(table_dir)  # a DataFrame's relative paths start here
    df = pd.DataFrame({"image": [f"img/{i}.png" for i in range(N)], "price": np.arange(N) * 1.5})
    b = load_data(df, store_size=32, cache_dir=tmp_path / "stores")
    assert b.task.name == "regression" and b.class_names == ["price"]
    grey, y = _all(b)
    np.testing.assert_allclose(b.task.decode(y).reshape(-1), grey / 10 * 1.5, atol=1e-4)


def test_regression_scale_is_learned_from_the_training_rows_only(monkeypatch, tmp_path):
    """The targets' mean and std are fitted on the training split: validation and test values
    (here shifted far away) do not move them, and every output un-standardises with them."""
    import automl.data.splits as splits

    n = 40
    train, val, test = np.arange(24), np.arange(24, 32), np.arange(32, 40)
    # The split stays the same whatever the targets (it is not what this test is about).
    monkeypatch.setattr(splits, "task_split", lambda *a, **k: (train, val, test))
    x = np.random.default_rng(0).integers(0, 255, (n, 8, 8, 3)).astype(np.uint8)
    v = np.random.default_rng(1).uniform(10, 20, n)
    shifted = v.copy()
    shifted[val] += 500.0
    shifted[test] -= 300.0
    a = load_data((x, v), cache_dir=tmp_path / "stores")
    b = load_data((x, shifted), cache_dir=tmp_path / "stores")
    for bundle in (a, b):
        assert bundle.task.mean_[0] == pytest.approx(v[train].mean())
        assert bundle.task.std_[0] == pytest.approx(v[train].std())
    np.testing.assert_array_equal(a.y_train, b.y_train)  # what the model trains on
    # Un-standardised with the same saved values: the shifted targets come back as they were.
    np.testing.assert_allclose(b.task.decode(b.y_test), shifted[test], rtol=1e-5)
    config = b.task.to_config()
    assert config["mean"] == pytest.approx([v[train].mean()])
    assert config["min"] == pytest.approx([shifted.min()])  # describe(): every target's range

    # Your own validation split: the scale comes from the training rows (not the test rows).
    own = load_data(
        (x, shifted), validation_data=(x[:8], v[:8] + 900.0), cache_dir=tmp_path / "stores"
    )
    decoded = own.task.decode(own.y_train)
    assert own.task.mean_[0] == pytest.approx(decoded.mean())
    assert own.task.std_[0] == pytest.approx(decoded.std())
