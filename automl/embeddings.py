"""Embedding cache for phase 1: a frozen backbone's pooled features, computed once.

While the backbone is frozen its output for a given (backbone, weights, image size,
data split) does not change, so phase 1 trains the head on cached features. Trials
sharing a backbone and image size share the entry. The cache is LRU-bounded, and an
entry larger than ``disk_threshold_mb`` is kept memory-mapped on disk instead of in RAM.
With a ``directory``, every entry is written there and memory-mapped, so the trial workers
of one search (each a new process) share what an earlier one computed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

from automl.data.images import predict_images

log = logging.getLogger("automl")


class EmbeddingCache:
    """LRU cache of (train, val) pooled features keyed by backbone, weights, size, pooling, data."""

    def __init__(
        self,
        max_entries: int = 2,
        disk_threshold_mb: float = 512.0,
        batch_size: int = 64,
        directory: str | Path | None = None,
    ):
        self.max_entries = max_entries
        self.directory = Path(directory) if directory is not None else None
        self.disk_threshold_mb = disk_threshold_mb
        self.batch_size = batch_size
        self._store: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._disk_dir: Path | None = None
        self.hits = 0
        self.misses = 0
        self.seconds_computing = 0.0

    @staticmethod
    def key(cfg, data, seed: int = 0) -> tuple:
        # A random-init backbone differs per seed, so its features do too.
        weights_key = (
            (cfg.weights, seed) if cfg.weights in (None, "random", "none") else cfg.weights
        )
        pooling = getattr(cfg, "pooling", "avg")
        return (cfg.backbone, weights_key, int(cfg.image_size), pooling, data.digest())

    def get(self, features_model, cfg, data, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Cached features of ``data``'s train and val splits; computed on a miss."""
        k = self.key(cfg, data, seed)
        if k in self._store:
            self.hits += 1
            self._store.move_to_end(k)
            return self._store[k]
        entry = self._from_disk(k)
        if entry is not None:
            self.hits += 1
            self._remember(k, entry)
            return entry
        self.misses += 1
        t0 = time.perf_counter()
        if self.directory is not None:
            entry = tuple(
                self._write(k, i, predict_images(features_model, x, self.batch_size))
                for i, x in enumerate((data.x_train, data.x_val))
            )
            self.seconds_computing += time.perf_counter() - t0
            self._remember(k, entry)
            return entry
        entry = tuple(
            self._keep(
                predict_images(features_model, x, self.batch_size),
                f"{len(self._store)}_{i}",
            )
            for i, x in enumerate((data.x_train, data.x_val))
        )
        self.seconds_computing += time.perf_counter() - t0
        self._remember(k, entry)
        log.debug("embedding cache miss %s (%.1fs)", k[:3], time.perf_counter() - t0)
        return entry

    def _remember(self, k: tuple, entry) -> None:
        self._store[k] = entry
        while len(self._store) > self.max_entries:
            self._store.popitem(last=False)

    def _file(self, k: tuple, i: int) -> Path:
        name = hashlib.sha256(repr(k).encode()).hexdigest()[:24]
        return self.directory / f"{name}_{('train', 'val')[i]}.npy"

    def _from_disk(self, k: tuple):
        if self.directory is None:
            return None
        files = [self._file(k, i) for i in (0, 1)]
        if not all(f.exists() for f in files):
            return None
        try:
            return tuple(np.load(f, mmap_mode="r", allow_pickle=False) for f in files)
        except (OSError, ValueError):  # a damaged file: compute the entry again
            return None

    def _write(self, k: tuple, i: int, feats) -> np.ndarray:
        path = self._file(k, i)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:  # atomic: a killed worker never leaves half a file
            np.save(f, np.asarray(feats, dtype=np.float32), allow_pickle=False)
        tmp.replace(path)
        return np.load(path, mmap_mode="r", allow_pickle=False)

    def _keep(self, feats: np.ndarray, tag: str) -> np.ndarray:
        feats = np.asarray(feats, dtype=np.float32)
        if feats.nbytes / 2**20 <= self.disk_threshold_mb:
            return feats
        if self._disk_dir is None:
            self._disk_dir = Path(tempfile.mkdtemp(prefix="automl-emb-"))
        path = self._disk_dir / f"{tag}_{time.time_ns()}.npy"
        np.save(path, feats)
        return np.load(path, mmap_mode="r", allow_pickle=False)

    def clear(self) -> None:
        """Drop every entry (and the temporary on-disk files; a ``directory`` is kept)."""
        self._store.clear()
        if self._disk_dir is not None:
            shutil.rmtree(self._disk_dir, ignore_errors=True)
            self._disk_dir = None

    def __len__(self) -> int:
        return len(self._store)
