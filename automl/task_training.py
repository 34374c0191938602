"""What a trial trains for, per task: the objectives per epoch, the weights.

The trial (:mod:`automl.trial`) asks this module, so that it compares no task names itself:

* :func:`epoch_objectives`: the objectives a :class:`automl.task_metrics.TaskMetrics`
  callback adds to each epoch's logs (none for a classification searched on
  ``val_accuracy`` / ``val_loss``, which Keras computes: such a search runs as it always has);
* :func:`fit_weights`: the ``class_weight`` hyperparameter as what ``fit`` takes: a
  ``{class: weight}`` dict (classification) or one weight per image (multi-label:
  :func:`automl.imbalance.sample_weights` from per-label positive weights; regression: none).
"""

from __future__ import annotations

import numpy as np

from automl.errors import SearchError, quoted
from automl.tasks import Task, is_classification

__all__ = [
    "CLASS_WEIGHTS",
    "epoch_objectives",
    "fit_weights",
    "trial_scores",
]

# The values of the ``class_weight`` hyperparameter.
CLASS_WEIGHTS = ("none", "balanced")
# What Keras itself logs for a classification model compiled with metrics=["accuracy"].
KERAS_OBJECTIVES = ("val_accuracy", "val_loss")


def epoch_objectives(task: Task, objective: str) -> list[str]:
    """The objectives a TaskMetrics callback adds per epoch ([] when Keras logs them all).

    Classification: only a searched objective Keras does not log (``val_macro_f1``, ...).
    Multi-label and regression: every objective of the task but ``val_loss``, so each epoch
    of a trial shows them all (``val_mae`` in the targets' units, ``val_macro_f1``, ...).
    """
    objective = task.check_objective(objective)
    if is_classification(task):
        return [] if objective in KERAS_OBJECTIVES else [objective]
    return [o for o in task.objectives if o != "val_loss"]


def trial_scores(metrics: dict[str, float]) -> dict[str, float]:
    """The scores a trial is ranked by, from its metrics: ``val_accuracy`` and ``val_loss``
    (as always) and any task objective it has (``val_mae``, ``val_macro_f1``, ...)."""
    from automl.metrics import objective_names

    keys = dict.fromkeys(("val_accuracy", "val_loss", *objective_names()))
    return {k: metrics[k] for k in keys if k in metrics}


def fit_weights(
    class_weight: str, task: Task, y: np.ndarray
) -> tuple[dict[int, float] | None, np.ndarray | None]:
    """``(class_weight dict, sample weights)`` for ``fit`` on encoded targets ``y``.

    ``class_weight``: ``"none"`` (both None) or ``"balanced"``: scikit-learn's balanced
    weights per class (classification) or per-image weights from the labels' positive
    weights (multi-label). Regression has no classes: ``"balanced"`` is refused.
    """
    if class_weight not in CLASS_WEIGHTS:
        raise SearchError(
            f"class_weight={quoted(class_weight)} is not allowed; use one of: "
            f"{', '.join(CLASS_WEIGHTS)}"
        )
    if class_weight == "none":
        return None, None
    from automl.imbalance import class_weights, sample_weights

    if is_classification(task):
        return class_weights(np.asarray(y), task.units_), None
    if task.name == "multilabel":
        return None, sample_weights(np.asarray(y))
    raise SearchError(
        f"class_weight={quoted(class_weight)} does not apply to {task.name}; "
        "leave it out of the space (or set it to 'none')"
    )
