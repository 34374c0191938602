"""Everything MLflow: one parent run per search, one nested run per trial, via ``MlflowClient``.

Library code logs through the client with explicit run ids (never the fluent globals), so
nested runs and concurrent searches cannot cross wires.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from automl.errors import TrackingError
from automl.metrics import rank_key, rank_keys, ranked  # noqa: F401 (the ranking rule, re-exported)

log = logging.getLogger("automl")

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
TAG_SEARCH = "automl.search_id"
TAG_KIND = "automl.kind"  # "search" or "trial"
TAG_TRIAL = "automl.trial_id"
TAG_PARENT = "mlflow.parentRunId"
# MLflow 3's UI opens an experiment in its GenAI view unless this tag says it is for model
# training; automl sets it on every experiment it creates.
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
DEFAULT_UI = "http://127.0.0.1:5000"  # where `automl ui` serves by default

# A trial's scores at its best epoch are logged as best_<name>; the leaderboard shows them as <name>.
SCORES = ("val_accuracy", "val_loss", "accuracy", "loss")
SCORE_COLUMNS = [*SCORES, "best_epoch", "epochs_run"]
# The other tasks' objectives (automl.tasks): a trial logs ``best_<objective>`` for them too,
# and the leaderboard shows a column for each one some trial of the search logged.
TASK_SCORES = (
    "val_balanced_accuracy",
    "val_macro_f1",
    "val_micro_f1",
    "val_auc",
    "val_mae",
    "val_rmse",
    "val_r2",
)


def _score_columns(runs, objective: str) -> list[str]:
    """SCORE_COLUMNS, with the task objectives some run logged (and ``objective``) after
    the scores: for a classification search on val_accuracy/val_loss, SCORE_COLUMNS."""
    logged = {k for r in runs for k in r.data.metrics}
    extra = [k for k in TASK_SCORES if f"best_{k}" in logged or k == objective]
    return [*SCORES, *extra, *SCORE_COLUMNS[len(SCORES) :]]


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else the project's SQLite store under mlruns/."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative paths resolve against the cwd)."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :])


def check_tracking_uri(uri: str) -> None:
    """Fail fast, before any training, when the store cannot be reached."""
    parsed = urlparse(uri)
    db = sqlite_path(uri)
    if db is not None:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrackingError(
                f"tracking URI {uri!r}: cannot create {str(db.parent)!r} ({e.strerror}); pass a writable --tracking-uri"
            ) from None
        if not os.access(db.parent, os.W_OK):
            raise TrackingError(
                f"tracking URI {uri!r}: folder {str(db.parent)!r} is not writable; pass a writable --tracking-uri"
            )
        return
    if parsed.scheme in ("http", "https"):
        import requests

        try:
            r = requests.get(uri.rstrip("/") + "/health", timeout=(3, 5))
        except requests.RequestException:
            raise TrackingError(
                f"tracking URI {uri!r} cannot be reached; start the MLflow server or pass another --tracking-uri"
            ) from None
        if r.status_code == 404 or r.status_code >= 500:  # 401/403: the client may hold credentials
            raise TrackingError(
                f"tracking URI {uri!r} answered HTTP {r.status_code} on /health: it is not a "
                "working MLflow tracking server; check the address or pass another --tracking-uri"
            )
        return
    if parsed.scheme in ("", "file"):
        raise TrackingError(
            f"tracking URI {uri!r} is a file store, which current MLflow refuses; use {DEFAULT_TRACKING_URI!r}"
        )
    if parsed.scheme in ("postgresql", "mysql", "mssql", "databricks") or "+" in parsed.scheme:
        return
    raise TrackingError(
        f"tracking URI {uri!r} has an unknown scheme {parsed.scheme!r}; use sqlite:///PATH or http://HOST:PORT"
    )


def check_store_exists(uri: str) -> None:
    """For commands that only read (leaderboard, export, retrain's source, predict of a
    ``models:/`` URI): a SQLite store must already exist; they never create one."""
    from automl.errors import quoted

    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        raise TrackingError(
            f"no automl search found in {quoted(uri)}: {quoted(str(db))} does not exist; "
            "run `automl search` first, or pass --tracking-uri of the store it used"
        )


@contextlib.contextmanager
def _store_init_lock(uri: str):
    """Serialise the first touch of a SQLite store across processes.

    MLflow creates and migrates a new database's tables without a lock of its own, so two
    searches starting at once on a fresh store race ("table ... already exists"). An
    exclusive ``flock`` on a file next to the database makes the second one wait.
    """
    db = sqlite_path(uri)
    try:
        import fcntl
    except ImportError:  # Windows: no flock; rely on with_retries
        fcntl = None
    if db is None or fcntl is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".init.lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def with_retries(fn, *args, attempts: int = 8, **kwargs):
    """Call ``fn``, retrying while SQLite reports the database is locked (concurrent searches)."""
    for i in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # MlflowException wraps sqlalchemy OperationalError
            if "locked" not in str(e).lower() or i == attempts - 1:
                raise
            time.sleep(0.2 * 2**i)
    return None


class Tracker:
    """An MLflow experiment seen through ``MlflowClient``."""

    def __init__(self, tracking_uri: str | None, experiment: str, *, create: bool = True):
        """``create=False`` (commands that only read): a missing experiment is an error."""
        from mlflow.tracking import MlflowClient

        self.uri = resolve_tracking_uri(tracking_uri)
        self.experiment = experiment
        with _store_init_lock(self.uri):  # the client creates (and migrates) a new store
            try:
                self.client = with_retries(MlflowClient, tracking_uri=self.uri)
                exp = with_retries(self.client.get_experiment_by_name, experiment)
            except Exception as e:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                raise TrackingError(
                    f"tracking URI {self.uri!r} could not be used ({first}); check that it is an "
                    "MLflow store you can write to, or pass another --tracking-uri"
                ) from None
            if exp is None and not create:
                from automl.errors import NoCompletedSearchError, quoted

                raise NoCompletedSearchError(
                    f"experiment {quoted(experiment)} is not in {quoted(self.uri)}; run "
                    "`automl search` first, or pass the --experiment (and --tracking-uri) it used"
                )
            if exp is None:
                self.experiment_id = self._create_experiment(experiment)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                raise TrackingError(
                    f"experiment {experiment!r} is deleted in {self.uri}; restore it or pick another --experiment"
                )
            self.experiment_id = exp.experiment_id

    def _create_experiment(self, name: str) -> str:
        location = None
        db = sqlite_path(self.uri)
        if db is not None:
            location = (db.resolve().parent / "artifacts" / name).as_uri()
        try:
            return with_retries(
                self.client.create_experiment,
                name,
                artifact_location=location,
                tags={TAG_EXPERIMENT_KIND: EXPERIMENT_KIND},
            )
        except Exception:
            exp = self.client.get_experiment_by_name(name)  # created concurrently by another search
            if exp is None:
                raise
            return exp.experiment_id

    # --- runs -------------------------------------------------------------------------
    def start_search(
        self,
        search_id: str,
        params: dict[str, Any],
        tags: dict[str, str],
        run_id: str | None = None,
    ) -> str:
        """Create the parent run, or reopen ``run_id`` when a search is resumed."""
        if run_id:
            with_retries(self.client.update_run, run_id, status="RUNNING")
            return run_id
        run = with_retries(
            self.client.create_run,
            self.experiment_id,
            run_name=tags.get("mlflow.runName"),
            tags={TAG_SEARCH: search_id, TAG_KIND: "search", **tags},
        )
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    def start_trial(
        self,
        parent_id: str,
        search_id: str,
        trial_id: str,
        params: dict[str, Any],
        attempt: int = 1,
        run_name: str | None = None,
    ) -> str:
        """Create a trial's run under ``parent_id``; code finds it by its tags, never by
        ``run_name`` (which says what the trial is, see :func:`automl.search_report.trial_name`)."""
        run = with_retries(
            self.client.create_run,
            self.experiment_id,
            run_name=run_name
            or f"trial-{trial_id}" + (f"-attempt{attempt}" if attempt > 1 else ""),
            tags={
                TAG_PARENT: parent_id,
                TAG_SEARCH: search_id,
                TAG_KIND: "trial",
                TAG_TRIAL: trial_id,
                "automl.attempt": str(attempt),
            },
        )
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items() if v is not None]
        for i in range(0, len(items), 100):
            with_retries(self.client.log_batch, run_id, params=items[i : i + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [
            Metric(k, float(v), ts, step) for k, v in metrics.items() if v is not None and v == v
        ]
        if items:
            with_retries(self.client.log_batch, run_id, metrics=items)

    def log_epoch(self, run_id: str, entry: dict[str, Any]) -> None:
        """One epoch's train/val loss and accuracy, with the epoch as step and its phase."""
        metrics = {
            k: v for k, v in entry.items() if k not in ("step", "phase") and isinstance(v, float)
        }
        # Validation scores first: MLflow's compare view colours its parallel-coordinates
        # plot by the first metric a run logged (training accuracy otherwise).
        metrics = dict(sorted(metrics.items(), key=lambda kv: not kv[0].startswith("val_")))
        metrics["phase"] = 1.0 if entry.get("phase") == "phase1" else 2.0
        self.log_metrics(run_id, metrics, step=int(entry["step"]))

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        for k, v in tags.items():
            with_retries(self.client.set_tag, run_id, k, str(v)[:5000])

    def log_dict(self, run_id: str, obj: Any, artifact_file: str) -> None:
        with_retries(self.client.log_dict, run_id, obj, artifact_file)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        with_retries(self.client.log_text, run_id, text, artifact_file)

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        with_retries(self.client.log_artifact, run_id, str(path), artifact_path)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        with_retries(self.client.set_terminated, run_id, status=status)

    def fail_trial(
        self, run_id: str, reason: str, traceback_text: str | None = None, status: str = "FAILED"
    ) -> None:
        """Mark a trial run FAILED (or KILLED) with its reason, and its traceback as an artifact."""
        self.set_tags(run_id, {"automl.failure_reason": reason[:500]})
        if traceback_text:
            self.log_text(run_id, traceback_text, "error/traceback.txt")
        self.end_run(run_id, status)

    @contextlib.contextmanager
    def closed_on_failure(self, run_id: str):
        """If the block raises, run ``run_id`` ends FAILED with the reason and traceback (KILLED
        on Ctrl-C or SIGTERM), never left RUNNING; the exception goes on."""
        import traceback

        try:
            yield
        except BaseException as e:
            killed = not isinstance(e, Exception)
            status = "KILLED" if killed else "FAILED"
            try:
                self.fail_trial(
                    run_id,
                    "interrupted" if killed else f"{type(e).__name__}: {str(e)[:300]}",
                    None if killed else traceback.format_exc(),
                    status=status,
                )
            except Exception as closing:  # noqa: BLE001 - the first error is the one to see
                log.warning(
                    "run %s not closed as %s: %s: %s",
                    run_id,
                    status,
                    type(closing).__name__,
                    str(closing)[:200],
                )
            raise

    # --- reading and removing runs ------------------------------------------------------
    def get_run(self, run_id: str):
        """Run ``run_id`` as MLflow returns it (``info``; ``data``: params, metrics, tags)."""
        return with_retries(self.client.get_run, run_id)

    def run_params(self, run_id: str) -> dict[str, str]:
        return dict(self.get_run(run_id).data.params)

    def run_tags(self, run_id: str) -> dict[str, str]:
        return dict(self.get_run(run_id).data.tags)

    def delete_run(self, run_id: str) -> None:
        """Move a run to MLflow's trash (``mlflow gc`` removes it for good)."""
        with_retries(self.client.delete_run, run_id)

    def delete_tag(self, run_id: str, key: str) -> None:
        with_retries(self.client.delete_tag, run_id, key)

    def runs_tagged(self, tags: dict[str, str]) -> list:
        """The active runs of this experiment that carry every tag of ``tags`` (first 1000)."""
        where = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        return list(self.client.search_runs([self.experiment_id], where))

    def experiment_name(self, experiment_id: str) -> str:
        return with_retries(self.client.get_experiment, experiment_id).name

    # --- inputs and models --------------------------------------------------------------
    def log_datasets(self, run_id: str, datasets: list[dict[str, Any]]) -> None:
        """Log data splits as the run's inputs: each a dict with ``split`` (the context tag),
        ``name``, ``source`` (what :func:`automl.load_data` loads again), ``digest`` and
        ``profile`` (a JSON-able dict)."""
        from mlflow.entities import DatasetInput, InputTag

        source_cls, dataset_cls = _dataset_classes()
        inputs = [
            DatasetInput(
                dataset_cls(
                    source_cls(d["source"]), d["name"], d["digest"], d["profile"]
                )._to_mlflow_entity(),
                tags=[InputTag("mlflow.data.context", d["split"])],
            )
            for d in datasets
        ]
        with_retries(self.client.log_inputs, run_id, datasets=inputs)

    def log_model(
        self,
        run_id: str,
        save: Any,
        *,
        name: str,
        model_type: str,
        tags: dict[str, str],
        metadata: dict[str, Any],
        register: str | None = None,
    ) -> dict[str, Any]:
        """Log an MLflow model of run ``run_id`` through this tracker's client (what
        ``mlflow.models.Model.log`` does, without MLflow's global tracking URI).

        ``save(path, mlflow_model)`` writes the model folder (e.g. :func:`save_keras_model`).
        Returns ``{"model_id", "model_uri", "registered_version"}``.
        """
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus
        from mlflow.models import Model

        params = {k: v[:500] for k, v in self.run_params(run_id).items()}
        logged = with_retries(
            self.client.create_logged_model,
            self.experiment_id,
            name=name,
            source_run_id=run_id,
            params=params,
            tags=tags,
            model_type=model_type,
        )
        mid = logged.model_id
        try:
            with_retries(self.client.log_outputs, run_id, [LoggedModelOutput(mid, step=0)])
            self._link_step_metrics(run_id, mid, step=0)
            spec = Model(
                artifact_path=logged.artifact_location,
                model_uuid=mid,
                run_id=run_id,
                metadata=metadata,
                model_id=mid,
            )
            with tempfile.TemporaryDirectory() as tmp:
                local = os.path.join(tmp, "model")
                save(local, spec)
                _check_serving_input(spec, local)
                with_retries(self.client.log_model_artifacts, mid, local)
        except Exception:
            self.client.finalize_logged_model(mid, LoggedModelStatus.FAILED)
            raise
        with_retries(self.client.finalize_logged_model, mid, LoggedModelStatus.READY)
        version = self._register(f"models:/{mid}", register).version if register else None
        return {"model_id": mid, "model_uri": f"models:/{mid}", "registered_version": version}

    def _link_step_metrics(self, run_id: str, model_id: str, step: int) -> None:
        """The run's metrics at ``step`` logged again for the model (as ``Model.log`` does)."""
        from mlflow.entities import Metric

        metrics = []
        for key in self.get_run(run_id).data.metrics:
            for m in with_retries(self.client.get_metric_history, run_id, key):
                if m.step == step and m.model_id is None:
                    metrics.append(
                        Metric(
                            key=m.key,
                            value=m.value,
                            timestamp=m.timestamp,
                            step=m.step,
                            dataset_name=m.dataset_name,
                            dataset_digest=m.dataset_digest,
                            run_id=m.run_id,
                            model_id=model_id,
                        )
                    )
        with_retries(self.client.log_batch, run_id=run_id, metrics=metrics)

    def register_model(self, model_uri: str, name: str) -> str:
        """Register a logged model (``models:/<model_id>``) as a new version of ``name``
        (created if new); the version links to the model's run. Returns the version."""
        return str(self._register(model_uri, name).version)

    def _register(self, model_uri: str, name: str):
        """``mlflow.register_model`` into this tracker's store; returns the ModelVersion.

        The one place automl points MLflow's global tracking URI anywhere, for this call only:
        MLflow's SQL registry store looks a ``models:/<model_id>`` source up through the global
        URI (a TODO in ``SqlAlchemyStore.create_model_version``), and a version made from
        another source would not link to its logged model.
        """
        import mlflow

        with _REGISTER_LOCK, _global_tracking_uri(self.uri):
            return mlflow.register_model(model_uri, name)

    # --- queries ----------------------------------------------------------------------
    def trial_runs(self, parent_id: str, trial_id: str | None = None) -> list:
        """Every nested run of a search (all attempts), oldest first; only those of
        ``trial_id`` if given (one query however many trials the search has)."""
        from mlflow.entities import ViewType

        where = f"tags.`{TAG_PARENT}` = '{parent_id}'"
        if trial_id is not None:
            where += f" and tags.`{TAG_TRIAL}` = '{trial_id}'"
        runs, token = [], None
        while True:
            page = with_retries(
                self.client.search_runs,
                [self.experiment_id],
                filter_string=where,
                run_view_type=ViewType.ACTIVE_ONLY,
                max_results=1000,
                page_token=token,
            )
            runs += list(page)
            token = page.token
            if not token:
                break
        return sorted(runs, key=lambda r: r.info.start_time)

    def latest_search(self):
        """The most recent parent run of this experiment, or None."""
        runs = with_retries(
            self.client.search_runs,
            [self.experiment_id],
            filter_string=f"tags.`{TAG_KIND}` = 'search'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0] if runs else None

    def leaderboard(self, parent_id: str, objective: str = "val_accuracy"):
        """One row per trial run of the search, best first (failed and killed runs last)."""
        import pandas as pd

        rows = []
        runs = self.trial_runs(parent_id)
        columns = _score_columns(runs, objective)
        scores = {*SCORES, *TASK_SCORES}
        for r in runs:
            row = {
                "trial": r.data.tags.get(TAG_TRIAL, ""),
                "status": r.info.status,
                **{k: r.data.metrics.get(f"best_{k}" if k in scores else k) for k in columns},
                **{k: _parse(v) for k, v in r.data.params.items()},
                "seconds": (r.info.end_time - r.info.start_time) / 1000
                if r.info.end_time
                else None,
                "reason": r.data.tags.get("automl.failure_reason", ""),
                "run_id": r.info.run_id,
            }
            rows.append(row)
        df = pd.DataFrame(rows)
        if df.empty:
            return df
        # Finished runs with a score first; a refit carries the validation scores of the
        # trial it refits and ranks above it.
        ok = (df["status"].eq("FINISHED") & df[objective].notna()).tolist()
        refit = df["trial"].eq("refit").tolist()
        keys = rank_keys(df, objective)
        order = sorted(range(len(df)), key=lambda i: (ok[i], keys[i], refit[i]), reverse=True)
        return df.iloc[order].reset_index(drop=True)

    def download(self, run_id: str, artifact_path: str) -> Path:
        """A run's artifact as a local path (downloaded to a temp folder where needed)."""
        dst = tempfile.mkdtemp(prefix="automl-dl-")
        try:
            with _no_artifact_progress_bar():
                path = with_retries(self.client.download_artifacts, run_id, artifact_path, dst)
            return Path(path)
        except Exception as e:
            raise TrackingError(
                f"run {run_id} has no artifact {artifact_path!r} ({type(e).__name__})"
            ) from None

    # --- runs by id: retrain and the refit ask the tracker instead of reaching into its client
    @classmethod
    def of_run(cls, tracking_uri: str, run_id: str, experiment: str | None = None) -> Tracker:
        """The tracker of the experiment holding run ``run_id`` (or of ``experiment``)."""
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri)
        try:
            exp_id = client.get_run(run_id).info.experiment_id
        except Exception:
            raise TrackingError(
                f"run id {run_id!r} is not in {tracking_uri}; copy a trial's run id from "
                "`automl leaderboard`"
            ) from None
        return cls(tracking_uri, experiment or client.get_experiment(exp_id).name)

    def create_run(self, run_name: str, tags: dict[str, str]) -> str:
        """A new top-level run of this experiment (not a trial of a search); its id."""
        run = with_retries(self.client.create_run, self.experiment_id, run_name=run_name, tags=tags)
        return run.info.run_id


