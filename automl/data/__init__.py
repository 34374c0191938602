"""Data loading: every source becomes one :class:`DataBundle`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from automl.data.bundle import DataBundle, split
from automl.data.sources import load_arrays, load_demo, load_folder, load_tfds

__all__ = ["DataBundle", "load_data", "describe_source"]


def describe_source(data: Any) -> str:
    """A short human-readable name of a data argument."""
    if isinstance(data, (tuple, list)):
        return "arrays"
    return str(data)


def load_data(
    data: Any = "demo",
    *,
    seed: int = 0,
    store_size: int = 128,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    strict_images: bool = False,
) -> DataBundle:
    """Load ``data`` ('demo', a folder path, 'tfds:NAME', or an ``(x, y)`` pair) and split it."""
    if isinstance(data, DataBundle):
        return data
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            from automl.errors import DataError

            raise DataError(f"arrays data must be a pair (x, y), got a sequence of {len(data)}")
        x, y, names, skipped = load_arrays(data[0], data[1], store_size=None)
        name, source = "arrays", f"numpy arrays x{tuple(x.shape)}"
    elif str(data) == "demo":
        x, y, names, skipped = load_demo()
        name, source = "demo", "sklearn.datasets.load_digits"
    elif str(data).startswith("tfds:"):
        tname = str(data)[5:]
        x, y, names, skipped = load_tfds(tname, store_size=store_size)
        name, source = tname, f"tfds:{tname}"
    else:
        x, y, names, skipped = load_folder(data, store_size=store_size, strict=strict_images)
        name, source = Path(data).name or str(data), str(Path(data).resolve())
    return split(
        x,
        y,
        names,
        name=name,
        source=source,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        skipped=skipped,
    )
