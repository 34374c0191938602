"""A search: an oracle proposes, an executor trains, MLflow records; killed, it resumes.

The oracle (random, Bayesian or Hyperband) and its state on disk come from KerasTuner, so
a search killed at any moment continues when the same command runs again: finished trials
are kept, the interrupted ones run again. Hyperband's resource is the total number of epochs
of a trial across both phases (see :meth:`automl.trial.TrialConfig.schedule`).

- :mod:`.settings`: what defines a search; :mod:`.state`: what a resume reads from disk;
- :mod:`.oracle`: the KerasTuner controller; :mod:`.loop`: oracle <-> executor <-> tracker;
- :mod:`.result`: the result and the steps that close a search; :mod:`.weights`: weights-file
  checks; :mod:`.session`: one search from its lock to its closed run (:func:`run_search`);
  :mod:`.deadline`: the time budget, made once.

Trials run through :mod:`automl.executors` (in this process, in a recycled worker process,
or up to ``workers`` at once on Ray).
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from automl.data import load_data
from automl.executors import Executor
from automl.search.result import SearchResult
from automl.search.session import run_search
from automl.search.settings import (
    DEFAULT_EXPERIMENT,
    TUNERS,
    SearchSettings,
    options_doc,
)
from automl.search.state import STATE_FILE, project_dir
from automl.search.weights import check_weights_files
from automl.space import SearchSpace, load_space
from automl.tracking import best_trial, check_tracking_uri, resolve_tracking_uri

log = logging.getLogger("automl")

__all__ = [
    "DEFAULT_EXPERIMENT",
    "STATE_FILE",
    "TUNERS",
    "SearchResult",
    "SearchSettings",
    "best_trial",
    "check_weights_files",
    "project_dir",
    "run_search",
    "search",
]


def search(
    data: Any = "demo",
    space: str | Path | dict | SearchSpace | None = None,
    *,
    validation_data: Any = None,
    max_trials: int | None = None,
    tuner: str = "bayesian",
    experiment: str | None = None,
    tracking_uri: str | None = None,
    seed: int = 0,
    time_budget: float | None = None,
    embedding_cache: bool = True,
    keep_top_k: int = 3,
    overwrite: bool = False,
    strict_images: bool = False,
    executor: str | Executor = "auto",
    workers: int = 1,
    ray_address: str | None = None,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    trials_per_worker: int = 10,
    max_retries: int = 1,
    max_consecutive_failures: int = 3,
    register: str | None = None,
    mixed_precision: bool = True,
    xla: bool = True,
    workdir: str | None = None,
    verbose: int = 1,
    ensemble: int | None = None,
    deterministic: bool = False,
    refit: bool | None = None,
    cache_dir: str | Path | None = None,
    task: str | None = None,
    objective: str | None = None,
    label_column: str | list[str] | None = None,
    path_column: str | None = None,
) -> SearchResult:
    """Run (or resume) a search and return its result.

    Every keyword but ``validation_data`` is a field of :class:`SearchSettings`, documented
    there once (listed below); ``None`` means this search's default.

    Args:
        data: ``"demo"``, a folder of class sub-folders, ``"tfds:NAME"`` (its own
            train/validation/test splits where it has them), a CSV of image paths and
            targets (``"labels.csv"``), a pandas DataFrame of the same, ``(x, y)`` NumPy
            arrays (``y`` classes, floats for regression, 0/1 rows or label lists for
            multilabel), or a ``tf.data.Dataset`` of ``(image, label)`` (see
            :func:`automl.data.load_data`). The task is inferred from the targets (or
            ``task=``) and the objective is the task's default (or ``objective=``).
        space: a YAML file, a built-in space name ("default", "gpu"), a dict, or a SearchSpace;
            None (the default) chooses one from the data (see :mod:`automl.autospace`).
        validation_data: your own validation split, any source ``data`` accepts; ``data`` is
            then split into train and test only.
    """
    # First, while locals() holds the keywords only: each is a SearchSettings field.
    options = {k: v for k, v in locals().items() if k not in ("data", "space", "validation_data")}
    settings = SearchSettings.for_search(space is None, **options)
    settings.validate()
    uri = resolve_tracking_uri(settings.tracking_uri)
    created = _missing_store_folders(uri)
    check_tracking_uri(uri)
    from automl.progress import import_tensorflow_quietly

    with _worker_started_early(settings, uri):
        try:
            sp, bundle = _space_and_data(data, space, validation_data, settings, uri)
        except BaseException:
            _remove_empty(created)  # refused data leaves no mlruns/ behind
            raise
        import_tensorflow_quietly()  # no C++ start-up chatter (warnings are kept)
        return run_search(sp, bundle, settings)


if search.__doc__:  # (None under python -OO)
    search.__doc__ = f"{search.__doc__.rstrip()}\n{options_doc()}\n"


@contextlib.contextmanager
def _worker_started_early(settings: SearchSettings, uri: str):
    """When trials run in a worker process, start it now: its imports (TensorFlow, MLflow)
    overlap this process's own (listing the files, the store, the space, MLflow's run), and
    the first trial starts seconds sooner. Stopped at the end if the search did not take it."""
    if settings.executor_name() != "process":
        yield
        return
    from automl.executors import process

    process.prestart(uri)
    try:
        yield
    finally:
        process.discard_spare()


def _space_and_data(data, space, validation_data, settings: SearchSettings, uri: str):
    """Load the data, and the space: ``space``, or one chosen from the data when None."""
    from automl.data.store import MAX_STORE_SIZE, default_cache_dir
    from automl.progress import Progress, import_tensorflow_quietly

    cache_dir = settings.cache_dir
    loading = Progress(settings.verbose)  # the image store's decoding, when it is built
    load = dict(
        seed=settings.seed,
        strict_images=settings.strict_images,
        validation_data=validation_data,
        cache_dir=Path(cache_dir) if cache_dir is not None else default_cache_dir(uri),
        progress=loading,
        task=settings.task,
        label_column=settings.label_column,
        path_column=settings.path_column,
    )
    if space is None:  # a data-aware default space, chosen once the data is loaded
        from automl.autospace import default_space, has_gpu, probe_native_size, store_size_for

        native = probe_native_size(data) or _table_native_size(data, settings)
        import_tensorflow_quietly()  # default_space asks TensorFlow for a GPU
        # Stored at the largest size the default space asks for: on a GPU, 224 px; on a CPU,
        # 224 px for regression, 128 px otherwise (so the task matters only for larger images).
        gpu = has_gpu()
        task = (
            None if gpu or (native is not None and native <= 128) else _early_task(data, settings)
        )
        bundle = _loaded(data, store_size_for(native, gpu=gpu, task=task), load, settings)
        sp = default_space(bundle, native, budget_minutes=settings.time_budget)
    else:
        sp = load_space(space)
        check_weights_files(sp)
        bundle = _loaded(data, min(int(sp.upper("image_size")), MAX_STORE_SIZE), load, settings)
    sp = with_objective(sp, bundle.task, settings.objective)
    loading.close()
    return sp, bundle


def _loaded(data, store_size: int, load: dict[str, Any], settings: SearchSettings):
    """``load_data`` at ``store_size``; says the task, and when the load was slow (a first
    decode into the image store, most likely) that it is not the budget's."""
    started = time.perf_counter()
    bundle = load_data(data, store_size=store_size, **load)
    seconds = time.perf_counter() - started
    progress = load["progress"]
    progress.message(bundle.task.describe())
    if seconds >= 5 and settings.time_budget:
        progress.message(
            f"data ready in {seconds:.0f} s (listing the files, decoding what the image store "
            "does not hold yet: once, a later search reuses it), before the time budget's "
            "clock starts"
        )
    return bundle