@contextlib.contextmanager
def _no_artifact_progress_bar():
    """No MLflow "Downloading artifacts" bar on stderr for the files automl reads itself
    (unless ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR`` is set)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    if key in os.environ:
        yield
        return
    os.environ[key] = "false"
    try:
        yield
    finally:
        os.environ.pop(key, None)


_REGISTER_LOCK = threading.Lock()


@contextlib.contextmanager
def _global_tracking_uri(uri: str):
    """Point MLflow's fluent globals at ``uri`` for a moment; restore them and the env var after.

    (``mlflow.tracking._tracking_service.utils._use_tracking_uri`` would unset a user's
    ``MLFLOW_TRACKING_URI`` on exit when no URI had been set programmatically.)
    """
    import mlflow
    from mlflow.tracking._tracking_service import utils

    old_global, old_env = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        utils._tracking_uri = old_global
        if old_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old_env


def _check_serving_input(spec, local: str) -> None:
    """Score the model's input example as a server would (``Model.log``'s check): a failure
    is a warning, the model is logged anyway."""
    serving_input = spec.get_serving_input(local)
    if not serving_input:
        return
    from mlflow.models.utils import _validate_serving_input

    try:
        _validate_serving_input(model_uri=local, serving_input=serving_input)
    except Exception as e:  # noqa: BLE001 - MLflow only warns here too
        log.warning("the model's input example could not be scored: %s: %s", type(e).__name__, e)


def use_task_pyfunc(path: str | Path, task_config: dict) -> None:
    """Point the MLflow model folder ``path``'s pyfunc flavour at :mod:`automl.pyfunc` (a
    DataFrame with the task's named columns out), and declare those columns as the
    signature's outputs."""
    from mlflow.models import Model
    from mlflow.types import ColSpec, Schema

    from automl.tasks import task_from_config

    path = Path(path)
    mlmodel = Model.load(str(path / "MLmodel"))
    mlmodel.flavors["python_function"]["loader_module"] = "automl.pyfunc"  # its _load_pyfunc
    task = task_from_config(task_config)
    columns = [ColSpec("double", n) for n in task.output_names()]
    if task.name in ("multilabel", "classification"):  # the label set / the top class
        columns.insert(0, ColSpec("string", "labels" if task.name == "multilabel" else "label"))
    if mlmodel.signature is not None:
        mlmodel.signature.outputs = Schema(columns)
    mlmodel.save(str(path / "MLmodel"))


