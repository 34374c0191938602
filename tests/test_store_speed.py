"""The image store's fast paths: threaded decoding in this process, and batch reads straight
into the output array (runs of consecutive records in one read, short reads continued)."""

from __future__ import annotations

import os
import threading

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
        return real(path, size)

    monkeypatch.setattr(store_mod, "decode_image", spy)
    store = _build(tmp_path, paths)
    assert len(threads) > 1  # decoded by several threads of this process
    got = store.read(np.arange(len(paths)))
    for i, p in enumerate(paths):
        np.testing.assert_array_equal(got[i], real(p, 16))


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
