"""Images as a source plus index arrays: a split is a view, never a copy.

An image *source* is an on-disk :class:`automl.data.store.ImageStore` or an
:class:`ArrayImages` (small in-memory arrays: the demo, NumPy data under
:data:`IN_MEMORY_MAX_BYTES`). An :class:`ImageView` is a source plus the indices of one
split. It has ``len``, ``shape``, ``dtype`` and ``[]`` (which reads just the images asked
for), and :meth:`ImageView.batches` for whole-split consumers, which read batch by batch.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from collections.abc import Iterator

import numpy as np

IN_MEMORY_MAX_BYTES = 512 * 2**20  # NumPy images above this go to a store on disk
READ_BATCH = 256  # images per read of a whole-split consumer (predict, reports)


class ArrayImages:
    """An in-memory uint8 NHWC array as an image source."""

    def __init__(self, array: np.ndarray, key: str | None = None):
        self.array = array
        self.size = int(array.shape[1]) if array.ndim == 4 else 0
        self._key = key

    def __len__(self) -> int:
        return len(self.array)

    @property
    def key(self) -> str:
        """A content hash (the source's part of the data digest)."""
        if self._key is None:
            h = hashlib.sha256(str(self.array.shape).encode())
            h.update(np.ascontiguousarray(self.array).data)
            self._key = "arrays-" + h.hexdigest()[:24]
        return self._key

    def read(self, indices, out: np.ndarray | None = None) -> np.ndarray:
        idx = np.asarray(indices, np.int64)
        if out is None:
            return np.asarray(self.array[idx])
        return np.take(self.array, idx, axis=0, out=out)


def source_shape(source) -> tuple[int, int, int]:
    if isinstance(source, ArrayImages):
        return tuple(source.array.shape[1:])
    return (source.size, source.size, 3)


class ImageView:
    """The images ``index`` of ``source``, read on demand (a split of a data set)."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, source, index=None):
        self.source = source
        self.index = (
            np.arange(len(source), dtype=np.int64)
            if index is None
            else np.asarray(index, np.int64).reshape(-1)
        )

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *source_shape(self.source))

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))

    def take(self, positions) -> ImageView:
        """The view of ``positions`` of this view (no image is read)."""
        return ImageView(self.source, self.index[np.asarray(positions, np.int64)])

    def read(self, positions, out: np.ndarray | None = None) -> np.ndarray:
        """The images at ``positions`` of this view, in that order (into ``out`` if given)."""
        idx = self.index[np.asarray(positions, np.int64)]
        return self.source.read(idx) if out is None else self.source.read(idx, out=out)

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self.read([key])[0]
        if isinstance(key, slice):
            return self.read(np.arange(len(self.index))[key])
        if isinstance(key, tuple):  # x[:, ...] style: read the first axis, index the rest
            return self.__getitem__(key[0])[(slice(None), *key[1:])]
        key = np.asarray(key)
        if key.dtype == bool:
            key = np.flatnonzero(key)
        return self.read(key)

    def __array__(self, dtype=None, copy=None):
        a = self.read(np.arange(len(self.index)))
        return a if dtype is None else a.astype(dtype)

    def astype(self, dtype) -> np.ndarray:
        """All the images as an array of ``dtype`` (reads the whole view: small data only)."""
        return np.asarray(self).astype(dtype)

    def batches(self, batch_size: int = READ_BATCH) -> Iterator[np.ndarray]:
        """The images in order, ``batch_size`` at a time."""
        for i in range(0, len(self.index), batch_size):
            yield self.read(np.arange(i, min(i + batch_size, len(self.index))))

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """Up to ``n`` images picked at random (seeded), read in index order."""
        if len(self) <= n:
            return self[:]
        pick = np.sort(np.random.default_rng(seed).choice(len(self), n, replace=False))
        return self.read(pick)

    def __repr__(self) -> str:
        return f"ImageView({len(self)} images of {source_shape(self.source)})"


ALIGN = 64  # bytes: TensorFlow wraps a NumPy array this aligned without copying it
BUFFERS_MAX_BYTES = 48 * 2**20  # batch arrays a BatchBuffers keeps for reuse (per image shape)


def aligned_empty(shape, align: int = ALIGN) -> np.ndarray:
    """An uninitialised C-contiguous uint8 array of ``shape`` whose data is ``align``-aligned."""
    nbytes = int(np.prod(shape))
    raw = np.empty(nbytes + align, np.uint8)
    start = -raw.ctypes.data % align
    return raw[start : start + nbytes].reshape(shape)


def _refcounts(arrays: list) -> list[tuple[int, int]]:
    """Python references to each array and to the memory's owner (its ``base``: a view of
    the array, e.g. ``a[:2]``, refers to the owner, not to ``a``)."""
    return [(sys.getrefcount(a), sys.getrefcount(a.base)) for a in arrays]


_FREE_REFS = _refcounts([aligned_empty((1,))])[0]  # held by the list only, seen from here


class BatchBuffers:
    """Output arrays for a streaming reader (a ``tf.numpy_function`` per batch), reused.

    Measured (bench/README.md, "Pipeline and decode"): TensorFlow copies the array a
    ``numpy_function`` returns into a tensor unless its data is 64-byte aligned (then it wraps
    it, holding a reference until the tensor is freed); and a fresh multi-megabyte array per
    batch costs its page faults again (224 px: 25.6 against 14 µs per image read).
    So :meth:`get` returns an aligned array, reusing one that nothing references any more
    (Python reference counts of it and of its memory: no tensor, view or caller holds
    either; counted before the loop below took its own references); at most ``max_bytes``
    of arrays are kept for reuse, the rest are made and dropped as before.
    """

    def __init__(self, image_shape, max_bytes: int = BUFFERS_MAX_BYTES):
        self.image_shape = tuple(int(d) for d in image_shape)
        self.max_bytes = max_bytes
        self._kept: list[np.ndarray] = []
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, n: int) -> np.ndarray:
        """An aligned uint8 array of ``(n, *image_shape)``, contents undefined."""
        with self._lock:
            for a, refs in zip(self._kept, _refcounts(self._kept)):
                if len(a) == n and refs[0] <= _FREE_REFS[0] and refs[1] <= _FREE_REFS[1]:
                    return a
            a = aligned_empty((n, *self.image_shape))
            if self._bytes + a.nbytes <= self.max_bytes:
                self._kept.append(a)
                self._bytes += a.nbytes
            return a


_SHARED: dict[tuple[int, ...], BatchBuffers] = {}
_SHARED_LOCK = threading.Lock()


def batch_buffers(image_shape) -> BatchBuffers:
    """This process's :class:`BatchBuffers` for images of ``image_shape``, shared by every
    pipeline: TensorFlow keeps a traced ``numpy_function``'s closure alive after its dataset
    is gone, so a pool per dataset would stay in memory for every dataset ever made (+30 MB
    each, measured at 224 px); one per shape bounds them all to ``max_bytes`` a shape."""
    key = tuple(int(d) for d in image_shape)
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = BatchBuffers(key)
        return _SHARED[key]


def as_view(x) -> ImageView:
    """``x`` (an :class:`ImageView` or an NHWC array) as a view."""
    if isinstance(x, ImageView):
        return x
    return ImageView(ArrayImages(np.asarray(x)))


def concat(a: ImageView, b: ImageView) -> ImageView:
    """Views ``a`` then ``b`` of one source, as one view (an index concatenation)."""
    a, b = as_view(a), as_view(b)
    if a.source is b.source:
        return ImageView(a.source, np.concatenate([a.index, b.index]))
    return as_view(np.concatenate([a[:], b[:]]))  # different sources (small arrays)


def predict_images(model, x, batch_size: int = 64) -> np.ndarray:
    """``model.predict`` over ``x`` (a view or an array), a batch read at a time.

    A view is streamed (tf.data: batch of indices -> read -> predict), so only a few batches
    of images are in memory; Keras would turn a whole array into one float32 tensor.
    """
    if not isinstance(x, ImageView):
        return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    if len(x) <= batch_size:
        return np.asarray(model.predict(x[:], batch_size=batch_size, verbose=0))
    try:
        import tensorflow as tf
    except ImportError:
        return np.concatenate(
            [np.asarray(model.predict(b, verbose=0)) for b in x.batches(batch_size)]
        )
    shape = x.shape[1:]
    buffers = batch_buffers(shape)

    def read(pos):
        return x.read(pos, out=buffers.get(len(pos)))

    def load(pos):
        img = tf.numpy_function(read, [pos], tf.uint8, stateful=False)
        img.set_shape((None, *shape))
        return img

    ds = (
        tf.data.Dataset.from_tensor_slices(np.arange(len(x), dtype=np.int64))
        .batch(batch_size)
        .map(load, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(2)
    )
    return np.asarray(model.predict(ds, verbose=0))
