"""The task a saved model answers, and what its outputs mean to a user.

A model's raw outputs are probabilities (classification, multi-label) or standardised values
(regression); the fitted :class:`automl.tasks.Task` saved with it turns them back into labels,
label sets or numbers. This module is where the saved task is written and read:

* :func:`task_meta` is what an export adds to its metadata (``{"task": task.to_config()}``),
  nothing for classification, whose task is its class names (so a classification export is
  exactly what it was before tasks existed);
* :func:`task_from_meta` reads it back (a :class:`Classification` of the class names when the
  metadata holds no task);
* :func:`result_of` is one image's prediction as ``automl predict`` returns it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from automl.tasks import Classification, Task, is_classification, task_from_config

__all__ = ["result_of", "task_from_meta", "task_meta", "tuned_task"]


def task_meta(task: Task | None) -> dict[str, Any]:
    """What an export adds to its metadata for ``task``: ``{"task": config}``, or nothing
    for classification (its class names say it all)."""
    return {} if is_classification(task) else {"task": task.to_config()}


def task_from_meta(meta: dict | None, class_names: list[str] | None = None) -> Task | None:
    """The task saved in an export's metadata; else a classification of its class names
    (``None`` when there are none either)."""
    meta = meta or {}
    if isinstance(meta.get("task"), dict):
        return task_from_config(meta["task"])
    names = class_names if class_names is not None else meta.get("class_names")
    return Classification.of_names(list(names)) if names else None


def task_objective(task: Task, objective: str | None) -> str:
    """``objective`` when ``task`` has it, else the task's default (a search whose objective
    was left at classification's ``val_accuracy``)."""
    return objective if objective in task.objectives else task.default_objective


def lower_is_better(objective: str) -> bool:
    """Whether a lower ``objective`` is better (``val_loss``, ``val_mae``, ``val_rmse``)."""
    from automl.metrics import direction

    return direction(objective) == "min"


def copy_task(task: Task) -> Task:
    """An independent copy of a fitted task (to tune thresholds without touching the data's)."""
    return task_from_config(task.to_config())


def tuned_task(task: Task, model, data) -> Task:
    """A copy of the fitted ``task`` ready to be saved with ``model``: a multi-label task's
    per-label decision thresholds tuned on ``data``'s validation split (F1 per label,
    :func:`automl.metrics.tune_thresholds`); other tasks as they are. The data's own task
    is left untouched."""
    task = copy_task(task)
    if task.name == "multilabel" and len(data.x_val):
        from automl.data.images import predict_images
        from automl.metrics import tune_thresholds

        task.set_thresholds(tune_thresholds(data.y_val, predict_images(model, data.x_val)))
    return task


def result_of(task: Task, name: str, outputs: np.ndarray) -> dict[str, Any]:
    """One image's prediction: ``{"image", "values": {target: value}}`` (regression) or
    ``{"image", "labels": [...], "probabilities": {label: p}}`` (multi-label; labels at or
    over their threshold, most probable first)."""
    out = np.asarray(outputs, dtype=np.float64).reshape(1, -1)
    if task.name == "regression":
        values = np.asarray(task.decode(out), dtype=np.float64).reshape(-1)
        return {"image": name, "values": dict(zip(task.output_names(), map(float, values)))}
    probs = out[0]
    on = task.predict_matrix(out)[0]
    order = [j for j in np.argsort(-probs, kind="mergesort") if on[j]]
    return {
        "image": name,
        "labels": [task.labels_[j] for j in order],
        "probabilities": {lbl: float(p) for lbl, p in zip(task.labels_, probs)},
    }


def format_result(r: dict[str, Any]) -> str:
    """One line of ``automl predict`` for a regression or multi-label result."""
    if "values" in r:
        values = r["values"]
        if len(values) == 1:
            return f"{r['image']}: {next(iter(values.values())):.4g}"
        return f"{r['image']}: " + ", ".join(f"{k} {v:.4g}" for k, v in values.items())
    probs = r["probabilities"]
    shown = ", ".join(f"{lbl} ({probs[lbl]:.4f})" for lbl in r["labels"])
    return f"{r['image']}: {shown or '(no label)'}"
