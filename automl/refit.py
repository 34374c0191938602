"""The search's winning trial trained again on train + validation (AutoGluon's refit_full).

Once the search and the ensemble have chosen, a winning pretrained trial is trained once more
with the same hyperparameters, seed and learning-rate schedules on the training and
validation images together, stopped after the epoch that was the trial's best (no early
stopping, no phase-2 guard: the replay keeps its last epoch). On small data the validation
split is 15-25 % of the images, so the final model sees that many more.

Measured (bench/README.md, "Refit on train + validation"; three sets, two seeds, each
family's seed trial): pretrained, test accuracy 0.9765 trained on train only, 0.9817 refit
(3 better, 0 worse); scratch, 0.9556 -> 0.9181 (5 of 6 worse: a scratch net's validation
score swings from epoch to epoch mid-schedule, and a replay does not land on a good epoch
again). So only the winners of a family whose ``refit_pays`` is set are refit (pretrained;
:class:`automl.families.Family`).

The refit's own validation scores are on images it trained on, so they choose nothing: the
refit run carries the winner's validation scores (the evidence it was chosen on) and ranks
just above it. It is kept only if it scores on that validation split within
:data:`TOLERANCE` of the winner (which did not train on it), which a collapsed fit does
not. An ensemble is not refit (each of its members would cost one more trial); when the
ensemble wins, it stands.

A time-budgeted search leaves :data:`automl.search.deadline.RESERVE` of its budget for the
refit (its :class:`automl.search.deadline.Deadline` says until when). Its time is
estimated from the winner's (scaled by the images: a trial on a capped fidelity, see
:mod:`automl.fidelity`, trained on fewer); when all of train + validation would end more
than that past the budget, the refit trains on the stratified subset of them that fits, and
is skipped when that is no more images than the winner trained on. In MLflow the refit is a nested run of
the search (``automl.trial_id = refit``, ``automl.kind = refit``, ``automl.refit_of`` = the
winner's run id), and the parent run's ``automl.refit`` tag says what happened.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import yaml

log = logging.getLogger("automl")

REFIT_ID = "refit"  # the refit run's automl.trial_id
FILE = "refit.keras"
# How far below the winner's validation accuracy the refit may score on those images (which
# it trained on) and still be kept: run-to-run noise of a working fit is within it (measured:
# 0.7 points on the digits), a collapsed fit falls far below.
TOLERANCE = 0.02
# A multi-label or regression refit is checked on the search's objective: within TOLERANCE
# of the winner's for a score in [0, 1] to maximise (macro-F1, AUC, R2), within this
# fraction of it for an error to minimise (MAE, RMSE in the targets' units, the loss). Not
# measured: a collapsed regression fit predicts the mean, an error several times the winner's.
REL_TOLERANCE = 0.25


def build_search_refit(
    result,
    tracker,
    *,
    data,
    checkpoints,
    search_id: str,
    options,
    deadline=None,
    progress=None,
) -> str | None:
    """Refit the search's best single trial on train + validation; its run id when kept.

    ``options``: the search's :class:`automl.trial.RunOptions`; ``deadline``: the search's
    :class:`automl.search.deadline.Deadline` (None: no time budget); ``progress``: the
    search's :class:`automl.progress.Progress`.
    """
    parent = result.parent_run_id
    _forget_earlier_refit(tracker, parent)
    best = result.best_trial
    plan = _plan(tracker, parent, best, data, deadline)
    if plan is None:
        return None
    from automl.trial import full_data

    train = full_data(data)
    run_id = _start_run(tracker, search_id, best, plan)
    out = _train(tracker, run_id, best, plan, train, options, progress)
    if out is None:
        return None
    return _keep(tracker, run_id, best, plan, out, data, checkpoints, result.objective)


@dataclasses.dataclass
class _Plan:
    """What the refit trains: the winner's configuration (at the refit's fidelity), its
    logged ``config.yaml``, seed and epochs budget, the epochs to train and the images."""

    parent: str
    cfg: Any
    config: dict[str, Any]
    seed: int
    budget: Any
    total: int
    images: int


def _note(tracker, parent: str, text: str) -> None:
    tracker.set_tags(parent, {"automl.refit": text})
    log.info("refit: %s", text)


def _forget_earlier_refit(tracker, parent: str) -> None:
    """A resumed search refits again: the earlier refit's run and tag go."""
    for r in tracker.trial_runs(parent, REFIT_ID):
        tracker.delete_run(r.info.run_id)
    if "automl.refit_run_id" in tracker.get_run(parent).data.tags:
        tracker.delete_tag(parent, "automl.refit_run_id")


