"""The on-disk image store: decoded once, reused, rebuilt when files change, never half-used."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from automl.data import load_data
from automl.data import store as store_mod
from automl.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


def make_folder(root: Path, n: int, size: int = 32, classes: int = 3, fmt: str = "png") -> Path:
    """``n`` seeded images in ``classes`` class folders; the class is the dominant colour."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        c = i % classes
        a = rng.integers(0, 60, size=(size, size, 3)).astype(np.uint8)
        a[..., c % 3] += 150 if c < 3 else 0
        if c >= 3:
            a += 90
        d = root / f"class_{c}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(d / f"{i}.{fmt}")
    return root


@pytest.fixture
def count_decodes(monkeypatch):
    calls = []
    real = store_mod.decode_image

    def counting(path, size):
        calls.append(str(path))
        return real(path, size)

    monkeypatch.setattr(store_mod, "decode_image", counting)
    return calls


def _stores(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if not p.name.startswith("."))


def test_store_is_reused_and_a_changed_or_added_file_is_noticed(tmp_path, count_decodes):
    folder = make_folder(tmp_path / "imgs", 60)
    cache = tmp_path / "stores"
    a = load_data(str(folder), store_size=32, cache_dir=cache)
    assert len(count_decodes) == 60
    (built,) = _stores(cache)
    stamp = (built / "images.u8").stat()
    meta = json.loads((built / "meta.json").read_text())
    assert meta["count"] == 60 and meta["size"] == 32 and meta["complete"]
    assert (built / "images.u8").stat().st_size == 60 * 32 * 32 * 3

    count_decodes.clear()
    b = load_data(str(folder), store_size=32, cache_dir=cache)
    assert count_decodes == []  # the second start decodes nothing
    assert (built / "images.u8").stat().st_ino == stamp.st_ino
    assert b.digest() == a.digest()
    np.testing.assert_array_equal(b.x_test[:], a.x_test[:])
    # The views read the stored images, which are the files' pixels.
    from PIL import Image

    i = int(b.x_train.index[0])
    name = json.loads((built / "entries.json").read_text())[i][0]
    np.testing.assert_array_equal(b.x_train[0], np.asarray(Image.open(folder / name)))

    # A touched file (new content, new mtime) and an added file: a new store; only those two
    # are decoded, the unchanged records are copied from the previous store.
    touched = folder / "class_1" / "1.png"
    Image.fromarray(np.full((32, 32, 3), 7, np.uint8)).save(touched)
    os.utime(touched, ns=(time.time_ns(), time.time_ns() + 10**9))
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(folder / "class_0" / "new.png")
    count_decodes.clear()
    c = load_data(str(folder), store_size=32, cache_dir=cache)
    assert sorted(Path(p).name for p in count_decodes) == ["1.png", "new.png"]
    assert len(_stores(cache)) == 2
    assert c.digest() != a.digest()
    assert len(c.y_train) + len(c.y_val) + len(c.y_test) == 61
    view = c.x_train.source
    names = [view.name_of(k) for k in range(len(view))]
    np.testing.assert_array_equal(view.read([names.index("class_1/1.png")])[0], 7)
    np.testing.assert_array_equal(view.read([names.index("class_0/new.png")])[0], 200)


def test_splits_are_views_not_copies(tmp_path):
    folder = make_folder(tmp_path / "imgs", 45)
    data = load_data(str(folder), store_size=32, cache_dir=tmp_path / "s")
    src = data.x_train.source
    assert data.x_val.source is src and data.x_test.source is src
    all_idx = np.concatenate([data.x_train.index, data.x_val.index, data.x_test.index])
    assert sorted(all_idx.tolist()) == list(range(45))
    from automl.trial import full_data

    full = full_data(data)
    assert full.x_train.source is src and len(full.x_train) == len(data.x_train) + len(data.x_val)


