"""bench/datasets.py's issue-18 sets: seeded, and written as a labels.csv that reads back."""

from __future__ import annotations

import numpy as np

from automl.data.table import read_table
from bench.datasets import count, mosaic_tags, rotation, write_table


def test_task_sets_are_seeded_and_read_back_as_tables(tmp_path):
    x, y, names, task = count(n=24, seed=3)
    x2, y2, _, _ = count(n=24, seed=3)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert not np.array_equal(count(n=24, seed=4)[1], y)
    csv = write_table(x, y, names, task, tmp_path / "count")
    # whole numbers 0..7 read as 8 classes unless the task is named (as the README says)
    assert read_table(csv).task.name == "classification"
    table = read_table(csv, task="regression")
    assert table.task.name == "regression" and table.label_names == ["count"]
    np.testing.assert_allclose(table.targets, y)

    x, y, names, task = mosaic_tags(n=24, size=32)
    table = read_table(write_table(x, y, names, task, tmp_path / "tags"))
    assert table.task.name == "multilabel"
    # labels come back sorted by name: compare column by column
    for j, name in enumerate(names):
        if y[:, j].any():
            np.testing.assert_array_equal(table.targets[:, table.label_names.index(name)], y[:, j])

    x, y, names, task = rotation(n=12, size=32)
    assert task == "regression" and x.shape == (12, 32, 32, 3) and np.abs(y).max() <= 30.0