def _plan(tracker, parent: str, best, data, deadline) -> _Plan | None:
    """The refit of ``best``, or None (noted on the parent run) when there is none to do."""
    from automl.ensemble import ENSEMBLE_ID
    from automl.families.registry import refit_refusal
    from automl.reports import CONFIG_FILE
    from automl.trial import TrialConfig, refit_epochs

    if best["trial_id"] == ENSEMBLE_ID:
        _note(
            tracker,
            parent,
            "skipped: the ensemble won (its members stay trained on the training split)",
        )
        return None
    source = tracker.get_run(best["run_id"])
    config = yaml.safe_load(tracker.download(best["run_id"], CONFIG_FILE).read_text())
    cfg = TrialConfig.from_values(config["hyperparameters"])
    refusal = refit_refusal(cfg.family)  # whether a refit pays is the family's policy
    if refusal:
        _note(
            tracker, parent, f"skipped: trial {best['trial_id']} is a {cfg.family} trial; {refusal}"
        )
        return None
    budget = config.get("epochs_budget")
    total = refit_epochs(source.data.metrics.get("best_epoch")) or sum(cfg.schedule(budget))
    full = len(data.y_train) + len(data.y_val)
    images = _images_in_time(source, total, data, deadline)
    if isinstance(images, str):
        _note(tracker, parent, f"skipped: refitting trial {best['trial_id']} would take {images}")
        return None
    # The refit's fidelity: all of train + validation, or the stratified subset that fits.
    cfg = dataclasses.replace(cfg, train_images=images if images < full else 0)
    return _Plan(parent, cfg, config, int(config.get("seed", 0)), budget, total, images)


def _images_in_time(source, total: int, data, deadline) -> int | str:
    """How many train + validation images the refit trains on: all of them, or the
    stratified subset that ends within the deadline; why not (a string) when that is no more
    images than the winner trained on."""
    full = len(data.y_train) + len(data.y_val)
    left = deadline.refit_seconds_left() if deadline is not None else None
    if left is None:
        return full
    m = source.data.metrics
    took = (source.info.end_time - source.info.start_time) / 1000
    share = total / max(m.get("epochs_run", total), 1.0)
    # The trial trained on its fidelity (automl.fidelity): time grows with the images.
    seen = int(m.get("train_images", len(data.y_train))) or len(data.y_train)
    per_image = took * share / max(seen, 1)
    estimate = per_image * full
    if estimate <= left:
        return full
    images = int(left / per_image) if per_image > 0 else 0
    if images <= seen:  # no more images than the trial had: nothing to gain
        return f"about {estimate:.0f} s, {estimate - left:.0f} s past the time budget"
    return images


def _start_run(tracker, search_id: str, best, plan: _Plan) -> str:
    """The refit's nested run of the search, its configuration as params."""
    from automl.tracking import TAG_KIND

    params = {
        **plan.cfg.to_dict(),
        "lr": plan.cfg.learning_rate,
        "trial_id": REFIT_ID,
        "seed": plan.seed,
        "refit_of": best["trial_id"],
        "epochs_budget": plan.budget,
        "stop_after": plan.total,
    }
    run_id = tracker.start_trial(plan.parent, search_id, REFIT_ID, params)
    tracker.set_tags(run_id, {TAG_KIND: "refit", "automl.refit_of": best["run_id"]})
    return run_id


def _train(tracker, run_id: str, best, plan: _Plan, train, options, progress):
    """The refit on ``train`` (train + validation), trained by the one trial runner; None
    (noted) when it failed."""
    import automl.trial
    from automl.embeddings import EmbeddingCache
    from automl.executors.runner import train_streamed
    from automl.reports import error_line

    opts = dataclasses.replace(options, deadline=None)
    if progress is not None:
        progress.run_started(
            f"refit of trial {best['trial_id']}",
            plan.total,
            f"train + validation, {plan.images} images",
        )
    try:
        with tracker.closed_on_failure(run_id):
            return train_streamed(
                plan.cfg,
                train,
                tracker=tracker,
                run_id=run_id,
                options=opts,
                train=automl.trial.run_trial,
                on_progress=progress.epoch if progress is not None else None,
                label="refit",
                embeddings=EmbeddingCache() if opts.embedding_cache else None,
                budget=plan.budget,
                seed=plan.seed,
                stop_after=plan.total,
            )
    except Exception as e:  # a refit never costs the search its result: the winner stands
        _note(tracker, plan.parent, f"failed ({error_line(e)}); trial {best['trial_id']} stands")
        return None
    finally:
        if progress is not None:
            progress.close()


