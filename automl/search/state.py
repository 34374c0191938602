"""What a resumed search reads from disk: its folder, its identity, its MLflow parent run."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from automl.errors import SearchError
from automl.paths import check_experiment_name, inside, remove_owned
from automl.search.settings import SearchSettings
from automl.tracking import sqlite_path

log = logging.getLogger("automl")

STATE_FILE = "automl_search.json"
MARKER = ".automl-search"  # marks a folder a search made; --overwrite clears only such folders
# What a search writes in its folder: all that --overwrite removes (nothing else is touched).
OWNED = (
    STATE_FILE,
    "automl_search.tmp",
    "tuner",
    "checkpoints",
    "worker_data",
    "embeddings",
    "ray_local.json",
)


def project_dir(settings: SearchSettings, uri: str) -> Path:
    """The search's folder: ``--workdir``/EXPERIMENT, or next to a SQLite store."""
    if settings.workdir:
        base = Path(settings.workdir)
    else:
        db = sqlite_path(uri)
        base = (db.parent if db is not None else Path("mlruns")) / "automl"
    name = check_experiment_name(settings.experiment, SearchError)
    return inside(base, base / name, SearchError)


def identity(
    space_digest: str, data_digest: str, settings: SearchSettings, task: Any = None
) -> dict[str, Any]:
    """What must not change between a search and its resume; ``task`` (the data's
    :class:`automl.tasks.Task`) counts when it is not classification (a classification
    search's identity, and so its resume, is what it always was)."""
    out = {
        "space_digest": space_digest,
        "data_digest": data_digest,
        "tuner": settings.tuner,
        "seed": settings.seed,
    }
    if task is not None and task.name != "classification":
        out["task"] = task.name
    return out


def open_project(project: Path, ident: dict[str, Any], settings: SearchSettings) -> dict | None:
    """The saved state of the search in ``project`` (None: a new search), checked against
    ``ident``; with ``overwrite`` the folder is emptied of what a search wrote."""
    state_file = project / STATE_FILE
    state = None
    if state_file.exists() and not settings.overwrite:
        try:
            state = json.loads(state_file.read_text())
        except ValueError:
            raise SearchError(
                f"search state {str(state_file)!r} is damaged; pass --overwrite to start "
                f"experiment {settings.experiment!r} over, or use a new --experiment name"
            ) from None
    if state is not None:
        names = {"space_digest": "search space", "data_digest": "data"}
        keys = set(ident) | ({"task"} & set(state))  # a task gone is a change too
        changed = [names.get(k, k) for k in ident if state.get(k) != ident[k]]
        changed += ["task"] if "task" in keys - set(ident) else []
        if changed:
            raise SearchError(
                f"experiment {settings.experiment!r} already holds a search with a different "
                f"{' and '.join(changed)}; use a new --experiment name or --overwrite"
            )
    if settings.overwrite and project.exists():
        removed = remove_owned(project, (MARKER, STATE_FILE), OWNED)
        log.info("--overwrite: removed %s from %s", ", ".join(removed) or "nothing", project)
    project.mkdir(parents=True, exist_ok=True)
    if not (project / MARKER).exists():
        (project / MARKER).write_text(json.dumps({"made_by": "automl search"}))
    return state


def save_state(project: Path, state: dict[str, Any]) -> None:
    """Write the state file atomically: a kill never leaves half a state file."""
    state_file = project / STATE_FILE
    tmp = state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(state_file)
