"""What a run shows in MLflow besides its numbers: plots, per-class scores, configs, datasets, models.

Trial runs get a learning curve, a confusion matrix and per-class precision/recall/F1 on the
validation split, the model summary, a re-runnable ``config.yaml`` and the data as run inputs.
Search runs get the leaderboard as CSV, a plot of the search, the data splits as run inputs,
and the best model as an MLflow model (Keras flavour, with signature and input example) that
``mlflow.pyfunc.load_model`` can score, optionally registered in the Model Registry.

Everything goes through :class:`automl.tracking.Tracker`'s methods with explicit run ids
(MLflow's global tracking URI is never set); this module imports no MLflow.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("automl")

CONFIG_FILE = "config.yaml"
CONFIG_VERSION = 1
PLOTS = "plots"


# --- figures ----------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _score_metric(history: list[dict[str, Any]]) -> str:
    """``accuracy``, or the first task score the epochs logged (``mae``, ``macro_f1``...)."""
    from automl.tracking import TASK_SCORES

    keys = {k for e in history for k, v in e.items() if v is not None}
    if "accuracy" in keys or "val_accuracy" in keys:
        return "accuracy"
    return next((k[4:] for k in TASK_SCORES if k in keys), "accuracy")


def learning_curve_figure(history: list[dict[str, Any]], title: str = ""):
    """Loss and accuracy per epoch (train and validation) across both phases.

    The epochs of phase 2 are shaded and the phase boundary is a dashed line.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    epochs = [int(e["step"]) + 1 for e in history]
    p2 = [int(e["step"]) + 1 for e in history if e.get("phase") == "phase2"]
    for ax, metric in zip(axes, ("loss", _score_metric(history))):
        for key, style in ((metric, "-o"), (f"val_{metric}", "--s")):
            pts = [(x, e[key]) for x, e in zip(epochs, history) if e.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), style, label=key, markersize=4)
        if p2:
            boundary = min(p2) - 0.5
            ax.axvline(boundary, color="grey", linestyle=":", linewidth=1.5)
            ax.axvspan(boundary, max(p2) + 0.5, color="tab:orange", alpha=0.08)
            ax.text(boundary, 1.01, " phase 2 →", transform=ax.get_xaxis_transform(), fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        if epochs:
            ax.set_xticks(sorted(set(epochs)))
    fig.suptitle(title or "learning curve (phase 1: frozen backbone, phase 2: fine-tuning)")
    fig.tight_layout()
    return fig


def confusion_matrix_figure(y_true, y_pred, class_names: list[str], title: str = ""):
    """Counts per (true, predicted) class, with the numbers written in the cells."""
    from sklearn.metrics import confusion_matrix

    plt = _plt()
    n = len(class_names)
    cm = confusion_matrix(y_true, y_pred, labels=list(range(n)))
    size = min(3 + 0.45 * n, 16)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        hi = cm.max() if cm.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    str(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if cm[i, j] > hi / 2 else "black",
                )
    ax.set_title(title or "confusion matrix")
    fig.tight_layout()
    return fig


def per_class_scores(y_true, y_pred, class_names: list[str]) -> dict[str, Any]:
    """Precision, recall, F1 and support per class, plus accuracy and macro/weighted averages."""
    from sklearn.metrics import classification_report

    return classification_report(
        y_true,
        y_pred,
        labels=list(range(len(class_names))),
        target_names=[str(c) for c in class_names],
        output_dict=True,
        zero_division=0,
    )


def search_figure(board, searched: list[str], objective: str = "val_accuracy"):
    """Best score so far per trial, and the score against each searched hyperparameter."""
    from automl.task_outputs import lower_is_better

    plt = _plt()
    done = board[board["status"].eq("FINISHED") & board[objective].notna()].copy()
    done["_order"] = done["trial"].map(lambda t: int(t) if str(t).isdigit() else 0)
    done = done.sort_values("_order")
    hps = [h for h in searched if h in done.columns]
    n = 1 + len(hps)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    axes = axes.ravel()
    ax = axes[0]
    scores = done[objective].to_numpy(dtype=float)
    x = np.arange(1, len(scores) + 1)
    if len(scores):
        best = (
            np.minimum.accumulate(scores)
            if lower_is_better(objective)
            else np.maximum.accumulate(scores)
        )
        ax.plot(x, scores, "o", alpha=0.5, label="trial")
        ax.step(x, best, where="post", label="best so far")
        ax.set_xticks(x)
    ax.set_xlabel("trial (in order)")
    ax.set_ylabel(objective)
    ax.set_title("best score over trials")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    for ax, hp in zip(axes[1:], hps):
        vals = done[hp]
        numeric = vals.map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)).all()
        if numeric:
            ax.scatter(vals.astype(float), done[objective], alpha=0.8)
            if hp in ("learning_rate",) and (vals.astype(float) > 0).all():
                ax.set_xscale("log")
        else:
            cats = sorted({str(v) for v in vals})
            pos = [cats.index(str(v)) for v in vals]
            ax.scatter(pos, done[objective], alpha=0.8)
            ax.set_xticks(range(len(cats)), cats, rotation=30, ha="right", fontsize=8)
        ax.set_xlabel(hp)
        ax.set_ylabel(objective)
        ax.grid(alpha=0.3)
    for ax in axes[n:]:
        ax.axis("off")
    fig.suptitle(f"search: {len(done)} finished trial(s)")
    fig.tight_layout()
    return fig