def _check(task, objective: str) -> tuple[str, Any]:
    """The validation score the refit is checked on, and ``ok(seen, won)``."""
    from automl.task_outputs import task_objective
    from automl.tasks import is_classification

    if is_classification(task):
        return "val_accuracy", lambda seen, won: seen >= won - TOLERANCE
    key = task_objective(task, objective)
    if task.direction(key) == "max":
        return key, lambda seen, won: seen >= won - TOLERANCE
    return key, lambda seen, won: seen <= won + REL_TOLERANCE * abs(won)


def _margin(task, key: str) -> str:
    """``0.02 below`` / ``25% above``: how far the refit may be from the winner."""
    if key == "val_accuracy" or task.direction(key) == "max":
        return f"{TOLERANCE:g} below"
    return f"{REL_TOLERANCE:.0%} above"


def _keep(
    tracker, run_id: str, best, plan: _Plan, out, data, checkpoints, objective="val_accuracy"
) -> str | None:
    """Record the refit; keep its model (the parent's ``automl.refit_run_id``) when it
    scores within :data:`TOLERANCE` of the winner on the validation images (multi-label and
    regression: on the search's objective, see :data:`REL_TOLERANCE`)."""
    import keras

    from automl.export import export_model
    from automl.tasks import is_classification, task_of

    task = task_of(data)
    key, ok = _check(task, objective)
    seen = out.metrics.get(key, float("nan"))
    won = best["metrics"].get(key, float("nan"))
    tracker.log_metrics(
        run_id,
        {
            f"refit_{key}": seen,  # on images it trained on: a sanity check only
            "best_epoch": out.metrics["best_epoch"],
            "epochs_run": out.metrics["epochs_run"],
        },
    )
    _log_config(tracker, run_id, best, plan, data)
    if not ok(seen, won):  # it trained on these images: a working fit does this
        tracker.end_run(run_id, "FINISHED")
        _note(
            tracker,
            plan.parent,
            f"not kept: {key} {seen:.4f} on images it trained on, more than {_margin(task, key)} "
            f"trial {best['trial_id']}'s {won:.4f} without them; trial "
            f"{best['trial_id']} stands",
        )
        return None
    path = export_model(
        out.model,
        checkpoints.folder / FILE,
        class_names=data.class_names,
        force=True,
        task=None if is_classification(task) else task,
    )
    # The winner's validation scores: the evidence the configuration was chosen on. With
    # them the refit ranks next to (just above) the trial it refits.
    tracker.log_metrics(run_id, _winner_scores(best, task))
    tracker.set_tags(run_id, {"automl.checkpoint": str(path)})
    tracker.end_run(run_id, "FINISHED")
    tracker.set_tags(plan.parent, {"automl.refit_run_id": run_id})
    _note(
        tracker,
        plan.parent,
        f"kept: trial {best['trial_id']} trained again on {plan.images} train + "
        f"validation images for {plan.total} epochs",
    )
    del out
    keras.backend.clear_session()
    return run_id


def _log_config(tracker, run_id: str, best, plan: _Plan, data) -> None:
    """The refit's ``config.yaml``: the winner's, with what it refits and where it stops."""
    from automl.reports import CONFIG_FILE, trial_config

    config_out = trial_config(
        plan.cfg,
        data,
        seed=plan.seed,
        split_seed=int(plan.config["data"]["split_seed"]),
        budget=plan.budget,
    )
    config_out.update(refit_of=best["run_id"], stop_after=plan.total)
    tracker.log_dict(run_id, config_out, CONFIG_FILE)


def _winner_scores(best, task) -> dict[str, float]:
    """The refit trial's ``best_*`` metrics: the winner's validation scores."""
    from automl.tasks import is_classification

    if is_classification(task):
        return {f"best_{k}": best["metrics"][k] for k in ("val_accuracy", "val_loss")}
    return {
        f"best_{k}": v
        for k, v in best["metrics"].items()
        if k.startswith("val_") and v is not None and v == v
    }