def save_keras_model(
    model,
    path: str | Path,
    *,
    input_example,
    signature: tuple[tuple[int, ...], tuple[int, ...]] | None = None,
    outputs=None,
    pip_requirements: list[str],
    metadata: dict[str, Any] | None = None,
    spec=None,
) -> None:
    """Write ``model`` as an MLflow model folder (Keras flavour) at ``path``.

    ``signature``: float32 (input, output) tensor shapes; else it is inferred from
    ``input_example`` and ``outputs`` (the model's outputs on it). ``spec``: the MLflow
    ``Model`` the folder's MLmodel describes (:meth:`Tracker.log_model` passes its own).
    The folder is created first (MLflow 3.17 writes the input example before it does).
    """
    import mlflow.keras
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import Schema, TensorSpec

    if signature is not None:
        f32 = np.dtype(np.float32)
        signature = ModelSignature(
            inputs=Schema([TensorSpec(f32, signature[0])]),
            outputs=Schema([TensorSpec(f32, signature[1])]),
        )
    else:
        signature = infer_signature(input_example, outputs)
    os.makedirs(path, exist_ok=True)
    mlflow.keras.save_model(
        model,
        str(path),
        mlflow_model=spec,
        signature=signature,
        input_example=input_example,
        pip_requirements=pip_requirements,
        metadata=metadata,
    )


