"""The image store's fast paths: threaded decoding in this process, and batch reads straight
into the output array (runs of consecutive records in one read, short reads continued)."""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
import pytest

from automl.data import store as store_mod


def _files(folder, n: int, size: int = 24) -> list[str]:
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f"{i:03d}.png"
        Image.fromarray(rng.integers(0, 255, (size, size + 6, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


def _build(tmp_path, paths, size: int = 16):
    return store_mod.build_from_files(
        paths, [i % 2 for i in range(len(paths))], ["a", "b"], size, tmp_path / "stores",
        key=f"k{len(paths)}-{size}",
    )  # fmt: skip


def test_small_build_decodes_in_threads_and_each_record_is_its_file(tmp_path, monkeypatch):
    paths = _files(tmp_path / "imgs", 24)
    monkeypatch.setattr(store_mod, "IN_PROCESS_BELOW", 8)  # threads from 8 files on
    threads = set()
    real = store_mod.decode_image

    def spy(path, size):
        threads.add(threading.get_ident())
        time.sleep(0.005)  # a decode's time, GIL released: the other threads take parts
        return real(path, size)

    monkeypatch.setattr(store_mod, "decode_image", spy)
    store = _build(tmp_path, paths)
    assert len(threads) > 1  # decoded by several threads of this process
    got = store.read(np.arange(len(paths)))
    for i, p in enumerate(paths):
        np.testing.assert_array_equal(got[i], real(p, 16))


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_an_error_in_one_decoding_thread_stops_the_others_and_is_raised(
    tmp_path, monkeypatch, error
):
    paths = _files(tmp_path / "imgs", 48)
    images = tmp_path / "images.u8"
    images.write_bytes(bytes(48 * 16 * 16 * 3))
    decoded, writes = [], []
    real = store_mod.decode_image

    def slow(path, size):
        decoded.append(path)
        time.sleep(0.005)  # a decode's time: the threads run side by side
        return real(path, size)

    def write(fd, data, offset):
        writes.append(offset)
        if len(writes) == 4:  # e.g. the disk is full, or Ctrl-C
            raise error
        os.pwrite(fd, bytes(data), offset)

    monkeypatch.setattr(store_mod, "decode_image", slow)
    monkeypatch.setattr(store_mod, "_pwrite_all", write)
    items = list(enumerate(paths))
    with pytest.raises(type(error)):
        store_mod._decode_chunk(str(images), 16, items, threads=2)
    # 2 threads, parts of 6 files: each ends the part it is on, and starts no other.
    assert 4 <= len(decoded) <= 12, len(decoded)
    # The threads have ended: nothing writes into the store after the error.
    assert not [t for t in threading.enumerate() if t.name.startswith("automl-decode")]


def test_records_are_handed_to_the_disk_as_they_are_written(tmp_path, monkeypatch):
    # The closing fsync then has little left to write (bench/README.md: 25 ms of a 1k build).
    paths = _files(tmp_path / "imgs", 24)
    monkeypatch.setattr(store_mod, "IN_PROCESS_BELOW", 8)  # threads
    ranges = []
    real = store_mod._write_behind
    monkeypatch.setattr(
        store_mod, "_write_behind", lambda fd, off, n: (ranges.append((off, n)), real(fd, off, n))
    )
    store = _build(tmp_path, paths)
    record = 16 * 16 * 3
    covered = np.zeros(24 * record, bool)
    for off, n in ranges:
        covered[off : off + n] = True
    assert len(ranges) > 1 and covered.all()  # every record, part by part
    assert store.read([23])[0].any()
    if sys.platform.startswith("linux"):
        assert store_mod._sync_file_range() is not None  # the call is found: not a no-op


def test_a_stream_of_images_is_handed_to_the_disk_in_steps(tmp_path, monkeypatch):
    monkeypatch.setattr(store_mod, "WRITE_BEHIND_BYTES", 2000)  # every 3 records of 768 bytes
    ranges = []
    monkeypatch.setattr(store_mod, "_write_behind", lambda fd, off, n: ranges.append((off, n)))
    rng = np.random.default_rng(1)
    images = [(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), i % 2) for i in range(10)]
    store, _ = store_mod.build_from_images(iter(images), 10, 16, tmp_path / "s", key="stream")
    assert ranges == [(0, 2304), (2304, 2304), (4608, 2304)]  # the last record: by the fsync
    for i, (img, _) in enumerate(images):
        np.testing.assert_array_equal(store.read([i])[0], img)


def test_read_returns_the_records_asked_for_in_order_with_duplicates(tmp_path, monkeypatch):
    paths = _files(tmp_path / "imgs", 12)
    store = _build(tmp_path, paths)
    each = [store.read([i])[0] for i in range(12)]
    # Reads are cut short (as the kernel does past ~2 GB): they must be continued, not
    # taken for a truncated store.
    cap = 100  # bytes per call, less than one record (16 * 16 * 3)
    real_pread, real_preadv = os.pread, os.preadv
    monkeypatch.setattr(os, "pread", lambda fd, n, off: real_pread(fd, min(n, cap), off))
    monkeypatch.setattr(
        os, "preadv", lambda fd, bufs, off: real_preadv(fd, [memoryview(bufs[0])[:cap]], off)
    )
    want = [5, 6, 7, 3, 3, 11, 0, 1, 2, 2, 10, 9]  # runs, duplicates, unsorted
    got = store.read(want)
    assert got.shape == (12, 16, 16, 3)
    for k, i in enumerate(want):
        np.testing.assert_array_equal(got[k], each[i])
    assert store.read([]).shape == (0, 16, 16, 3)
    with pytest.raises(IndexError, match=r"record index out of range 0\.\.11"):
        store.read([3, 12])


def test_a_truncated_store_is_a_clear_error_not_an_endless_read(tmp_path):
    from automl.errors import DataError

    store = _build(tmp_path, _files(tmp_path / "imgs", 4))
    os.truncate(store.path / store_mod.IMAGES_FILE, 3 * store.record_bytes + 10)
    np.testing.assert_array_equal(store.read([2, 0]).shape, (2, 16, 16, 3))
    with pytest.raises(DataError, match=r"is truncated; delete it and run again"):
        store.read([2, 3])


def test_read_into_a_given_array_and_a_wrong_one_is_refused(tmp_path):
    store = _build(tmp_path, _files(tmp_path / "imgs", 6))
    want = [4, 1, 2, 3, 0]
    out = np.zeros((5, 16, 16, 3), np.uint8)
    assert store.read(want, out=out) is out
    np.testing.assert_array_equal(out, store.read(want))
    with pytest.raises(ValueError, match=r"shape \(5, 16, 16, 3\)"):
        store.read(want, out=np.zeros((4, 16, 16, 3), np.uint8))


def test_batch_buffers_are_aligned_and_reused_only_when_nothing_holds_them():
    from automl.data.images import ALIGN, BatchBuffers

    buffers = BatchBuffers((4, 4, 3))
    a = buffers.get(8)
    assert a.shape == (8, 4, 4, 3) and a.dtype == np.uint8 and a.ctypes.data % ALIGN == 0
    b = buffers.get(8)
    assert b is not a  # `a` is still held
    a_id = id(a)
    del a
    c = buffers.get(8)
    assert id(c) == a_id  # released: reused
    view = c[:2]
    del c
    assert id(buffers.get(8)) not in (a_id, id(b))  # a view of it still holds it
    del view
    assert buffers.get(3).shape == (3, 4, 4, 3)  # another batch length: its own array


@pytest.mark.parametrize("grouped", [False, True])
def test_batches_held_by_the_caller_are_never_overwritten(tmp_path, monkeypatch, grouped):
    """make_dataset reuses its output arrays; TensorFlow wraps them without a copy, so a batch
    still held (here: every batch of three epochs) must keep its images. Read a batch at a
    time (the arrays are the batches) and several batches per read (rebatched)."""
    from automl import trial
    from automl.data.images import ImageView
    from automl.trial import make_dataset

    if not grouped:
        monkeypatch.setattr(trial, "READ_GROUP_BYTES", 1)
    assert trial.read_group(8, (16, 16, 3)) == (trial.READ_GROUP_MAX if grouped else 1)
    store = _build(tmp_path, _files(tmp_path / "imgs", 40))
    every = store.read(np.arange(40))
    ds = make_dataset(ImageView(store), np.arange(40), 8, shuffle=True, seed=1)
    held = [(x, y) for _ in range(3) for x, y in ds]
    orders = [np.concatenate([y.numpy() for _, y in held[k * 5 : (k + 1) * 5]]) for k in range(3)]
    assert len({tuple(o) for o in orders}) > 1  # reshuffled each epoch
    for x, y in held:
        np.testing.assert_array_equal(x.numpy(), every[y.numpy()])


def test_reading_several_batches_at_once_gives_the_same_batches_in_the_same_order(
    tmp_path, monkeypatch
):
    """Grouped reads (several batches per read, rebatched) against one read per batch: the
    same seeded epochs, image for image, with a short last batch and sample weights."""
    from automl import trial
    from automl.data.images import ImageView

    store = _build(tmp_path, _files(tmp_path / "imgs", 45))  # 45 = 5 batches of 8 + 5
    every = store.read(np.arange(45))
    y = np.arange(45)
    w = np.linspace(0.5, 1.5, 45).astype(np.float32)

    def epochs(group_bytes, **kw):
        monkeypatch.setattr(trial, "READ_GROUP_BYTES", group_bytes)
        ds = trial.make_dataset(ImageView(store), y, 8, shuffle=True, seed=3, **kw)
        assert int(ds.cardinality()) == 6  # known: Keras counts an epoch's steps by it
        return [[tuple(t.numpy() for t in b) for b in ds] for _ in range(2)]

    monkeypatch.setattr(trial, "READ_GROUP_MAX", 3)  # groups of 3 batches: 24 + 21 images
    group_bytes = trial.READ_GROUP_BYTES
    for kw in ({}, {"weights": w}):
        one, grouped = epochs(1, **kw), epochs(group_bytes, **kw)
        assert [len(b[0]) for b in grouped[0]] == [8, 8, 8, 8, 8, 5]
        assert [b[1].tolist() for b in grouped[0]] != [b[1].tolist() for b in grouped[1]]
        for e1, e2 in zip(one, grouped):
            assert len(e1) == len(e2) == 6
            for b1, b2 in zip(e1, e2):
                for t1, t2 in zip(b1, b2):
                    np.testing.assert_array_equal(t1, t2)
                np.testing.assert_array_equal(b2[0], every[b2[1]])


def test_jpegs_decode_through_simplejpeg_like_pil_and_bad_ones_are_unreadable(
    tmp_path, monkeypatch
):
    pytest.importorskip("simplejpeg")
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))
    photo = photo.filter(ImageFilter.GaussianBlur(3))  # smooth, like a photo
    good, gray, cut = tmp_path / "a.jpg", tmp_path / "g.jpg", tmp_path / "cut.jpg"
    photo.save(good, quality=90)
    photo.convert("L").save(gray)
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert store_mod._decode_jpeg(good, 128) is not None  # the fast path took it
    fast = {s: store_mod.decode_image(good, s) for s in (96, 128, 224)}
    fast_gray = store_mod.decode_image(gray, 128)
    assert store_mod._decode_jpeg(cut, 128) is None  # refused: PIL decides, and refuses too
    assert store_mod.decode_image(cut, 128) is None
    monkeypatch.setattr(store_mod, "_simplejpeg", None)  # PIL only
    for s, a in fast.items():
        pil = store_mod.decode_image(good, s)
        assert a.shape == pil.shape == (s, s, 3)
        diff = np.abs(a.astype(int) - pil.astype(int))
        # 128 px: both decode at 1/2 scale, same pixels; 96 / 224 px: simplejpeg at 3/8 / 6/8
        # (PIL: 1/2 / full size), then the same bilinear resize: a pixel or two apart.
        assert (diff.max() == 0) if s == 128 else (diff.mean() < 2 and diff.max() < 16), (s, diff)
    np.testing.assert_array_equal(fast_gray, store_mod.decode_image(gray, 128))
    assert store_mod.decode_image(cut, 128) is None


def test_pipelines_share_their_batch_arrays_so_making_many_does_not_grow_memory(
    tmp_path, monkeypatch
):
    """TensorFlow keeps a traced numpy_function's closure after its dataset is gone: arrays
    kept per dataset would stay for every trial's datasets. They are kept per image shape."""
    import gc

    from automl.data import images
    from automl.data.images import ImageView
    from automl.trial import make_dataset

    store = _build(tmp_path, _files(tmp_path / "imgs", 40), size=20)  # a shape of its own
    made = []
    real = images.aligned_empty
    monkeypatch.setattr(images, "aligned_empty", lambda shape: made.append(1) or real(shape))

    def one_epoch(seed):
        for _ in make_dataset(ImageView(store), np.arange(40), 8, shuffle=True, seed=seed):
            pass
        gc.collect()

    one_epoch(0)
    first = len(made)
    for seed in range(1, 4):
        one_epoch(seed)
    assert 0 < first and len(made) - first <= first + 2, (first, len(made))  # reused, not 3x
