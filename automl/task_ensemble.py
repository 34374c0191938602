"""Greedy ensemble selection (Caruana et al., 2004) scored on any task's objective.

The same hill-climb as :func:`automl.ensemble.greedy_selection` (sorted initialisation from
the ``init`` best members, then members added with replacement, the best prefix kept), but
each candidate average is scored with :func:`automl.metrics.score` on the task's objective
(``val_macro_f1`` for multi-label, ``val_mae`` for regression...), with the objective's
direction, and ties broken by the task's validation loss. What is averaged is the members'
outputs: probabilities (classification, multi-label) or standardised values (regression:
averaging commutes with un-standardising), so :func:`automl.ensemble.ensemble_model`
builds the chosen ensemble for every task unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from automl.metrics import score
from automl.tasks import Task, get_task

__all__ = ["greedy_selection", "objective_key"]


def objective_key(task: str | Task, objective: str | None = None) -> Callable[..., tuple]:
    """``key(y, outputs)``: a tuple that is larger for a better ensemble (the objective in
    its direction, then the validation loss, lower is better)."""
    t = get_task(task)
    obj = t.check_objective(objective)
    sign = 1.0 if t.direction(obj) == "max" else -1.0

    def key(y: Any, outputs: np.ndarray) -> tuple[float, float]:
        main = score(t, y, outputs, obj)
        loss = score(t, y, outputs, "val_loss") if obj != "val_loss" else main
        main = -np.inf if np.isnan(main) else sign * main
        return (main, -loss)

    return key


def greedy_selection(
    task: str | Task,
    outputs: list[np.ndarray],
    y: Any,
    *,
    objective: str | None = None,
    rounds: int = 10,
    init: int = 2,
) -> list[int]:
    """The indices (repeats included) of the best prefix of the greedy selection.

    Args:
        task: the (fitted) task; its objective scores each candidate average.
        outputs: each member's validation outputs (the model's raw outputs).
        y: the encoded validation targets (``task.encode``).
        objective: the task's objective to maximise or minimise (default: the task's).
        rounds: the most members (with repeats) in the ensemble.
        init: how many of the best single members start it.
    """
    if not outputs:
        return []
    key = objective_key(task, objective)
    singles = [key(y, o) for o in outputs]
    order = sorted(range(len(outputs)), key=lambda i: singles[i], reverse=True)
    chosen = order[: max(1, min(init, len(outputs), rounds))]
    total = sum(outputs[i].astype(np.float64) for i in chosen)
    best_prefix, best = list(chosen), key(y, total / len(chosen))
    for _ in range(rounds - len(chosen)):
        cand = [key(y, (total + o) / (len(chosen) + 1)) for o in outputs]
        j = max(range(len(outputs)), key=lambda i: cand[i])
        chosen.append(j)
        total = total + outputs[j]
        if cand[j] > best:
            best_prefix, best = list(chosen), cand[j]
    return best_prefix