def _dataset_classes():
    from mlflow.data.dataset_source import DatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    class AutoMLDataSource(DatasetSource):
        """Where automl loaded the data from: ``demo``, a folder, ``tfds:NAME`` or arrays."""

        def __init__(self, uri: str, loader: str = "automl.load_data"):
            self.uri, self.loader = uri, loader

        @staticmethod
        def _get_source_type() -> str:
            return "automl"

        def load(self, **kwargs):
            import importlib  # the loader is named by its dotted path (tracking imports no data)

            module, _, name = self.loader.rpartition(".")
            return getattr(importlib.import_module(module), name)(self.uri, **kwargs)

        @staticmethod
        def _can_resolve(raw_source: Any) -> bool:
            return False

        @classmethod
        def _resolve(cls, raw_source: Any):
            return cls(str(raw_source))

        def to_dict(self) -> dict[str, Any]:
            return {"uri": self.uri, "loader": self.loader}

        @classmethod
        def from_dict(cls, source_dict: dict[Any, Any]):
            return cls(source_dict.get("uri", ""), source_dict.get("loader", "automl.load_data"))

    class ImageDataset(MetaDataset):
        """Metadata of one split: class counts and image shape as its profile."""

        def __init__(self, source, name, digest, profile):
            self._profile = profile
            super().__init__(source=source, name=name, digest=digest)

        @property
        def profile(self):
            return self._profile

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(self._profile)}

    return AutoMLDataSource, ImageDataset


