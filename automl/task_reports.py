"""Report figures and tables for regression and multi-label (classification's confusion
matrix and per-class table are in :mod:`automl.reports`).

* regression: :func:`predicted_vs_true_figure` (one point per image, the y = x line) and
  :func:`residuals_figure` (residual against prediction), in the targets' units;
  :func:`regression_scores` (MAE, RMSE, R2 per target);
* multi-label: :func:`per_label_figure` (precision and recall bars per label, at the task's
  thresholds) and :func:`per_label_scores` (precision, recall, F1, support, threshold).

:func:`task_reports` returns ``({artifact file: figure}, {name: table})`` for any task from
encoded targets and raw outputs; the tracker logs them (``mlflow.log_figure``/``log_dict``).
Figures are matplotlib ``Figure`` objects (Agg backend); the caller closes them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from automl import metrics as m
from automl.tasks import Task

__all__ = [
    "per_label_figure",
    "per_label_scores",
    "predicted_vs_true_figure",
    "regression_scores",
    "residuals_figure",
    "task_reports",
]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _columns(a: Any) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(len(a), -1)


def _panels(y_true, y_pred, names):
    """The targets as columns, their names, and a figure of one panel per target."""
    t, p = _columns(y_true), _columns(y_pred)
    k = t.shape[1]
    names = names or [f"target {j}" for j in range(k)]
    fig, axes = _plt().subplots(1, k, figsize=(4.2 * k, 4), squeeze=False)
    return t, p, names, fig, axes


def predicted_vs_true_figure(y_true, y_pred, names: list[str] | None = None, title: str = ""):
    """Predicted against true value, one panel per target, with the y = x line."""
    t, p, names, fig, axes = _panels(y_true, y_pred, names)
    for j, ax in enumerate(axes[0]):
        lo, hi = min(t[:, j].min(), p[:, j].min()), max(t[:, j].max(), p[:, j].max())
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=1, label="y = x")
        ax.scatter(t[:, j], p[:, j], s=10, alpha=0.6)
        ax.set_xlabel(f"true {names[j]}")
        ax.set_ylabel(f"predicted {names[j]}")
        ax.set_title(f"MAE {m.mae(t[:, j], p[:, j]):.4g}, R2 {m.r2(t[:, j], p[:, j]):.3f}")
    fig.suptitle(title or "predicted vs true")
    fig.tight_layout()
    return fig


def residuals_figure(y_true, y_pred, names: list[str] | None = None, title: str = ""):
    """Residual (predicted - true) against the prediction, one panel per target."""
    t, p, names, fig, axes = _panels(y_true, y_pred, names)
    for j, ax in enumerate(axes[0]):
        ax.axhline(0.0, color="0.6", lw=1)
        ax.scatter(p[:, j], p[:, j] - t[:, j], s=10, alpha=0.6)
        ax.set_xlabel(f"predicted {names[j]}")
        ax.set_ylabel("residual (predicted - true)")
    fig.suptitle(title or "residuals")
    fig.tight_layout()
    return fig


def regression_scores(y_true, y_pred, names: list[str] | None = None) -> dict[str, Any]:
    """``{target: {"mae", "rmse", "r2"}}`` in the targets' units."""
    t, p = _columns(y_true), _columns(y_pred)
    names = names or [f"target {j}" for j in range(t.shape[1])]
    return {
        n: {
            "mae": m.mae(t[:, j], p[:, j]),
            "rmse": m.rmse(t[:, j], p[:, j]),
            "r2": m.r2(t[:, j], p[:, j]),
        }
        for j, n in enumerate(names)
    }


def per_label_scores(y_true, y_pred, labels: list[str], thresholds=None) -> dict[str, Any]:
    """``{label: {"precision", "recall", "f1", "support"[, "threshold"]}}`` from 0/1 matrices."""
    precision, recall, support = m.per_class_precision_recall(np.asarray(y_true), y_pred)
    f1 = np.divide(2 * precision * recall, precision + recall,
                   out=np.zeros_like(precision), where=(precision + recall) > 0)  # fmt: skip
    out = {}
    for j, name in enumerate(labels):
        row = {
            "precision": float(precision[j]),
            "recall": float(recall[j]),
            "f1": float(f1[j]),
            "support": int(support[j]),
        }
        if thresholds is not None:
            row["threshold"] = float(np.asarray(thresholds).reshape(-1)[j])
        out[name] = row
    return out


def per_label_figure(y_true, y_pred, labels: list[str], title: str = ""):
    """Precision and recall per label (grouped bars), support under each label."""
    plt = _plt()
    precision, recall, support = m.per_class_precision_recall(np.asarray(y_true), y_pred)
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(labels) + 2), 4))
    ax.bar(x - 0.2, precision, width=0.4, label="precision")
    ax.bar(x + 0.2, recall, width=0.4, label="recall")
    ax.set_xticks(x, [f"{n}\n({s})" for n, s in zip(labels, support)], rotation=0, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower right")
    ax.set_title(title or "per-label precision and recall (support)")
    fig.tight_layout()
    return fig


def task_reports(task: Task, y_true, outputs, split: str = "validation"):
    """``(figures, tables)`` for a fitted task: ``figures`` maps an artifact file name
    (``plots/predicted_vs_true_validation.png``...) to a figure, ``tables`` a name to a
    JSON-able dict. Classification returns nothing here (see :mod:`automl.reports`)."""
    if task.name == "regression":
        t, p = task.decode(y_true), task.decode(outputs)  # both in the targets' units
        names = task.output_names()
        return (
            {
                f"plots/predicted_vs_true_{split}.png": predicted_vs_true_figure(
                    t, p, names, title=f"predicted vs true ({split})"
                ),
                f"plots/residuals_{split}.png": residuals_figure(
                    t, p, names, title=f"residuals ({split})"
                ),
            },
            {f"regression_scores_{split}": regression_scores(t, p, names)},
        )
    if task.name == "multilabel":
        pred = task.predict_matrix(outputs)
        return (
            {
                f"plots/per_label_{split}.png": per_label_figure(
                    y_true, pred, task.labels_, title=f"per-label precision and recall ({split})"
                )
            },
            {
                f"per_label_scores_{split}": per_label_scores(
                    y_true, pred, task.labels_, task.thresholds_
                )
            },
        )
    return {}, {}
