"""A :class:`automl.data.DataBundle` saved to a folder and opened again, in another process.

The search saves its data once for its trial workers (:mod:`automl.executors.process`):
its fitted task (``task.to_config()``), each split's indices and encoded targets, and each
image source by reference (an image store by its path, read-only) or, for a small
in-memory array, as one ``.npy`` file the workers memory-map.
Nothing is pickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

_ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")  # the old format
_SPLITS = ("train", "val", "test")


def save_bundle(data, folder: Path) -> Path:
    """Write what a worker needs to open a :class:`DataBundle`: ``meta.json`` (names, digest,
    and each split's image source: a store's path, or a small in-memory array saved once as
    ``.npy``) plus each split's indices and labels. The images of a store are not copied."""
    from automl.data.images import ArrayImages

    folder.mkdir(parents=True, exist_ok=True)
    for old in _ARRAYS:  # a worker_data folder of an earlier automl: whole arrays, not needed
        (folder / f"{old}.npy").unlink(missing_ok=True)
    sources: list[dict[str, Any]] = []
    seen: dict[int, int] = {}
    splits = {}
    for split in _SPLITS:
        view, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        src = view.source
        if id(src) not in seen:
            seen[id(src)] = len(sources)
            if isinstance(src, ArrayImages):
                name = f"images_{len(sources)}.npy"
                np.save(folder / name, np.ascontiguousarray(src.array), allow_pickle=False)
                sources.append({"array": name, "key": src.key})
            else:
                sources.append({"store": str(Path(src.path).resolve())})
        np.save(folder / f"{split}_index.npy", view.index, allow_pickle=False)
        y = np.asarray(y, np.int64) if data.is_classification else np.asarray(y, np.float32)
        np.save(folder / f"{split}_labels.npy", y, allow_pickle=False)
        splits[split] = seen[id(src)]
    meta = {
        "name": data.name,
        "source": data.source,
        "class_names": list(data.class_names),
        "digest": data.digest(),
        "sources": sources,
        "splits": splits,
        "task": data.task.to_config(),  # the fitted task (classes, labels, mean and std)
    }
    tmp = folder / "meta.json.tmp"
    tmp.write_text(json.dumps(meta))
    tmp.replace(folder / "meta.json")  # written last: its presence means the folder is complete
    return folder


def load_bundle(folder: Path):
    """The :class:`DataBundle` saved by :func:`save_bundle`: its store opened by path
    (read-only), small arrays memory-mapped."""
    from automl.data import DataBundle
    from automl.data.images import ArrayImages, ImageView
    from automl.data.store import ImageStore
    from automl.tasks import task_from_config

    meta = json.loads((folder / "meta.json").read_text())
    sources = [
        ImageStore(s["store"])
        if "store" in s
        else ArrayImages(
            np.load(folder / s["array"], mmap_mode="r", allow_pickle=False), key=s["key"]
        )
        for s in meta["sources"]
    ]
    parts = {}
    for split in _SPLITS:
        index = np.load(folder / f"{split}_index.npy", allow_pickle=False)
        parts[f"x_{split}"] = ImageView(sources[meta["splits"][split]], index)
        parts[f"y_{split}"] = np.load(folder / f"{split}_labels.npy", allow_pickle=False)
    return DataBundle(
        name=meta["name"],
        source=meta["source"],
        class_names=meta["class_names"],
        _digest=meta["digest"],
        task=task_from_config(meta["task"]) if "task" in meta else None,
        **parts,
    )