def test_strict_images_refuses_a_store_with_skipped_files(tmp_path):
    folder = make_folder(tmp_path / "imgs", 30)
    (folder / "class_0" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    data = load_data(str(folder), store_size=32, cache_dir=tmp_path / "s")
    assert data.skipped == ["class_0/broken.jpg"]
    with pytest.raises(
        DataError, match=r"1 file\(s\) in .* are not readable images: class_0/broken.jpg"
    ):
        load_data(str(folder), store_size=32, cache_dir=tmp_path / "s", strict_images=True)


_BUILD = """
import sys, time
from automl.data import store as s
if sys.argv[3] == "slow":
    real = s.decode_image
    def slow(p, size):
        time.sleep(0.02)
        return real(p, size)
    s.decode_image = slow
from automl.data import load_data
b = load_data(sys.argv[1], store_size=32, cache_dir=sys.argv[2])
print("images", len(b.y_train) + len(b.y_val) + len(b.y_test))
"""


def test_kill_9_during_the_build_then_the_same_command_finishes(tmp_path):
    folder = make_folder(tmp_path / "imgs", 120)
    cache = tmp_path / "stores"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", _BUILD, str(folder), str(cache)]
    proc = subprocess.Popen([*cmd, "slow"], env=env)
    try:
        deadline = time.time() + 60
        while not list(cache.glob(".building-*-*")) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # some records written
        assert list(cache.glob(".building-*-*")), "the build never started"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert _stores(cache) == []  # nothing that could be used
    assert store_mod.open_store(next(cache.glob(".building-*-*"))) is None

    out = subprocess.run([*cmd, "fast"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "images 120" in out.stdout
    (store,) = _stores(cache)
    assert list(cache.glob(".building-*-*")) == []  # the killed build's folder is gone
    opened = store_mod.open_store(store)
    assert opened is not None and opened.count == 120 and opened.skipped == []


def test_disk_full_while_writing_is_one_line_exit_2_and_no_store(
    tmp_path, monkeypatch, capsys, tiny_space
):
    import yaml

    from automl.cli import main

    folder = make_folder(tmp_path / "imgs", 40)
    cache = tmp_path / "stores"
    calls = []

    def full(fd, data, offset):
        calls.append(offset)
        if len(calls) > 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        os.pwrite(fd, data, offset)

    monkeypatch.setattr(store_mod, "_pwrite_all", full)
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(tiny_space))
    before = sorted(p.name for p in tmp_path.iterdir())
    rc = main(
        ["search", "--data", str(folder), "--space", str(space), "--cache-dir", str(cache), "-q"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1, err
    assert "not enough disk space for the image store" in err[0]
    assert str(cache) in err[0] and f"{40 * 32 * 32 * 3} bytes" in err[0]
    assert not cache.exists()  # no half store, no lock file, not even the folder
    after = sorted(p.name for p in tmp_path.iterdir())
    assert set(after) - set(before) <= {"mlruns"}  # nothing else made
    assert not (tmp_path / "mlruns" / "automl").exists()  # no search started


def test_too_little_free_space_is_refused_before_writing(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    folder = make_folder(tmp_path / "imgs", 20)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(DataError, match=rf"it needs {20 * 32 * 32 * 3} bytes .*--cache-dir"):
        load_data(str(folder), store_size=32, cache_dir=tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_unwritable_cache_dir_is_one_clear_error(tmp_path):
    folder = make_folder(tmp_path / "imgs", 20)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match="cannot write the image store in .*a_file.*--cache-dir"):
        load_data(str(folder), store_size=32, cache_dir=blocker / "stores")
    assert blocker.read_text() == "not a folder"


def test_large_arrays_go_to_a_store_small_ones_stay_in_memory(tmp_path, monkeypatch):
    from automl.data import images

    x = np.random.default_rng(0).integers(0, 255, (60, 16, 16, 3)).astype(np.uint8)
    y = np.arange(60) % 3
    small = load_data((x, y), cache_dir=tmp_path / "s")
    assert isinstance(small.x_train.source, images.ArrayImages)
    monkeypatch.setattr(images, "IN_MEMORY_MAX_BYTES", 1000)
    import automl.data as data_pkg

    monkeypatch.setattr(data_pkg, "IN_MEMORY_MAX_BYTES", 1000)
    big = load_data((x, y), cache_dir=tmp_path / "s")
    assert isinstance(big.x_train.source, store_mod.ImageStore)
    np.testing.assert_array_equal(big.x_test[:], small.x_test[:])
    np.testing.assert_array_equal(big.y_test, small.y_test)


_MEMORY = """
import json, resource, sys
import automl
from automl.data import load_data
space = {"name": "mem", "hyperparameters": {"family": "scratch", "learning_rate": 3e-3,
    "blocks": 1, "image_size": 32, "filters": 8, "conv_layers": 1, "epochs": 3,
    "batch_size": 32, "augment": "none"}}
out = {}
for name in ("small", "large"):
    try:
        data = load_data(sys.argv[1] + "/" + name, store_size=160, cache_dir=sys.argv[2])
    except TypeError:  # a loader without stores (to check this test against)
        data = load_data(sys.argv[1] + "/" + name, store_size=160)
    r = automl.search(data=data, space=space, max_trials=1, experiment=name, verbose=0,
                      refit=False, ensemble=0)
    out[name] = {"peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                 "test_accuracy": r.test_metrics["test_accuracy"]}
print(json.dumps(out))
"""


def test_memory_stays_flat_in_the_number_of_images(tmp_path):
    """2,000 images at 160 px (147 MB decoded) against 200: the search's peak memory grows by
    less than the extra images' decoded size (the arrays loader held them at least once,
    twice while stacking, and TensorFlow copied the training split again: measured +426 MB
    at 128 px, against +72 MB for the store)."""
    make_folder(tmp_path / "small", 200, size=160, classes=4, fmt="jpg")
    make_folder(tmp_path / "large", 2000, size=160, classes=4, fmt="jpg")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY, str(tmp_path), str(tmp_path / "stores")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    extra_decoded_kb = (2000 - 200) * 160 * 160 * 3 / 1024
    grown_kb = res["large"]["peak_kb"] - res["small"]["peak_kb"]
    assert grown_kb < extra_decoded_kb, res
    assert res["large"]["test_accuracy"] > 0.6, res  # it learned (chance: 0.25)


def test_dataframe_of_paths_and_tf_data_go_through_stores(tmp_path, count_decodes):
    import pandas as pd
    import tensorflow as tf

    folder = make_folder(tmp_path / "imgs", 30)
    files = sorted(folder.rglob("*.png"))
    df = pd.DataFrame({"path": [str(f) for f in files], "label": [f.parent.name for f in files]})
    cache = tmp_path / "stores"
    a = load_data(df, store_size=32, cache_dir=cache)
    assert isinstance(a.x_train.source, store_mod.ImageStore)
    assert len(count_decodes) == 30
    count_decodes.clear()
    b = load_data(df, store_size=32, cache_dir=cache)
    assert count_decodes == [] and b.digest() == a.digest()

    # A tf.data.Dataset is read once per load, streamed into a store named by its content:
    # the same images give the same store (one folder), never an array of all of them.
    from PIL import Image

    x = np.stack([np.asarray(Image.open(f)) for f in files])
    y = np.array([int(f.parent.name[-1]) for f in files])
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(7)
    c = load_data(ds, cache_dir=cache)
    d = load_data(ds, cache_dir=cache)
    assert isinstance(c.x_train.source, store_mod.ImageStore)
    assert c.x_train.source.path == d.x_train.source.path and c.digest() == d.digest()
    assert len([p for p in cache.iterdir() if p.name.startswith("stream-")]) == 1
    np.testing.assert_array_equal(c.x_test[:], x[c.x_test.index])  # record i = image i


def test_the_budget_ends_a_long_epoch_part_way_and_keeps_it(tiny_arrays):
    """On a large data set one epoch can outlast the time budget: the deadline stops the
    epoch after the batch that passed it; that epoch is validated and kept as the best."""
    import time as _time

    from automl.trial import RunOptions, TrialConfig, run_trial

    cfg = TrialConfig.from_values(
        {"family": "scratch", "learning_rate": 3e-3, "blocks": 1, "image_size": 16,
         "filters": 8, "conv_layers": 1, "epochs": 3, "batch_size": 4, "augment": "none"}
    )  # fmt: skip
    data = load_data(tiny_arrays)
    epochs = []
    out = run_trial(
        cfg,
        data,
        options=RunOptions(jit_compile=False, deadline=_time.time() - 1),
        on_epoch=epochs.append,
    )
    assert out.stopped_by_deadline and len(epochs) == 1
    assert int(out.model.optimizer.iterations) == 1  # one batch of the 6 in an epoch
    assert (
        out.metrics["best_epoch"] == 0.0
        and out.metrics["val_accuracy"] == out.metrics["val_accuracy"]
    )


def test_workers_get_the_store_by_path_and_the_indices_not_the_images(tmp_path):
    from automl.data.persist import load_bundle, save_bundle

    folder = make_folder(tmp_path / "imgs", 60)
    data = load_data(str(folder), store_size=32, cache_dir=tmp_path / "stores")
    out = save_bundle(data, tmp_path / "worker_data")
    total = sum(f.stat().st_size for f in out.iterdir())
    assert total < 60 * 32 * 32 * 3 / 10  # indices, labels and names: no image
    back = load_bundle(out)
    assert isinstance(back.x_train.source, store_mod.ImageStore)
    assert back.x_train.source.path == data.x_train.source.path.resolve()
    assert back.x_val.source is back.x_train.source  # one store opened, shared by the splits
    assert back.digest() == data.digest()
    np.testing.assert_array_equal(back.x_val[:], data.x_val[:])
    np.testing.assert_array_equal(back.y_test, data.y_test)
