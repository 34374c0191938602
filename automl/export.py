"""Load the best model of a search and export it.

A ``.keras`` export carries the class names inside the archive (``automl.json``), so a
user needs nothing else to go from an image to a label; it loads with plain
``keras.models.load_model`` in safe mode (only built-in layers are used).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from automl.errors import ExportError, SearchError
from automl.tracking import Tracker

FORMATS = ("keras",)
META_NAME = "automl.json"


def load_best_model(tracker: Tracker, parent_id: str):
    """The best trial's model of search ``parent_id`` at its best epoch."""
    import keras

    from automl.search import best_trial

    best = best_trial(tracker, parent_id)
    run = tracker.client.get_run(best["run_id"])
    ckpt = run.data.tags.get("automl.checkpoint")
    if ckpt and Path(ckpt).exists():
        return keras.models.load_model(ckpt, safe_mode=True, compile=False)
    path = tracker.download(parent_id, "best_model/model.keras")
    return keras.models.load_model(path, safe_mode=True, compile=False)


def load_run_model(tracker: Tracker, run_id: str):
    """The model of a run: a search (its best model) or a trial (its checkpoint, if kept)."""
    import keras

    try:
        run = tracker.client.get_run(run_id)
    except Exception:
        raise ExportError(
            f"run id {run_id!r} is not in {tracker.uri}; copy a run id from `automl leaderboard`"
        ) from None
    if run.data.tags.get("automl.kind") == "search":
        return load_best_model(tracker, run_id)
    ckpt = run.data.tags.get("automl.checkpoint")
    if run.info.status != "FINISHED":
        raise ExportError(
            f"trial run {run_id} is {run.info.status}, not FINISHED; export a finished trial"
        )
    if not ckpt or not Path(ckpt).exists():
        raise ExportError(
            f"trial run {run_id} kept no model file (only the best --keep-top-k trials keep one); "
            "export the search's best model or retrain that trial"
        )
    return keras.models.load_model(ckpt, safe_mode=True, compile=False)


def class_names_of(tracker: Tracker, run_id: str) -> list[str]:
    run = tracker.client.get_run(run_id)
    parent = run.data.tags.get("mlflow.parentRunId") or run_id
    try:
        return json.loads(tracker.download(parent, "class_names.json").read_text())["class_names"]
    except Exception:
        return []


def read_metadata(path: str | Path) -> dict:
    """The automl metadata (class names, ...) stored inside a ``.keras`` export, or {}."""
    try:
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read(META_NAME)) if META_NAME in z.namelist() else {}
    except (zipfile.BadZipFile, KeyError, OSError):
        return {}


def export_model(
    model,
    path: str | Path,
    *,
    format: str = "keras",
    class_names: list[str] | None = None,
    force: bool = False,
) -> Path:
    """Write ``model`` to ``path`` in ``format``; refuses to overwrite unless ``force``."""
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose one of: {', '.join(FORMATS)}")
    path = Path(path)
    if path.exists() and not force:
        raise ExportError(
            f"output {str(path)!r} already exists; pass --force to overwrite it or choose another path"
        )
    if format == "keras":
        if path.suffix != ".keras":
            raise ExportError(f"output {str(path)!r} must end in .keras for --format keras")
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(path)
        with zipfile.ZipFile(path, "a") as z:
            z.writestr(
                META_NAME,
                json.dumps(
                    {
                        "class_names": list(class_names or []),
                        "input": "RGB uint8/float 0-255, any size",
                    }
                ),
            )
    return path


def resolve_search(tracker: Tracker, run_id: str | None = None) -> str:
    """The run id to export: ``run_id`` if given, else the latest search of the experiment."""
    if run_id:
        return run_id
    latest = tracker.latest_search()
    if latest is None:
        raise SearchError(
            f"experiment {tracker.experiment!r} has no search in {tracker.uri}; run `automl search` first"
        )
    return latest.info.run_id