# --- stores, experiments and model URIs (no Tracker needed) ---------------------------------
def _client(uri: str, registry: bool = False):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri if registry else None)


def experiments(uri: str) -> dict[str, str]:
    """Name -> id of every active experiment of store ``uri``."""
    from mlflow.entities import ViewType

    client = _client(uri)
    found = with_retries(client.search_experiments, view_type=ViewType.ACTIVE_ONLY)
    return {e.name: e.experiment_id for e in found}


def holds_search(uri: str, experiment_id: str) -> bool:
    """Whether experiment ``experiment_id`` of store ``uri`` holds an automl search."""
    return bool(
        with_retries(
            _client(uri).search_runs,
            [experiment_id],
            filter_string=f"tags.`{TAG_KIND}` = 'search'",
            max_results=1,
        )
    )


def experiment_id(uri: str, name: str) -> str | None:
    """The id of experiment ``name`` in store ``uri``, or None (also when unreadable)."""
    try:
        exp = _client(uri).get_experiment_by_name(name)
    except Exception:
        return None
    return exp.experiment_id if exp is not None else None


def experiment_name(uri: str, experiment_id: str) -> str:
    return _client(uri).get_experiment(experiment_id).name


def registry_source(uri: str, tracking_uri: str | None) -> str:
    """Where ``models:/NAME/VERSION`` (or ``/STAGE``, ``@ALIAS``) lives, using the given store."""
    if not uri.startswith("models:/") or tracking_uri is None:
        return uri
    from automl.errors import ExportError

    ref = uri[len("models:/") :].strip("/")
    client = _client(tracking_uri, registry=True)
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return client.get_model_version_download_uri(
            name, client.get_model_version_by_alias(name, alias).version
        )
    name, _, version = ref.rpartition("/")
    if not name:  # models:/<logged model id> (MLflow 3): not in the registry
        return uri
    if not version.isdigit():
        latest = client.get_latest_versions(name, [version])
        if not latest:
            raise ExportError(f"registered model {name!r} has no version in stage {version!r}")
        version = latest[0].version
    return client.get_model_version_download_uri(name, version)