def model_summary(model) -> str:
    """``model.summary()`` as plain text."""
    lines: list[str] = []
    model.summary(print_fn=lambda s, *a, **k: lines.append(str(s)), line_length=110)
    return "\n".join(lines) + "\n"


# --- config and datasets ------------------------------------------------------------------------
def data_argument(data) -> str | None:
    """The ``data`` argument of :func:`automl.load_data` that loads ``data`` (a DataBundle) again,
    or None for in-memory arrays (those must be passed again)."""
    src = str(data.source)
    if data.name == "demo" and src.startswith("sklearn."):
        return "demo"
    if src.startswith("tfds:"):
        return src
    if src.startswith("numpy arrays"):
        return None
    return src


def trial_config(
    cfg, data, *, seed: int, split_seed: int, budget: int | None = None, **extra: Any
) -> dict[str, Any]:
    """Everything :func:`automl.retrain.retrain` needs to train a trial again."""
    return {
        "automl_config": CONFIG_VERSION,
        "hyperparameters": cfg.to_dict(),
        "seed": int(seed),
        "epochs_budget": None if budget is None else int(budget),
        "data": {
            "source": data_argument(data),
            "name": data.name,
            "description": str(data.source),
            "digest": data.digest(),
            "split_seed": int(split_seed),
            "store_size": int(data.image_shape[0]),
            "class_names": list(data.class_names),
        },
        **extra,
    }


def _split_digest(x, y) -> str:
    from automl.data.images import as_view

    x = as_view(x)  # the image source's key and the split's indices: no pixel is read
    h = hashlib.sha256(x.source.key.encode())
    h.update(np.ascontiguousarray(x.index).tobytes())
    h.update(np.ascontiguousarray(y).tobytes())
    return h.hexdigest()[:16]


def split_datasets(data, splits: tuple[str, ...] = ("train", "validation")) -> list[dict[str, Any]]:
    """One dataset description per split (split, name, source, digest, class counts), as
    :meth:`automl.tracking.Tracker.log_datasets` logs them."""
    arrays = {
        "train": (data.x_train, data.y_train),
        "validation": (data.x_val, data.y_val),
        "test": (data.x_test, data.y_test),
    }
    source = data_argument(data) or str(data.source)
    out = []
    for split in splits:
        x, y = arrays[split]
        profile = {
            "num_rows": int(len(y)),
            "image_shape": list(map(int, x.shape[1:])),
            **_target_profile(data, y),
        }
        name, digest = f"{data.name}-{split}", _split_digest(x, y)
        out.append(
            {"split": split, "name": name, "source": source, "digest": digest, "profile": profile}
        )
    return out


def _target_profile(data, y) -> dict[str, Any]:
    """Class counts; label counts (multi-label); per-target mean/min/max in the targets'
    units (regression)."""
    task = getattr(data, "task", None)
    if task is None or task.name == "classification":
        counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=data.num_classes)
        return {"class_counts": {str(c): int(n) for c, n in zip(data.class_names, counts)}}
    if task.name == "multilabel":
        counts = np.asarray(y).reshape(len(y), -1).sum(axis=0)
        return {"label_counts": {str(c): int(n) for c, n in zip(task.labels_, counts)}}
    values = np.asarray(task.decode(y), dtype=np.float64).reshape(len(y), -1)
    return {
        "targets": {
            name: {"mean": float(col.mean()), "min": float(col.min()), "max": float(col.max())}
            for name, col in zip(task.output_names(), values.T)
        }
        if len(values)
        else {}
    }


def log_datasets(tracker, run_id: str, data, splits=("train", "validation")) -> None:
    """Log the data splits as the run's inputs (context tag = split name)."""
    tracker.log_datasets(run_id, split_datasets(data, splits))


# --- logging helpers --------------------------------------------------------------------------
def _log_figure(tracker, run_id: str, fig, artifact_file: str) -> None:
    plt = _plt()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            fig.savefig(path, dpi=90)
            parent = str(Path(artifact_file).parent)
            tracker.log_artifact(run_id, path, None if parent == "." else parent)
    finally:
        plt.close(fig)