def _early_task(data, settings: SearchSettings) -> str | None:
    """The task's name before any image is decoded: ``--task``, else inferred from a table's
    or an arrays pair's targets; None when it cannot be told here (``load_data`` then says
    what is wrong, or the source is a folder or a dataset: classification)."""
    from automl.errors import DataError
    from automl.tasks import get_task, infer_task

    if settings.task is not None:
        try:
            return get_task(settings.task).name
        except DataError:
            return None
    try:
        if _is_table(data):
            from automl.data.table import table_task

            return table_task(
                data, path_column=settings.path_column, label_column=settings.label_column
            )
        if isinstance(data, (tuple, list)) and len(data) == 2:
            return infer_task(data[1])
    except DataError:
        return None
    return None


def _is_table(data) -> bool:
    from automl.data.table import is_table_path

    return is_table_path(data) or (hasattr(data, "columns") and hasattr(data, "iloc"))


def _table_native_size(data, settings: SearchSettings) -> int | None:
    """The images' native size (shorter side, median of up to 64) of a CSV or DataFrame of
    paths; None for other sources or a table that cannot be read (load_data says why)."""
    import numpy as np
    from PIL import Image

    from automl.data.table import sample_paths
    from automl.errors import DataError

    if not _is_table(data):
        return None
    try:
        paths = sample_paths(data, path_column=settings.path_column)
    except DataError:
        return None
    sizes = []
    for p in paths:
        try:
            with Image.open(p) as im:
                sizes.append(min(im.size))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            continue
    return int(np.median(sizes)) if sizes else None


def with_objective(sp: SearchSpace, task, objective: str | None) -> SearchSpace:
    """``sp`` with the objective the search ranks by: ``objective`` (checked against the
    task), else the space's own when the task has it, else the task's default."""
    import dataclasses

    if objective is not None:
        chosen = task.check_objective(objective)
    elif sp.objective in task.objectives:
        chosen = sp.objective
    else:
        chosen = task.default_objective
    return sp if chosen == sp.objective else dataclasses.replace(sp, objective=chosen)


def _missing_store_folders(uri: str) -> list[Path]:
    """The folders of a SQLite store that do not exist yet, deepest first."""
    from automl.tracking import sqlite_path

    db = sqlite_path(uri)
    out: list[Path] = []
    p = db.parent.absolute() if db is not None else None
    while p is not None and not p.exists() and p != p.parent:
        out.append(p)
        p = p.parent
    return out


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) this search created, if still empty."""
    for d in folders:
        try:
            d.rmdir()
        except OSError:  # not empty (or gone): leave it
            return
