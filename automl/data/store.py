"""The on-disk image store: images decoded once, at one size, reused by every run.

A store is one folder, ``<cache dir>/<key>/``, holding:

- ``images.u8``: ``count`` fixed-size records of ``size x size x 3`` uint8 (RGB, HWC), record
  ``i`` at byte ``i * size * size * 3``. Any process reads a batch with ``os.pread`` at those
  offsets (no memory map: pages read stay in the kernel's page cache, not in the reader's
  resident memory, so a process reading the whole store in batches stays flat);
- ``labels.npy``: one int64 label per record (an index into ``class_names``);
- ``meta.json``: the key, count, size, class names and which records were unreadable
  (skipped); ``entries.json``: each record's file (relative path, bytes, modification
  time, class), for the names of skipped files and to reuse records in the next build. It is written last, and the folder is built as
  ``.building-<key>-<pid>`` beside its final place and renamed into place when complete: a
  folder named ``<key>`` is always complete; a ``.building-*`` folder left by a killed build
  is never read and is removed by the next build of the same key.

Why this format: fixed-size records need no index and no decoding, are written in place by
parallel processes (each writes its records at their offsets) and read by any number of
processes by offset; the images are at most a few hundred pixels square, so a record is
small and a batch is a handful of reads. TFRecord needs a parse per image, HDF5 a library
and locking across processes, a memory map counts its pages against the reader's memory.

The key is a hash of what the store is made of (for a folder: every file's relative path,
size, modification time and class), the image size and :data:`FORMAT_VERSION`: a touched,
added or removed file gives a new key and a new store. Records of files that did not change
are copied from the previous store of the same source instead of being decoded again.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from automl.errors import DataError

log = logging.getLogger("automl")

FORMAT_VERSION = 1
IMAGES_FILE = "images.u8"
LABELS_FILE = "labels.npy"
META_FILE = "meta.json"
ENTRIES_FILE = "entries.json"
BUILDING_PREFIX = ".building-"
MAX_STORE_SIZE = 260  # the largest size images are stored at (px, square)
# Below this many files a build decodes in this process (starting worker processes costs more).
IN_PROCESS_BELOW = 256
# Below this many files a build decodes in this process, in threads: simplejpeg and PIL
# release the GIL while they decode and resize, and spawning processes (each importing NumPy
# and PIL) costs more than the GIL does at this size. Measured on 2 idle cores (bench/README.md,
# "First decode: threads that take parts"): threads 2,990-3,340 images/s at 2k files and
# 3,090-3,590 at 5k, processes 2,200-2,290 and 2,900-2,960; at 10k both ~3,300. With more
# CPUs the GIL caps threads sooner while processes still start side by side: the line is
# THREADS_BELOW * 2 / CPUs, not below THREADS_BELOW_MIN (a guess: measured on 2 CPUs only).
THREADS_BELOW = 8192
THREADS_BELOW_MIN = 2048
# Decoding threads per CPU in this process (below THREADS_BELOW): one. Each takes
# THREAD_CHUNK files at a time from a shared list (no future per file): at 1k files two such
# threads decoded 3,300-3,540 images/s where a pool of four with a future per file did
# 2,590-2,830.
THREADS_IN_PROCESS = 1
THREAD_CHUNK = 32
# Decoding threads per decoding process: one. Two were faster only against other jobs' threads
# on a loaded machine (a larger share of the cores); alone they cost ~8 % more CPU per image
# in GIL hand-offs (10k files, 2 idle cores: 2.73-2.75 s with one, 2.97-3.09 s with two).
THREADS = 1
CHUNK = 256  # files per task of a decoding process (fewer, larger tasks: less messaging)
SPACE_MARGIN = 64 * 2**20  # bytes kept free beyond the store itself
WRITE_BEHIND_BYTES = 8 * 2**20  # a stream of images is handed to the disk in steps of this


# ----------------------------------------------------------------------------- decoding


def decode_image(path: str | Path, size: int) -> np.ndarray | None:
    """The image at ``path`` as ``size x size x 3`` uint8 RGB, or None when unreadable
    (:func:`automl.data.imageio.open_image`: not an image, corrupt, truncated, or a
    decompression bomb). JPEGs are decoded at reduced scale where that keeps them at least
    ``size`` px on each side (:func:`_decode_jpeg`, else PIL's ``draft``), then resized
    (bilinear)."""
    from PIL import Image

    from automl.data.imageio import UnreadableImage, open_image, to_rgb

    fast = _decode_jpeg(path, size)
    if fast is not None:
        return fast
    try:
        with open_image(path, draft=(size, size)) as im:
            if im.mode == "RGB":  # resized as a PIL image: no array round trip
                if im.size != (size, size):
                    im = im.resize((size, size), Image.BILINEAR)
                return np.asarray(im, np.uint8)
            a = to_rgb(im)
        if a.shape[:2] != (size, size):
            a = np.asarray(Image.fromarray(a).resize((size, size), Image.BILINEAR), np.uint8)
        return a
    except (UnreadableImage, OSError, ValueError):
        return None


def _decode_jpeg(path: str | Path, size: int) -> np.ndarray | None:
    """A JPEG through libjpeg-turbo's TurboJPEG API (``simplejpeg``), or None: not a JPEG,
    ``simplejpeg`` absent, or anything it refuses (CMYK, corrupt or truncated data: the PIL
    path then decides, with its rules for unreadable files).

    Measured (bench/README.md, "Pipeline and decode"): 0.42-0.48 ms of CPU per 400x300 file
    at 128 px against 0.52-0.55 through PIL, the same pixels: one read of the file and one call that
    releases the GIL, where PIL parses and feeds its decoder in Python. It also scales by
    any M/8 (PIL's ``draft``: 1/2, 1/4, 1/8 only), the smallest that keeps both sides at
    least ``size``: at 224 px a 400x300 photo decodes at 6/8 (300x225), not full size.
    """
    if _simplejpeg is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
        try:  # one read of the whole file (a JPEG is small): fewer calls than open().read()
            data = os.read(fd, os.fstat(fd).st_size + 1)
        finally:
            os.close(fd)
    except OSError:
        return None
    if data[:3] != b"\xff\xd8\xff":  # not a JPEG
        return None
    from automl.data.imageio import max_pixels

    try:
        h, w, _, _ = _simplejpeg.decode_jpeg_header(data)
        if h * w > max_pixels():  # a decompression bomb: PIL's path refuses it
            return None
        a = _simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=size, min_width=size)
    except ValueError:
        return None
    if a.shape[:2] != (size, size):
        from PIL import Image

        a = np.asarray(Image.fromarray(a).resize((size, size), Image.BILINEAR), np.uint8)
    return a


def _load_simplejpeg():
    try:
        import simplejpeg
    except ImportError:  # an install without it: PIL decodes every file
        return None
    return simplejpeg


_simplejpeg = _load_simplejpeg()


def _decode_chunk(
    images_file: str, size: int, items: list[tuple[int, str]], threads: int = 1, done=None
) -> list[int]:
    """Decode ``(record, path)`` items into ``images_file`` at their records, in ``threads``
    threads (each writes its records with ``pwrite``); returns the unreadable records.
    ``done(n)``: called as records are written (from the threads)."""
    record = size * size * 3
    fd = os.open(images_file, os.O_WRONLY)
    bad: list[int] = []

    def some(part: Sequence[tuple[int, str]]) -> None:
        written = 0
        for i, path in part:
            img = decode_image(path, size)
            if img is None:
                bad.append(i)
                continue
            _pwrite_all(fd, np.ascontiguousarray(img), i * record)
            written += 1
        if written:
            first, last = min(i for i, _ in part), max(i for i, _ in part)
            _write_behind(fd, first * record, (last + 1 - first) * record)
            if done is not None:
                done(written)

    try:
        if threads <= 1 or len(items) < 2:
            some(items)
        else:
            _in_threads(some, items, threads)
    finally:
        os.close(fd)
    return sorted(bad)


def _in_threads(work: Callable[[Sequence], None], items: Sequence, threads: int) -> None:
    """``work(part)`` over ``items`` in parts of up to :data:`THREAD_CHUNK`, by ``threads``
    threads that each take the next part when done with theirs. The first error (or a
    Ctrl-C in this thread) stops them after the parts they are on, and is raised here."""
    import threading

    step = max(1, min(THREAD_CHUNK, -(-len(items) // (4 * threads))))  # >= 4 parts a thread
    starts = iter(range(0, len(items), step))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def run() -> None:
        while not errors:
            with lock:
                start = next(starts, None)
            if start is None:
                return
            try:
                work(items[start : start + step])
            except BaseException as e:  # stops the others; raised by the caller
                errors.append(e)

    pool = [
        threading.Thread(target=run, name=f"automl-decode-{k}", daemon=True) for k in range(threads)
    ]
    for t in pool:
        t.start()
    try:
        for t in pool:
            t.join()
    except BaseException as e:  # Ctrl-C: no new part is started; the running ones end
        errors.append(e)
        for t in pool:
            t.join()
        raise
    if errors:
        raise errors[0]


def _write_behind(fd: int, offset: int, nbytes: int) -> None:
    """Start writing ``nbytes`` at ``offset`` of ``fd`` to disk, without waiting (Linux's
    ``sync_file_range(SYNC_FILE_RANGE_WRITE)``), so that the build's closing ``fsync`` finds
    little left to write: 25 ms of a 1k-image build's ~300 ms, and seconds at 100k images.
    Elsewhere, or when the call is missing, nothing is done (the ``fsync`` writes it all)."""
    call = _sync_file_range()
    if call is not None:
        call(fd, offset, nbytes, 2)  # SYNC_FILE_RANGE_WRITE; an error only means no head start


@functools.cache
def _sync_file_range():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return call


def _ignore_sigint() -> None:
    """Ctrl-C is the search's to handle: a decoding process finishes its chunk."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _pwrite_all(fd: int, data, offset: int) -> None:
    view = memoryview(data).cast("B")  # bytes or a C-contiguous array, written without a copy
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


# ----------------------------------------------------------------------------- listing, key


def list_folder(root: str | Path) -> tuple[list[tuple[str, int, int, int]], list[str]]:
    """``([(relative path, size, mtime_ns, class index)], class names)`` of a class folder.

    One ``os.scandir`` walk, no file opened; class = first-level sub-folder, files at any
    depth below it, hidden entries skipped, sorted by path.
    """
    root = Path(root)
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    entries: list[tuple[str, int, int, int]] = []
    for c, name in enumerate(classes):
        stack = [name]
        while stack:
            rel = stack.pop()
            with os.scandir(root / rel) as it:
                for e in it:
                    if e.name.startswith("."):
                        continue
                    r = f"{rel}/{e.name}"
                    if e.is_dir():
                        stack.append(r)
                    elif e.is_file():
                        st = e.stat()
                        entries.append((r, st.st_size, st.st_mtime_ns, c))
    entries.sort()
    return entries, classes


def files_key(entries: Iterable[Sequence[Any]], size: int, extra: str = "") -> str:
    """The store key of ``(name, size, mtime_ns, label)`` entries at ``size`` px."""
    h = hashlib.sha256(f"automl-store v{FORMAT_VERSION} size={int(size)} {extra}\n".encode())
    for e in entries:
        h.update(("\0".join(map(str, e)) + "\n").encode())
    return h.hexdigest()[:32]


# ----------------------------------------------------------------------------- reading


class NoReadableImages(DataError):
    """Every file of a build was unreadable: no store is kept (the caller says which)."""

    def __init__(self, count: int):
        super().__init__(f"none of the {count} files is a readable image")
        self.count = count


class ImageStore:
    """A complete store, opened read-only; :meth:`read` returns a batch of records.

    Pickles as its path (a worker process or a Ray task opens it again).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_file = self.path / META_FILE
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError) as e:
            raise DataError(
                f"image store {str(self.path)!r} is missing or incomplete ({type(e).__name__}); "
                "delete the folder and run again to rebuild it"
            ) from None
        if meta.get("format") != FORMAT_VERSION or not meta.get("complete"):
            raise DataError(
                f"image store {str(self.path)!r} is of another version or incomplete; "
                "delete the folder and run again to rebuild it"
            )
        self.meta = meta
        self.key: str = meta["key"]
        self.size: int = int(meta["size"])
        self.count: int = int(meta["count"])
        self.class_names: list[str] = list(meta["class_names"])
        self.names: list[str] = list(meta.get("names", []))
        self.skipped: list[int] = list(meta.get("skipped", []))
        self.record_bytes = self.size * self.size * 3
        self.labels = np.load(self.path / LABELS_FILE, allow_pickle=False)
        self._fd: int | None = None
        self._pid = -1
        self._file()  # opened here, not by the first of several reading threads

    def __len__(self) -> int:
        return self.count

    def __getstate__(self):
        return {"path": str(self.path)}

    def __setstate__(self, state):
        if not (Path(state["path"]) / META_FILE).is_file():
            import socket

            raise DataError(
                f"image store {state['path']!r} is not visible on {socket.gethostname()}; "
                "put --cache-dir (cache_dir=) on a filesystem every node shares"
            )
        self.__init__(state["path"])

    def __del__(self):
        if self._fd is not None and self._pid == os.getpid():
            try:
                os.close(self._fd)
            except OSError:
                pass

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a forked child opens its own
            self._fd = os.open(self.path / IMAGES_FILE, os.O_RDONLY)
            self._pid = os.getpid()
        return self._fd

    def name_of(self, i: int) -> str:
        """What record ``i`` was made from (a file's path relative to its folder, or a path)."""
        if self.names:
            return self.names[i]
        entries = self.entries()
        return str(entries[i][0]) if entries else f"#{i}"

    def entries(self) -> list | None:
        """``[name, bytes, mtime_ns, label]`` of each record's file (None: not from files).

        Kept out of ``meta.json``, so that opening a store (every worker does) stays cheap."""
        f = self.path / ENTRIES_FILE
        return json.loads(f.read_text()) if f.is_file() else None

    @property
    def valid(self) -> np.ndarray:
        """Indices of the readable records."""
        keep = np.ones(self.count, bool)
        keep[np.asarray(self.skipped, np.int64)] = False
        return np.flatnonzero(keep)

    def read(self, indices, out: np.ndarray | None = None) -> np.ndarray:
        """Records ``indices`` (in that order) as an ``(n, size, size, 3)`` uint8 array:
        ``out`` when given (C-contiguous, that shape: read into, e.g. a reused buffer)."""
        idx = np.asarray(indices, np.int64).reshape(-1)
        shape = (len(idx), self.size, self.size, 3)
        if out is None:
            out = np.empty(shape, np.uint8)
        elif out.shape != shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous uint8 array of shape {shape}")
        if len(idx) == 0:
            return out
        if idx.min() < 0 or idx.max() >= self.count:
            raise IndexError(f"record index out of range 0..{self.count - 1}")
        fd, rec = self._file(), self.record_bytes
        buf = memoryview(out).cast("B")  # the batch's bytes: each run is read straight in
        where = idx.tolist()
        # Runs of consecutive records, one preadv each (a shuffled batch: mostly runs of 1).
        if len(where) > 1 and (np.diff(idx) == 1).any():
            starts = np.flatnonzero(np.diff(idx, prepend=idx[0] - 2) != 1).tolist()
            runs = zip(starts, starts[1:] + [len(where)])
        else:
            runs = ((k, k + 1) for k in range(len(where)))
        preadv = os.preadv
        for i, j in runs:
            lo, hi, offset = i * rec, j * rec, where[i] * rec
            while lo < hi:  # a read returns at most ~2 GB: the rest of a long run in more
                n = preadv(fd, [buf[lo:hi]], offset)
                if n <= 0:
                    raise DataError(
                        f"image store {str(self.path)!r} is truncated; delete it and run again"
                    )
                lo, offset = lo + n, offset + n
        return out


def open_store(folder: str | Path) -> ImageStore | None:
    """The complete store in ``folder``, or None (absent, or not complete)."""
    folder = Path(folder)
    if not (folder / META_FILE).is_file():
        return None
    try:
        return ImageStore(folder)
    except DataError:
        return None


# ----------------------------------------------------------------------------- writing


def default_cache_dir(tracking_uri: str | None = None) -> Path:
    """``stores/`` beside the search folders: next to the SQLite file, else ``mlruns/``."""
    from automl.tracking import resolve_tracking_uri, sqlite_path

    db = sqlite_path(resolve_tracking_uri(tracking_uri))
    return (db.parent if db is not None else Path("mlruns")) / "stores"


def _human(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _write_failed(e: OSError, cache: Path, need: int) -> DataError:
    """The one-line error of a store build that could not write (a full disk, or no access)."""
    if e.errno == errno.ENOSPC:
        return _no_space(cache, need)
    return DataError(
        f"cannot write the image store in {str(cache)!r} ({e.strerror or e}); "
        "pass --cache-dir (cache_dir=) a writable folder with free space"
    )


def _no_space(folder: Path, need: int) -> DataError:
    return DataError(
        f"not enough disk space for the image store in {str(folder)!r}: it needs "
        f"{need} bytes ({_human(need)}); free space there or pass --cache-dir (cache_dir=) "
        "a folder on a larger disk"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale(cache: Path, key: str) -> None:
    """Remove ``.building-<key>-<pid>`` folders whose builder is gone (a killed build)."""
    for p in cache.glob(f"{BUILDING_PREFIX}{key}-*"):
        try:
            pid = int(p.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if pid == os.getpid() or not _pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)


class _Bar:
    """Build progress: a tqdm bar in a terminal, else a line at each quarter (builds of
    :data:`IN_PROCESS_BELOW` images or more; a smaller one shows nothing)."""

    def __init__(self, progress, total: int, what: str):
        if total < IN_PROCESS_BELOW:  # a second or two: nothing to show
            progress = None
        self.progress, self.total, self.done, self.what = progress, total, 0, what
        self.bar = None
        self.next_line = 0.25
        if progress is not None and progress.verbose and progress.bars:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=what, unit="img", file=progress.stream, leave=False)
        elif progress is not None:
            progress.message(f"{what}: {total} images")

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.progress is not None and self.done >= self.next_line * self.total:
            self.progress.message(f"{self.what}: {self.done}/{self.total}")
            while self.next_line * self.total <= self.done:
                self.next_line += 0.25

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _lock(cache: Path, key: str):
    from filelock import FileLock

    path = cache / f"{BUILDING_PREFIX}{key}.lock"
    if not path.exists():
        _MADE.append(path)
    return FileLock(str(path))


# What this process created (stores, lock files, folders), in order: a load that ends in a
# DataError removes what it made (see :func:`undone_on_error`).
_MADE: list[Path] = []


@contextlib.contextmanager
def undone_on_error(cache_dir: str | Path | None):
    """On a :class:`DataError` (bad data: one class, too few images, unreadable files with
    ``strict``...), remove the stores, lock files and folders made inside the block: a
    refused command leaves the disk as it was. Stores made by other processes stay."""
    mark = len(_MADE)
    created = _missing_folders(Path(cache_dir)) if cache_dir is not None else []
    try:
        yield
    except DataError:
        for p in reversed(_MADE[mark:]):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        del _MADE[mark:]
        for d in created:
            try:
                d.rmdir()
            except OSError:  # not empty (or gone): keep it and its parents
                break
        raise


def _prepare(cache: Path) -> None:
    try:
        cache.mkdir(parents=True, exist_ok=True)
        probe = cache / f"{BUILDING_PREFIX}probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise _no_space(cache, SPACE_MARGIN) from None
        raise DataError(
            f"cannot write the image store in {str(cache)!r} ({e.strerror or e}); "
            "pass --cache-dir (cache_dir=) a writable folder"
        ) from None


def _finish(tmp: Path, dest: Path, meta: dict, labels: np.ndarray) -> ImageStore:
    np.save(tmp / LABELS_FILE, np.asarray(labels, np.int64), allow_pickle=False)
    entries = meta.pop("_entries", None)
    if entries is not None:
        (tmp / ENTRIES_FILE).write_text(json.dumps(entries))
    (tmp / META_FILE).write_text(json.dumps(meta))
    fd = os.open(tmp / IMAGES_FILE, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, dest)  # the store appears complete, or not at all
    _MADE.append(dest)
    return ImageStore(dest)


def _build(
    cache: Path,
    key: str,
    count: int,
    size: int,
    fill: Callable[[Path, str], list[int]],
    meta: dict,
    labels: np.ndarray,
) -> ImageStore:
    """Build store ``key`` in a temporary folder with ``fill(tmp, images_file)`` (which
    returns the skipped records), then rename it into place. Returns the opened store."""
    dest = cache / key
    need = count * size * size * 3
    tmp = cache / f"{BUILDING_PREFIX}{key}-{os.getpid()}"
    try:
        free = shutil.disk_usage(cache).free
        if free < need + SPACE_MARGIN:
            raise _no_space(cache, need)
        tmp.mkdir()
        images = tmp / IMAGES_FILE
        with open(images, "wb") as f:
            try:
                os.posix_fallocate(f.fileno(), 0, max(need, 1))  # ENOSPC here, not half-way
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise
                f.truncate(need)
        skipped = fill(tmp, str(images))
        if count and len(skipped) >= count:
            raise NoReadableImages(count)
        meta = {
            **meta,
            "format": FORMAT_VERSION,
            "key": key,
            "size": int(size),
            "count": int(count),
            "skipped": sorted(int(i) for i in skipped),
            "built": time.time(),
            "complete": True,
        }
        return _finish(tmp, dest, meta, labels)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _write_failed(e, cache, need) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _previous_records(cache: Path, source_id: str, size: int) -> tuple[ImageStore, dict] | None:
    """The newest complete store of the same source at the same size, with
    ``{(name, bytes, mtime_ns): record}`` of its readable records."""
    best = None
    for p in cache.iterdir() if cache.is_dir() else ():
        if p.name.startswith(".") or not (p / META_FILE).is_file():
            continue
        try:
            meta = json.loads((p / META_FILE).read_text())
        except (OSError, ValueError):
            continue
        if meta.get("source_id") != source_id or meta.get("size") != size:
            continue
        if best is None or meta.get("built", 0) > best[1].get("built", 0):
            best = (p, meta)
    if best is None:
        return None
    store = open_store(best[0])
    entries = store.entries() if store is not None else None
    if entries is None:
        return None
    skipped = set(store.skipped)
    return store, {tuple(e[:3]): i for i, e in enumerate(entries) if i not in skipped}


def build_from_files(
    paths: Sequence[str],
    labels: Sequence[int],
    class_names: Sequence[str],
    size: int,
    cache_dir: str | Path,
    *,
    key: str,
    names: Sequence[str] | None = None,
    entries: Sequence[Sequence[Any]] | None = None,
    source_id: str = "",
    progress=None,
    workers: int | None = None,
) -> ImageStore:
    """The store ``key`` of image files ``paths``: opened if complete, else decoded.

    Decoding runs in ``workers`` processes (default: the CPUs), each writing its records at
    their offsets. ``entries`` (``(name, bytes, mtime_ns, label)`` per path) let a later
    build copy the records of unchanged files instead of decoding them again.
    """
    size = int(size)
    if not 8 <= size <= MAX_STORE_SIZE:
        raise DataError(f"store size {size} is out of range; use 8 to {MAX_STORE_SIZE} px")
    cache = Path(cache_dir)
    found = open_store(cache / key)
    if found is not None:
        return found
    created = _missing_folders(cache)
    _prepare(cache)
    try:
        return _build_files_locked(
            cache, key, paths, labels, class_names, size, names, entries, source_id,
            progress, workers,
        )  # fmt: skip
    except BaseException:
        _remove_created(cache, key, created)  # a failed build leaves nothing behind
        raise


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    out = []
    p = folder.absolute()
    while not p.exists() and p != p.parent:
        out.append(p)
        p = p.parent
    return out


def _remove_created(cache: Path, key: str, created: list[Path]) -> None:
    if not created:
        return  # the folder was there before: its lock file may be another build's
    (cache / f"{BUILDING_PREFIX}{key}.lock").unlink(missing_ok=True)
    for d in created:
        try:
            d.rmdir()
        except OSError:  # not empty: something else is there now
            return


def _build_files_locked(
    cache, key, paths, labels, class_names, size, names, entries, source_id, progress, workers
) -> ImageStore:
    with _lock(cache, key):
        found = open_store(cache / key)  # another process may have built it meanwhile
        if found is not None:
            return found
        _clean_stale(cache, key)
        count = len(paths)
        previous = _previous_records(cache, source_id, size) if source_id and entries else None

        def fill(tmp: Path, images_file: str) -> list[int]:
            todo = list(range(count))
            bar = _Bar(progress, count, "decoding images into the store")
            try:
                if previous is not None:
                    todo = _copy_unchanged(previous, entries, images_file, size, bar)
                return _decode_all(
                    images_file, size, [(i, str(paths[i])) for i in todo], bar, workers
                )
            finally:
                bar.close()

        meta = {
            "class_names": list(map(str, class_names)),
            "names": list(names)
            if names is not None
            else ([] if entries is not None else [str(p) for p in paths]),
            "source_id": source_id,
        }
        if entries is not None:
            meta["_entries"] = [list(e) for e in entries]  # written to ENTRIES_FILE
        t0 = time.perf_counter()
        store = _build(cache, key, count, size, fill, meta, np.asarray(labels, np.int64))
        log.info(
            "image store %s: %d images at %d px in %.1fs (%d skipped)",
            store.path, count, size, time.perf_counter() - t0, len(store.skipped),
        )  # fmt: skip
        return store


def _copy_unchanged(previous, entries, images_file: str, size: int, bar: _Bar) -> list[int]:
    old, where = previous
    todo, copied = [], 0
    fd = os.open(images_file, os.O_WRONLY)
    try:
        for i, e in enumerate(entries):
            j = where.get(tuple(e[:3]))
            if j is None:
                todo.append(i)
                continue
            _pwrite_all(fd, old.read([j])[0].tobytes(), i * size * size * 3)
            copied += 1
    finally:
        os.close(fd)
    bar.update(copied)
    if copied:
        log.info("image store: %d unchanged images copied from %s", copied, old.path)
    return todo


def _decode_all(images_file, size, items, bar: _Bar, workers: int | None) -> list[int]:
    if not items:
        return []
    workers = workers or os.cpu_count() or 1
    if len(items) < max(THREADS_BELOW_MIN, THREADS_BELOW * 2 // workers) or workers <= 1:
        import threading

        lock = threading.Lock()

        def done(n: int) -> None:
            with lock:
                bar.update(n)

        # At least two threads: on one CPU, one reads a file while the other decodes.
        threads = 1 if len(items) < IN_PROCESS_BELOW else max(2, THREADS_IN_PROCESS * workers)
        return _decode_chunk(images_file, size, items, threads, done)
    # Chunks of CHUNK files, at least 4 per process (so that they end together).
    step = max(16, min(CHUNK, -(-len(items) // (4 * workers))))
    chunks = [items[i : i + step] for i in range(0, len(items), step)]
    # "spawn": TensorFlow may be imported here already, and forking it is not safe. A spawned
    # child runs the parent's __main__ again (a user's script without a main guard would
    # start a search in every worker): the workers start, at the submits, under an empty
    # __main__; they only need this module.
    ctx = multiprocessing.get_context("spawn")
    bad = []
    with ProcessPoolExecutor(
        max_workers=min(workers, len(chunks)), mp_context=ctx, initializer=_ignore_sigint
    ) as pool:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            futures = {
                pool.submit(_decode_chunk, images_file, size, c, THREADS): len(c) for c in chunks
            }
        finally:
            if main is not None:
                sys.modules["__main__"] = main
        try:
            from concurrent.futures import as_completed

            for f in as_completed(futures):
                bad += f.result()
                bar.update(futures[f])
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    return bad


def build_from_images(
    images: Iterator[tuple[np.ndarray, Any]] | Iterable[tuple[np.ndarray, Any]],
    count: int | None,
    size: int,
    cache_dir: str | Path,
    *,
    key: str | None,
    progress=None,
    what: str = "images",
) -> tuple[ImageStore, list]:
    """A store of in-memory images, streamed: ``images`` yields ``(HxWxC image, label)``;
    each is converted to RGB uint8 at ``size`` and written at once (no array of all).

    ``key``: the store's key when what it is made of is known up front (a TFDS dataset's
    name and version, a hash of arrays): a complete store of that key is opened without
    reading ``images``. None: the key is the hash of the images and labels written (a
    ``tf.data.Dataset``: read once per load, never held whole), and an identical store
    already there is used instead of the new one.

    Returns the store (its labels: positions in the returned list) and the list of raw
    labels in first-seen order. ``count`` (None: unknown) is for the space check and the
    progress bar.
    """
    size = int(size)
    if not 8 <= size <= MAX_STORE_SIZE:
        raise DataError(f"store size {size} is out of range; use 8 to {MAX_STORE_SIZE} px")
    cache = Path(cache_dir)
    if key is not None and (found := _with_labels(cache / key)) is not None:
        return found
    _prepare(cache)
    lock_key = key if key is not None else "stream"
    with _lock(cache, lock_key):
        _clean_stale(cache, lock_key)
        if key is not None and (found := _with_labels(cache / key)) is not None:
            return found
        tmp = cache / f"{BUILDING_PREFIX}{lock_key}-{os.getpid()}"
        need = (count or 0) * size * size * 3
        writer = _StreamWriter(size, hashed=key is None)
        try:
            if shutil.disk_usage(cache).free < need + SPACE_MARGIN:
                raise _no_space(cache, need)
            tmp.mkdir()
            bar = _Bar(progress, count or 0, f"writing {what} into the store")
            try:
                n = writer.write(images, str(tmp / IMAGES_FILE), bar)
            finally:
                bar.close()
            final = key if key is not None else "stream-" + writer.content.hexdigest()[:32]
            if (found := _with_labels(cache / final)) is not None:  # stored before
                shutil.rmtree(tmp, ignore_errors=True)
                return found
            labels = np.asarray(writer.labels, np.int64)
            return _finish(tmp, cache / final, writer.meta(final, n), labels), writer.raw
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise _write_failed(e, cache, max(need, writer.written_bytes())) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _with_labels(folder: Path) -> tuple[ImageStore, list] | None:
    """A complete store at ``folder`` and its raw labels, or None."""
    found = open_store(folder)
    return None if found is None else (found, list(found.meta.get("raw_labels", [])))


class _StreamWriter:
    """Writes ``(image, label)`` pairs one record at a time; numbers the labels in first-seen
    order and, for a store without a key, hashes what it wrote (the key)."""

    def __init__(self, size: int, hashed: bool):
        self.size, self.hashed = size, hashed
        self.raw: list = []
        self.index: dict = {}
        self.labels: list[int] = []
        self.content = hashlib.sha256(f"automl-store v{FORMAT_VERSION} size={size}\n".encode())

    def written_bytes(self) -> int:
        return (len(self.labels) + 1) * self.size * self.size * 3

    def write(self, images, images_file: str, bar) -> int:
        from automl.data.bundle import resize_batch, to_rgb_uint8

        n, behind = 0, 0  # records written; bytes handed to _write_behind
        with open(images_file, "wb") as f:
            for img, lbl in images:
                a = to_rgb_uint8(img)
                if a.shape[:2] != (self.size, self.size):
                    a = resize_batch(a[None], self.size)[0]
                data = a.tobytes()
                f.write(data)
                written = (n + 1) * len(data)
                if written - behind >= WRITE_BEHIND_BYTES:
                    f.flush()
                    _write_behind(f.fileno(), behind, written - behind)
                    behind = written
                lab = self._label(lbl)
                if self.hashed:
                    self.content.update(data)
                    self.content.update(f"{lab!r}\n".encode())
                n += 1
                bar.update(1)
            f.flush()
            os.fsync(f.fileno())
        return n

    def _label(self, lbl):
        lab = lbl.item() if hasattr(lbl, "item") else lbl
        if isinstance(lab, bytes):
            lab = lab.decode()
        if lab not in self.index:
            self.index[lab] = len(self.raw)
            self.raw.append(lab)
        self.labels.append(self.index[lab])
        return lab

    def meta(self, key: str, count: int) -> dict:
        return {
            "format": FORMAT_VERSION,
            "key": key,
            "size": self.size,
            "count": count,
            "class_names": [str(r) for r in self.raw],
            "raw_labels": [r if isinstance(r, (int, str, float)) else str(r) for r in self.raw],
            "names": [],
            "skipped": [],
            "built": time.time(),
            "complete": True,
        }


# ----------------------------------------------------------------------------- Ray nodes

NODE_CACHE_ENV = "AUTOML_NODE_CACHE"  # a node's own store folder (default: <tmp>/automl-stores)
COPY_ENV = "AUTOML_STORE_COPY"  # "always": copy even where the search's path is visible
COPY_CHUNK = 64 * 2**20


class StoreServer:
    """A store's files by byte range: a Ray actor on the search's node, for nodes that cannot
    see the store's path."""

    def __init__(self, path: str):
        self.path = Path(path)

    def files(self) -> list[tuple[str, int]]:
        return [(f.name, f.stat().st_size) for f in sorted(self.path.iterdir()) if f.is_file()]

    def read(self, name: str, offset: int, n: int) -> bytes:
        fd = os.open(self.path / name, os.O_RDONLY)
        try:
            return os.pread(fd, n, offset)
        finally:
            os.close(fd)


class RemoteStore:
    """An :class:`ImageStore` as sent to Ray workers: unpickled on a node as the store at the
    search's path when the node sees it, else as the node's own copy, fetched once per node
    from ``server`` (a :class:`StoreServer` actor)."""

    def __init__(self, store: ImageStore, server):
        self.path, self.key, self.size, self.count = store.path, store.key, store.size, store.count
        self.server = server

    def __len__(self) -> int:
        return self.count

    def __reduce__(self):
        return (open_on_node, (str(self.path), self.key, self.server))


def node_cache_dir() -> Path:
    import tempfile

    return Path(os.environ.get(NODE_CACHE_ENV) or Path(tempfile.gettempdir()) / "automl-stores")


def open_on_node(path: str, key: str, server) -> ImageStore:
    """The store ``key`` on this node: at ``path`` if visible, else copied once into
    :func:`node_cache_dir` (under a lock: one copy per node, whatever the workers)."""
    if os.environ.get(COPY_ENV) != "always" and (Path(path) / META_FILE).is_file():
        return ImageStore(path)
    cache = node_cache_dir()
    found = open_store(cache / key)
    if found is not None:
        return found
    import ray

    _prepare(cache)
    with _lock(cache, key):
        found = open_store(cache / key)
        if found is not None:
            return found
        _clean_stale(cache, key)
        files = ray.get(server.files.remote())
        need = sum(n for _, n in files)
        tmp = cache / f"{BUILDING_PREFIX}{key}-{os.getpid()}"
        t0 = time.perf_counter()
        try:
            if shutil.disk_usage(cache).free < need + SPACE_MARGIN:
                raise _no_space(cache, need)
            tmp.mkdir()
            # meta.json last: a copy cut short is never complete
            for name, size in sorted(files, key=lambda f: f[0] == META_FILE):
                with open(tmp / name, "wb") as f:
                    for off in range(0, size, COPY_CHUNK):
                        f.write(ray.get(server.read.remote(name, off, min(COPY_CHUNK, size - off))))
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, cache / key)
            _MADE.append(cache / key)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if e.errno == errno.ENOSPC:
                raise _no_space(cache, need) from None
            raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info(
            "image store %s copied to this node (%s, %d bytes) in %.1fs",
            key, cache / key, need, time.perf_counter() - t0,
        )  # fmt: skip
    return ImageStore(cache / key)


def for_ray(data, server_for: Callable[[ImageStore], Any]):
    """``data`` with each store source replaced by a :class:`RemoteStore` (same indices)."""
    from dataclasses import replace

    from automl.data.images import ImageView

    if data is None:
        return data
    swapped: dict[int, Any] = {}
    views = {}
    for split in ("x_train", "x_val", "x_test"):
        v = getattr(data, split)
        if isinstance(v.source, ImageStore):
            if id(v.source) not in swapped:
                swapped[id(v.source)] = RemoteStore(v.source, server_for(v.source))
            v = ImageView(swapped[id(v.source)], v.index)
        views[split] = v
    if not swapped:
        return data
    return replace(data, _digest=data.digest(), **views)
