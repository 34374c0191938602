"""Greedy ensemble selection (Caruana et al., 2004) over a search's kept trials.

After the search, the best epochs of up to K kept trials (the top-k checkpoints) predict
the validation split. The ensemble starts from the two best trials (Caruana's "sorted
initialisation", which keeps the hill-climb from overfitting a small validation split),
then members are added greedily, with replacement, whenever that makes the average of
their probabilities score best, and the best prefix wins. The ensemble is kept only if it
beats the best single trial on validation.

Measured (bench/README.md, "Ensemble selection"): on the kept trials of four searches
(digits, textures, photos, tiny_photos; 150-270 test images each), test accuracy of the
chosen model averaged 0.9782 for the best single trial, 0.9863 for greedy selection from
the best one, 0.9896 from the best two.

It is one Keras model of built-in layers: each member (a saved trial model, raw images ->
probabilities) scaled by its weight (``Rescaling``), summed (``Add``). It loads in safe
mode and exports to every format like any trial model. In MLflow it is a nested run of
the search (``automl.trial_id = ensemble``), so the leaderboard shows it as its own row,
and ``automl export`` exports it when it won; the parent run holds its members' run ids.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from automl.metrics import accuracy, log_loss, rank_key

log = logging.getLogger("automl")

ENSEMBLE_ID = "ensemble"  # the ensemble run's automl.trial_id
FILE = "ensemble.keras"


def _scores(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return {"val_accuracy": accuracy(y, probs), "val_loss": log_loss(y, probs)}


_rank = rank_key  # (the name bench/ensemble_selection.py imports)


def greedy_selection(
    probs: list[np.ndarray],
    y: np.ndarray,
    *,
    rounds: int = 10,
    objective: str = "val_accuracy",
    init: int = 2,
) -> list[int]:
    """Caruana's selection with replacement: the indices of the best prefix, repeats included.

    Starts from the ``init`` best single members (sorted initialisation); each round adds
    the member whose addition scores best; the best-scoring prefix is returned.
    """
    if not probs:
        return []
    singles = [_rank(_scores(p, y), objective) for p in probs]
    order = sorted(range(len(probs)), key=lambda i: singles[i], reverse=True)
    chosen = order[: max(1, min(init, len(probs), rounds))]
    total = sum(probs[i].astype(np.float64) for i in chosen)
    best_prefix = list(chosen)
    best_score = _rank(_scores(total / len(chosen), y), objective)
    for _ in range(rounds - len(chosen)):
        cand = [_rank(_scores((total + p) / (len(chosen) + 1), y), objective) for p in probs]
        j = max(range(len(probs)), key=lambda i: cand[i])
        chosen.append(j)
        total += probs[j]
        if cand[j] > best_score:
            best_prefix, best_score = list(chosen), cand[j]
    return best_prefix


def ensemble_model(members: list[Any], weights: list[float]):
    """One ``keras.Model``: sum of ``weights[i] * members[i](image)`` (built-in layers only)."""
    import keras

    inputs = keras.Input(shape=(None, None, 3), name="image")
    outs = []
    for i, (m, w) in enumerate(zip(members, weights)):
        m.name = f"member{i}"  # loaded trial models may share a name
        outs.append(keras.layers.Rescaling(float(w), name=f"member{i}_weight")(m(inputs)))
    out = outs[0] if len(outs) == 1 else keras.layers.Add(name="ensemble_sum")(outs)
    return keras.Model(inputs, out, name="automl_ensemble")


@dataclass
class EnsembleResult:
    """What the selection found (``kept``: it beat the best single trial on validation)."""

    kept: bool
    trial_ids: list[str] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    best_single: dict[str, float] = field(default_factory=dict)
    path: Path | None = None
    model: Any = None


def select(
    paths: dict[str, Path],
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    objective: str = "val_accuracy",
    rounds: int = 10,
    task=None,
) -> EnsembleResult:
    """Greedy selection over the saved models ``paths`` (trial id -> .keras file).

    ``task``: a fitted multi-label or regression :class:`automl.tasks.Task` (``y_val``
    encoded by it): the members' outputs (probabilities or standardised values) are
    averaged and selected on the task's objective (:mod:`automl.task_ensemble`); ``None``
    or a classification: class probabilities on ``val_accuracy`` / ``val_loss``.
    """
    import keras

    from automl.tasks import is_classification

    ids = list(paths)
    models = [keras.models.load_model(paths[t], safe_mode=True, compile=False) for t in ids]
    from automl.data.images import predict_images

    probs = [predict_images(m, x_val).astype(np.float64) for m in models]
    if not is_classification(task):
        return _select_task(task, ids, models, probs, y_val, objective, rounds)
    singles = [_scores(p, y_val) for p in probs]
    best_single = max(singles, key=lambda s: _rank(s, objective))
    prefix = greedy_selection(probs, y_val, rounds=rounds, objective=objective)
    counts = Counter(prefix)
    used = sorted(counts)
    weights = [counts[i] / len(prefix) for i in used]
    mix = sum(w * probs[i] for i, w in zip(used, weights))
    scores = _scores(mix, y_val)
    kept = len(used) > 1 and _rank(scores, objective) > _rank(best_single, objective)
    result = EnsembleResult(
        kept=kept,
        trial_ids=[ids[i] for i in used],
        weights=weights,
        scores=scores,
        best_single=best_single,
    )
    if kept:
        result.model = ensemble_model([models[i] for i in used], weights)
    return result


def task_scores(task, y: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
    """Every objective of ``task`` (``val_mae``, ``val_macro_f1``...) on encoded targets."""
    from automl.metrics import score

    return {obj: score(task, y, outputs, obj) for obj in task.objectives}


def _select_task(task, ids, models, outputs, y_val, objective, rounds) -> EnsembleResult:
    """:func:`select` for a multi-label or regression task."""
    from automl import task_ensemble
    from automl.task_outputs import task_objective

    objective = task_objective(task, objective)
    key = task_ensemble.objective_key(task, objective)
    best = max(range(len(outputs)), key=lambda i: key(y_val, outputs[i]))
    prefix = task_ensemble.greedy_selection(
        task, outputs, y_val, objective=objective, rounds=rounds
    )
    counts = Counter(prefix)
    used = sorted(counts)
    weights = [counts[i] / len(prefix) for i in used]
    mix = sum(w * outputs[i] for i, w in zip(used, weights))
    kept = len(used) > 1 and key(y_val, mix) > key(y_val, outputs[best])
    result = EnsembleResult(
        kept=kept,
        trial_ids=[ids[i] for i in used],
        weights=weights,
        scores=task_scores(task, y_val, mix),
        best_single=task_scores(task, y_val, outputs[best]),
    )
    if kept:
        result.model = ensemble_model([models[i] for i in used], weights)
    return result


def build_search_ensemble(
    result, tracker, *, k: int, checkpoints, data, search_id: str
) -> EnsembleResult | None:
    """The end-of-search hook: select, and when kept, save and record the ensemble.

    ``result`` is the :class:`automl.search.SearchResult`, ``checkpoints`` the search's
    :class:`automl.checkpoints.Checkpoints` (the candidates), ``k`` the most members.
    """
    from automl.tracking import TAG_TRIAL

    k = int(k)
    parent = result.parent_run_id
    for r in tracker.trial_runs(parent):  # a resumed search builds its ensemble again
        if r.data.tags.get(TAG_TRIAL) == ENSEMBLE_ID:
            tracker.delete_run(r.info.run_id)
    if k < 2:
        return None
    paths = _candidates(checkpoints, k)
    if len(paths) < 2:
        log.info("ensemble: fewer than 2 kept trials, none built")
        return None
    # On the validation images the trials were scored on (a large data set's are capped,
    # see automl.fidelity): the same evidence, and not a pass over all of them per member.
    from automl.fidelity import subset

    best_params = tracker.run_params(result.best_trial["run_id"])
    val = subset(data, 0, int(best_params.get("val_images", 0) or 0))
    from automl.task_outputs import task_objective
    from automl.tasks import is_classification, task_of

    task = task_of(data)
    task = None if is_classification(task) else task
    objective = result.objective if task is None else task_objective(task, result.objective)
    out = select(paths, val.x_val, val.y_val, objective=objective, task=task)
    runs = {r.data.tags.get(TAG_TRIAL): r.info.run_id for r in tracker.trial_runs(parent)}
    member_runs = [runs.get(t, "") for t in out.trial_ids]
    summary = {
        "kept": out.kept,
        "candidates": list(paths),
        "members": out.trial_ids,
        "member_run_ids": member_runs,
        "weights": out.weights,
        "val_scores": out.scores,
        "best_single_val_scores": out.best_single,
    }
    tracker.log_dict(parent, summary, "ensemble.json")
    if not out.kept:
        _record_not_kept(tracker, parent, out, objective)
        return out
    from automl.export import export_model

    out.path = export_model(
        out.model, checkpoints.folder / FILE, class_names=data.class_names, force=True, task=task
    )
    _record_kept(tracker, parent, search_id, out, member_runs, objective)
    return out


def _candidates(checkpoints, k: int) -> dict[str, Path]:
    """The ``k`` best kept trials that still have their model file: trial id -> path."""
    checkpoints.reload()
    ranked = sorted(
        checkpoints.scores.items(), key=lambda kv: checkpoints.rank(kv[1]), reverse=True
    )
    paths = {tid: checkpoints.path(tid) for tid, _ in ranked if checkpoints.path(tid).exists()}
    return dict(list(paths.items())[:k])


def _record_not_kept(tracker, parent: str, out: EnsembleResult, objective: str) -> None:
    tracker.set_tags(
        parent,
        {
            "automl.ensemble": (
                f"not kept: {objective} {out.scores[objective]:.4f} does not "
                f"beat the best trial's {out.best_single[objective]:.4f}"
            )
        },
    )
    log.info("ensemble of %s not kept: no better than the best trial", out.trial_ids)


def _record_kept(
    tracker, parent: str, search_id: str, out: EnsembleResult, member_runs: list[str], objective
) -> None:
    """The ensemble's own nested run, and the parent's tags that point at it."""
    from automl.tracking import TAG_KIND

    run_id = tracker.start_trial(
        parent,
        search_id,
        ENSEMBLE_ID,
        {
            "family": "ensemble",
            "members": ",".join(out.trial_ids),
            "member_run_ids": ",".join(member_runs),
            "weights": ",".join(f"{w:.4g}" for w in out.weights),
        },
    )
    tracker.log_metrics(run_id, {f"best_{k}": v for k, v in out.scores.items()})
    tracker.set_tags(
        run_id,
        {
            TAG_KIND: "ensemble",
            "automl.checkpoint": str(out.path),
            "automl.ensemble_best_member": member_runs[int(np.argmax(out.weights))],
        },
    )
    tracker.end_run(run_id, "FINISHED")
    tracker.set_tags(
        parent,
        {
            "automl.ensemble": "kept",
            "automl.ensemble_run_id": run_id,
            "automl.ensemble_members": ",".join(member_runs),
        },
    )
    log.info(
        "ensemble kept: trials %s weights %s, %s %.4f (best trial %.4f)",
        out.trial_ids,
        [round(w, 3) for w in out.weights],
        objective,
        out.scores[objective],
        out.best_single[objective],
    )