def _guard(what: str, run_id: str, fn: Callable[[], Any]) -> bool:
    """Run one report step; a failing report is a warning, never a failed trial."""
    t0 = time.perf_counter()
    try:
        fn()
        log.debug("run %s: logged %s in %.1fs", run_id, what, time.perf_counter() - t0)
        return True
    except Exception as e:  # noqa: BLE001 - reports must not fail a search
        log.warning("run %s: could not log %s (%s: %s)", run_id, what, type(e).__name__, e)
        return False


def evaluation_reports(
    tracker,
    run_id: str,
    model,
    x,
    y,
    class_names: list[str],
    split: str = "validation",
    task=None,
    outputs=None,
) -> dict[str, Any]:
    """Confusion matrix plot and per-class precision/recall/F1 JSON of ``model`` on (x, y).

    ``task`` a multi-label or regression task: its reports instead (per-label precision and
    recall; predicted-vs-true and residuals), see :func:`automl.task_reports.task_reports`.
    ``outputs``: the model's outputs on ``x`` when the caller has them (not predicted again).
    """
    from automl.data.images import predict_images
    from automl.tasks import is_classification

    probs = predict_images(model, x) if outputs is None else outputs
    if not is_classification(task):
        from automl.task_reports import task_reports

        figures, tables = task_reports(task, y, probs, split=split)
        for name, fig in figures.items():
            _log_figure(tracker, run_id, fig, name)
        for name, table in tables.items():
            tracker.log_dict(run_id, table, f"{name}.json")
        return tables
    pred = np.argmax(probs, axis=1)
    scores = per_class_scores(y, pred, class_names)
    fig = confusion_matrix_figure(y, pred, class_names, title=f"confusion matrix ({split})")
    _log_figure(tracker, run_id, fig, f"{PLOTS}/confusion_matrix_{split}.png")
    tracker.log_dict(run_id, scores, f"per_class_{split}.json")
    return scores


def log_trial_reports(
    tracker,
    run_id: str,
    outcome,
    data,
    cfg,
    *,
    seed: int,
    split_seed: int,
    budget: int | None = None,
    datasets: bool = True,
    val_outputs=None,
    **config_extra: Any,
) -> None:
    """Everything a finished trial run shows besides its metrics (see the module docstring).

    ``val_outputs``: the model's outputs on ``data.x_val`` when the caller has them."""
    title = f"learning curve ({cfg.backbone}, lr={cfg.learning_rate:.2g})"
    # Not guarded: ``automl retrain`` needs config.yaml, so a run without it must not be
    # FINISHED; the exception fails the trial (the caller retries it like a crash).
    tracker.log_dict(
        run_id,
        trial_config(cfg, data, seed=seed, split_seed=split_seed, budget=budget, **config_extra),
        CONFIG_FILE,
    )
    _guard(
        "learning curve",
        run_id,
        lambda: _log_figure(
            tracker,
            run_id,
            learning_curve_figure(outcome.history, title),
            f"{PLOTS}/learning_curve.png",
        ),
    )
    _guard(
        "validation reports",
        run_id,
        lambda: evaluation_reports(
            tracker,
            run_id,
            outcome.model,
            data.x_val,
            data.y_val,
            data.class_names,
            task=getattr(data, "task", None),
            outputs=val_outputs,
        ),
    )
    _guard(
        "model summary",
        run_id,
        lambda: tracker.log_text(run_id, model_summary(outcome.model), "model_summary.txt"),
    )
    if datasets:
        _guard("datasets", run_id, lambda: log_datasets(tracker, run_id, data))


# --- MLflow models ------------------------------------------------------------------------------
@contextlib.contextmanager
def _no_keras_progress_bar():
    import keras

    was = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()
    try:
        yield
    finally:
        if was:
            keras.config.enable_interactive_logging()


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for pkg in ("mlflow", "keras", "tensorflow", "numpy"):
        try:
            reqs.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            pass
    return reqs