def download_model(uri: str, tracking_uri: str | None) -> Path:
    """The local folder (or file) of model URI ``uri`` (``models:/``, ``runs:/``) of the store
    ``tracking_uri``; MLflow's exceptions pass through."""
    import mlflow.artifacts

    return Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=registry_source(uri, tracking_uri), tracking_uri=tracking_uri
        )
    )


def ui_link(experiment_id: str, base: str = DEFAULT_UI) -> str:
    """The MLflow UI page of an experiment's runs table (the model-training view, not the
    GenAI overview MLflow 3 opens by default)."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def compare_link(run_ids: list[str], experiment_ids: list[str], base: str = DEFAULT_UI) -> str:
    """MLflow's compare view of ``run_ids`` (parallel coordinates, scatter, box and contour
    plots, and a parameter table with "show diff only").

    The view takes no choice of columns in its address (MLflow 3.17's frontend: its
    parallel-coordinates plot starts on the first three differing parameters in alphabetical
    order and the first metric all runs share); the searched hyperparameters are the ones
    that differ between a search's trials.
    """
    from urllib.parse import quote

    runs = quote(json.dumps(list(run_ids), separators=(",", ":")), safe=",")
    exps = quote(json.dumps([str(e) for e in experiment_ids], separators=(",", ":")), safe=",")
    return f"{base.rstrip('/')}/#/compare-runs?runs={runs}&experiments={exps}"


def quiet_store_setup() -> None:
    """No "Creating initial MLflow database tables" / "Updating database tables" INFO lines
    when a store is created or migrated: their logger is set to WARNING, unless its level was
    set already (set it to DEBUG or INFO to see them)."""
    store_log = logging.getLogger("mlflow.store.db.utils")
    if store_log.level == logging.NOTSET:
        store_log.setLevel(logging.WARNING)


quiet_store_setup()  # every process that talks to a store imports this module first


def ui_base(uri: str) -> str:
    """Where the runs of store ``uri`` are seen: the server itself for an http(s) store,
    else `automl ui`'s default address."""
    return uri.rstrip("/") if urlparse(uri).scheme in ("http", "https") else DEFAULT_UI


