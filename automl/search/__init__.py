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

import logging
from pathlib import Path
from typing import Any

from automl.data import load_data
from automl.search.result import SearchResult
from automl.search.session import run_search
from automl.search.settings import (
    DEFAULT_ENSEMBLE,
    DEFAULT_EXPERIMENT,
    DEFAULT_MAX_TRIALS,
    DEFAULT_TIME_BUDGET,
    TUNERS,
    SearchSettings,
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
    max_trials: int | None = None,
    tuner: str = "bayesian",
    experiment: str | None = None,
    tracking_uri: str | None = None,
    seed: int = 0,
    time_budget: float | None = None,
    validation_data: Any = None,
    embedding_cache: bool = True,
    keep_top_k: int = 3,
    overwrite: bool = False,
    strict_images: bool = False,
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
) -> SearchResult:
    """Run (or resume) a search and return its result.

    Args:
        data: ``"demo"``, a folder of class sub-folders, ``"tfds:NAME"`` (its own
            train/validation/test splits where it has them), ``(x, y)`` NumPy arrays, a
            ``tf.data.Dataset`` of ``(image, label)``, or a pandas DataFrame with an image-path
            column and a label column (see :func:`automl.data.load_data`).
        space: a YAML file, a built-in space name ("default", "gpu"), a dict, or a SearchSpace;
            None (the default) chooses one from the data (see :mod:`automl.autospace`).
        max_trials: trials to run in all (a resumed search counts those already done); None:
            100 with the data-aware space (the time budget ends the search), 6 with ``space``.
        tuner: ``"random"``, ``"bayesian"`` or ``"hyperband"`` (KerasTuner oracles).
        experiment: MLflow experiment name; the same name resumes the search.
        tracking_uri: MLflow store; default ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlruns/mlflow.db``.
            Several workers on several machines need a tracking server (``http://HOST:5000``).
        seed: seeds the split, the oracle and every trial.
        time_budget: minutes; no new trial starts after it, a running one stops at its epoch end.
            None: 3 with the data-aware space (the ``automl search`` default), none with ``space``.
        validation_data: your own validation split, any source ``data`` accepts; ``data`` is
            then split into train and test only.
        embedding_cache: train phase 1 on cached backbone features.
        keep_top_k: model files kept for the best k trials only.
        overwrite: start over even if the experiment holds a search with another space or data.
        strict_images: refuse unreadable files in an image folder instead of skipping them.
        cache_dir: where image stores are kept (a folder or DataFrame of files is decoded
            once into a store there and reused while its files are unchanged); default
            ``stores/`` beside the tracking folder (``mlruns/stores``).
        workers: up to this many trials at once, on Ray (needs ``pip install -e
            ".[distributed]"``); 1, the default, runs one at a time without Ray.
        ray_address: the Ray cluster to join (``HEAD:6379``, or ``$RAY_ADDRESS``); without it
            a search with ``workers > 1`` starts a local Ray runtime and stops it at the end.
        cpus_per_trial: CPUs each trial asks Ray for.
        gpus_per_trial: GPUs each trial asks Ray for (fractions allowed, e.g. 0.25).
        trials_per_worker: trials run in a worker process that is replaced after this many
            (or once its memory grew 10 %), so memory stays bounded; 0 runs them in this
            process (a one-trial search always does).
        max_retries: times a crashed trial runs again (diverged and out-of-memory: never).
        max_consecutive_failures: stop the search after this many failed trials in a row.
        register: register the best model in the MLflow Model Registry under this name; a
            failure raises :class:`automl.errors.RegistrationError` (its ``result`` is kept).
        mixed_precision: float16 compute on a GPU (ignored on a CPU).
        xla: XLA compilation on a GPU (ignored on a CPU).
        workdir: where the search keeps its resume state and model files (default: next to
            the MLflow store, ``mlruns/automl/EXPERIMENT``).
        verbose: 1 shows progress on stderr (bars in a terminal, lines otherwise); 0 nothing.
        ensemble: after the search, a greedy ensemble of up to this many kept trials (their
            best epochs), kept only if it beats the best trial on validation; 0 = off. None: 3
            with the data-aware space, 0 with ``space`` (the CLI's ``--ensemble``: 3).
        deterministic: TensorFlow's deterministic ops, so a seeded search reproduces its
            trials (slower).
        refit: once the search has chosen, train the winning trial again on train +
            validation for its epochs up to its best one (see :mod:`automl.refit`; not when
            the ensemble wins). None: on with the data-aware space, off with ``space``.
    """
    auto = space is None  # the data-aware default search: the same defaults as the CLI's
    settings = SearchSettings(
        experiment=DEFAULT_EXPERIMENT if experiment is None else experiment,
        tracking_uri=tracking_uri,
        tuner=tuner,
        max_trials=max_trials if max_trials is not None else DEFAULT_MAX_TRIALS if auto else 6,
        seed=seed,
        time_budget=time_budget if time_budget is not None or not auto else DEFAULT_TIME_BUDGET,
        embedding_cache=embedding_cache,
        keep_top_k=keep_top_k,
        overwrite=overwrite,
        workers=workers,
        ray_address=ray_address,
        cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial,
        trials_per_worker=trials_per_worker,
        max_retries=max_retries,
        max_consecutive_failures=max_consecutive_failures,
        register=register,
        mixed_precision=mixed_precision,
        xla=xla,
        workdir=workdir,
        verbose=verbose,
        ensemble=ensemble if ensemble is not None else DEFAULT_ENSEMBLE if auto else 0,
        deterministic=deterministic,
        refit=refit if refit is not None else auto,
    )
    settings.validate()
    uri = resolve_tracking_uri(settings.tracking_uri)
    check_tracking_uri(uri)
    from automl.data.store import MAX_STORE_SIZE, default_cache_dir
    from automl.progress import Progress, import_tensorflow_quietly

    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir(uri)
    loading = Progress(verbose)  # the image store's decoding, when it is built
    if space is None:  # a data-aware default space, chosen once the data is loaded
        from automl.autospace import default_space, has_gpu, probe_native_size, store_size_for

        native = probe_native_size(data)
        import_tensorflow_quietly()  # default_space asks TensorFlow for a GPU
        bundle = load_data(
            data,
            seed=seed,
            # Stored at the largest size the default space asks for: on a GPU, 224 px.
            store_size=store_size_for(native, gpu=has_gpu()),
            strict_images=strict_images,
            validation_data=validation_data,
            cache_dir=cache_dir,
            progress=loading,
        )
        sp = default_space(bundle, native, budget_minutes=settings.time_budget)
    else:
        sp = load_space(space)
        check_weights_files(sp)
        bundle = load_data(
            data,
            seed=seed,
            store_size=min(int(sp.upper("image_size")), MAX_STORE_SIZE),
            strict_images=strict_images,
            validation_data=validation_data,
            cache_dir=cache_dir,
            progress=loading,
        )
    loading.close()

    import_tensorflow_quietly()  # no C++ start-up chatter (warnings are kept)
    return run_search(sp, bundle, settings)