def log_mlflow_model(
    tracker,
    run_id: str,
    model,
    example,
    *,
    name: str = "model",
    class_names: list[str] | None = None,
    register: str | None = None,
    task=None,
) -> dict[str, Any]:
    """Log ``model`` as an MLflow model (Keras flavour) of run ``run_id``, optionally registered.

    The signature and input example come from ``example`` (a few raw images); the pip
    requirements are pinned to what runs now (no slow inference of requirements).
    Returns ``{"model_id", "model_uri", "registered_version"}``. ``task``: a multi-label or
    regression task, saved with the model. Its pyfunc answers a DataFrame with named
    columns (see :mod:`automl.pyfunc`); a classification's does too (``label``, then
    ``prob_<class>`` per class of ``class_names``).
    """
    from automl.task_outputs import task_from_meta, task_meta
    from automl.tracking import save_keras_model

    extra = task_meta(task)
    answers = task_from_meta(extra, list(class_names or []))  # None: no class names either

    example = np.asarray(example)
    probs = np.asarray(model.predict(example, verbose=0), dtype="float32")

    def save(path, spec):
        save_keras_model(
            model,
            path,
            input_example=example,
            outputs=probs,
            pip_requirements=_requirements(),
            spec=spec,
        )
        if answers is not None:
            import json

            from automl.export import META_NAME
            from automl.tracking import use_task_pyfunc

            meta = {"class_names": list(class_names or []), **extra}
            (Path(path) / META_NAME).write_text(json.dumps(meta, indent=2))
            use_task_pyfunc(path, answers.to_config())

    # MLflow checks the input example by predicting with the loaded model, which would draw
    # Keras's "1/1 ━━━━" progress bar on stdout: none while logging.
    with _no_keras_progress_bar():
        return tracker.log_model(
            run_id,
            save,
            name=name,
            model_type="keras-image-classifier",
            tags={"automl.kind": "model"},
            metadata={"class_names": list(class_names or []), **extra},
            register=register,
        )


def register_model(tracker, model_uri: str, name: str) -> str:
    """Register a logged model (``models:/<model_id>``) as a new version of ``name``; the
    version links to its run, as one registered while logging does. Returns the version."""
    return tracker.register_model(model_uri, name)


def error_line(e: BaseException) -> str:
    """``"Type: first line of the message"``, at most 200 characters of it (one-line errors)."""
    first = (str(e).strip().splitlines() or [""])[0][:200]
    return f"{type(e).__name__}{': ' + first if first else ''}"


def log_search_reports(
    tracker,
    parent_id: str,
    *,
    board,
    searched: list[str],
    objective: str,
    model,
    data,
    register: str | None = None,
    task=None,
    test_outputs=None,
) -> dict[str, Any]:
    """Leaderboard CSV, search plot, data inputs, test reports and the best model as MLflow model.

    ``task``: a multi-label or regression task (thresholds tuned): its test reports, and
    saved with the MLflow model. ``test_outputs``: the model's outputs on ``data.x_test``
    (test scoring made them: not predicted a second time)."""

    def leaderboard():
        buf = io.StringIO()
        board.to_csv(buf, index=False)
        tracker.log_text(parent_id, buf.getvalue(), "leaderboard.csv")

    _guard("leaderboard.csv", parent_id, leaderboard)
    _guard(
        "search plot",
        parent_id,
        lambda: _log_figure(
            tracker,
            parent_id,
            search_figure(board, searched, objective),
            f"{PLOTS}/search.png",
        ),
    )
    _guard(
        "datasets",
        parent_id,
        lambda: log_datasets(tracker, parent_id, data, ("train", "validation", "test")),
    )
    _guard(
        "test reports",
        parent_id,
        lambda: evaluation_reports(
            tracker,
            parent_id,
            model,
            data.x_test,
            data.y_test,
            data.class_names,
            split="test",
            task=task,
            outputs=test_outputs,
        ),
    )
    tags = _log_best_model(tracker, parent_id, model, data, register, task)
    if tags:
        tracker.set_tags(parent_id, tags)
    return tags


def _log_best_model(
    tracker, parent_id: str, model, data, register: str | None, task=None
) -> dict[str, Any]:
    """The best model as the search run's MLflow model, registered if asked; returns the
    parent's tags that say so (or why registering failed)."""
    tags: dict[str, Any] = {}

    def mlflow_model():
        out = log_mlflow_model(
            tracker,
            parent_id,
            model,
            data.x_test[:2],
            name="model",  # not "best_model": that run folder holds the plain .keras file
            class_names=data.class_names,
            register=register,
            task=task,
        )
        tags["automl.best_model_uri"] = out["model_uri"]
        if register:
            tags["automl.registered_model"] = f"{register}/{out['registered_version']}"
            log.info(
                "registered the best model as %s version %s", register, out["registered_version"]
            )

    if not register:
        _guard("best model (MLflow model)", parent_id, mlflow_model)
        return tags
    # Registering was asked for: a failure is the caller's to report (it must not pass as
    # a warning), after the search's runs are complete.
    try:
        mlflow_model()
    except Exception as e:  # noqa: BLE001 - recorded, then raised by the caller
        tags["automl.register_error"] = (
            f"could not register the best model as {register!r} ({error_line(e)})"
        )
    return tags