def latest_search_experiment(uri: str) -> str | None:
    """The id of the experiment holding the store's most recent automl search, or None."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(tracking_uri=uri)
        ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
        if not ids:
            return None
        runs = client.search_runs(
            ids,
            filter_string=f"tags.`{TAG_KIND}` = 'search'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    except Exception:  # no store yet, or not readable: the UI says so itself
        return None
    return runs[0].info.experiment_id if runs else None


def _parse(v: str) -> Any:
    try:
        return json.loads(v)
    except (TypeError, ValueError):
        return v


def best_trial(tracker: Tracker, parent_id: str, objective: str = "val_accuracy") -> dict[str, Any]:
    """The best finished trial of a search: ``trial_id``, ``run_id``, ``hyperparameters``,
    ``metrics``."""
    from automl.errors import SearchError
    from automl.space import HYPERPARAMETERS

    board = tracker.leaderboard(parent_id, objective)
    done = board[board["status"].eq("FINISHED")] if not board.empty else board
    if done.empty:
        raise SearchError(f"search {parent_id} has no completed trial; run `automl search` first")
    row = done.iloc[0]
    return {
        "trial_id": row["trial"],
        "run_id": row["run_id"],
        "hyperparameters": {k: row[k] for k in HYPERPARAMETERS if k in row},
        "metrics": {
            k: row[k]
            for k in ("val_accuracy", "val_loss", "accuracy", "loss", *TASK_SCORES)
            if k in row
        },
    }


def check_search_run(tracker: Tracker, run_id: str) -> None:
    """Refuse a ``--run-id`` that is not a search of ``tracker``'s experiment, in one line
    that says what it is instead (unknown, a trial of search X, or another experiment's)."""
    from automl.errors import quoted

    try:
        run = tracker.client.get_run(run_id)
    except Exception:
        raise TrackingError(
            f"run id {quoted(run_id)} is not in {quoted(tracker.uri)}; copy a search's run id "
            "from the search's output or from `automl ui`"
        ) from None
    kind = run.data.tags.get(TAG_KIND)
    if kind != "search":
        parent = run.data.tags.get(TAG_PARENT)
        hint = f"its search is run {parent}" if parent else "pass a search's run id"
        raise TrackingError(
            f"run {run_id} is {'a ' + kind if kind else 'not an automl'} run, not a search; "
            f"{hint} (automl leaderboard --run-id SEARCH_RUN_ID)"
        )
    if run.info.experiment_id != tracker.experiment_id:
        other = tracker.client.get_experiment(run.info.experiment_id).name
        raise TrackingError(
            f"search run {run_id} belongs to experiment {quoted(other)}, not "
            f"{quoted(tracker.experiment)}; pass --experiment {quoted(other)}"
        )
