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

A time-budgeted search leaves :data:`RESERVE` of its budget for the refit. Its time is
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
import time
from typing import Any

import yaml

log = logging.getLogger("automl")

REFIT_ID = "refit"  # the refit run's automl.trial_id
FILE = "refit.keras"
RESERVE = 0.15  # share of a time budget the trials leave for the refit
# How far below the winner's validation accuracy the refit may score on those images (which
# it trained on) and still be kept: run-to-run noise of a working fit is within it (measured:
# 0.7 points on the digits), a collapsed fit falls far below.
TOLERANCE = 0.02


def build_search_refit(
    result,
    tracker,
    *,
    data,
    checkpoints,
    search_id: str,
    options,
    budget_end: float | None = None,
    budget_seconds: float | None = None,
    progress=None,
) -> str | None:
    """Refit the search's best single trial on train + validation; its run id when kept.

    ``options``: the search's :class:`automl.trial.RunOptions`; ``budget_end``: when the
    time budget ends (``time.time()``), ``budget_seconds`` its length; ``progress``: the
    search's :class:`automl.progress.Progress`.
    """
    import keras

    from automl.embeddings import EmbeddingCache
    from automl.ensemble import ENSEMBLE_ID
    from automl.export import export_model
    from automl.families.registry import refit_refusal
    from automl.reports import CONFIG_FILE, error_line, trial_config
    from automl.tracking import TAG_KIND
    from automl.trial import TrialConfig, full_data, refit_epochs, run_trial

    parent = result.parent_run_id
    for r in tracker.trial_runs(parent, REFIT_ID):  # a resumed search refits again
        tracker.client.delete_run(r.info.run_id)
    if "automl.refit_run_id" in tracker.client.get_run(parent).data.tags:
        tracker.client.delete_tag(parent, "automl.refit_run_id")
    best = result.best_trial

    def note(text: str) -> None:
        tracker.set_tags(parent, {"automl.refit": text})
        log.info("refit: %s", text)

    if best["trial_id"] == ENSEMBLE_ID:
        note("skipped: the ensemble won (its members stay trained on the training split)")
        return None
    source = tracker.client.get_run(best["run_id"])
    config = yaml.safe_load(tracker.download(best["run_id"], CONFIG_FILE).read_text())
    cfg = TrialConfig.from_values(config["hyperparameters"])
    refusal = refit_refusal(cfg.family)  # whether a refit pays is the family's policy
    if refusal:
        note(f"skipped: trial {best['trial_id']} is a {cfg.family} trial; {refusal}")
        return None
    seed = int(config.get("seed", 0))
    budget = config.get("epochs_budget")
    stop = refit_epochs(source.data.metrics.get("best_epoch"))
    total = stop or sum(cfg.schedule(budget))
    full = len(data.y_train) + len(data.y_val)
    images = full  # train + validation; fewer when the budget's reserve cannot take them all
    if budget_end is not None and budget_seconds:
        m = source.data.metrics
        took = (source.info.end_time - source.info.start_time) / 1000
        share = total / max(m.get("epochs_run", total), 1.0)
        # The trial trained on its fidelity (automl.fidelity): time grows with the images.
        seen = int(m.get("train_images", len(data.y_train))) or len(data.y_train)
        per_image = took * share / max(seen, 1)
        estimate = per_image * full
        left = budget_end + RESERVE * budget_seconds - time.time()
        if estimate > left:
            images = int(left / per_image) if per_image > 0 else 0
            if images <= seen:  # no more images than the trial had: nothing to gain
                note(
                    f"skipped: refitting trial {best['trial_id']} would take about "
                    f"{estimate:.0f} s, {estimate - left:.0f} s past the time budget"
                )
                return None
    train = full_data(data)
    # The refit's fidelity: all of train + validation, or the stratified subset that fits.
    cfg = dataclasses.replace(cfg, train_images=images if images < full else 0)
    params = {
        **cfg.to_dict(),
        "lr": cfg.learning_rate,
        "trial_id": REFIT_ID,
        "seed": seed,
        "refit_of": best["trial_id"],
        "epochs_budget": budget,
        "stop_after": total,
    }
    run_id = tracker.start_trial(parent, search_id, REFIT_ID, params)
    tracker.set_tags(run_id, {TAG_KIND: "refit", "automl.refit_of": best["run_id"]})
    opts = dataclasses.replace(options, deadline=None)
    if progress is not None:
        progress.run_started(
            f"refit of trial {best['trial_id']}",
            total,
            f"train + validation, {images} images",
        )

    def on_epoch(entry: dict[str, Any]) -> None:
        tracker.log_epoch(run_id, entry)
        if progress is not None:
            progress.epoch(entry)

    try:
        with tracker.closed_on_failure(run_id):
            out = run_trial(
                cfg,
                train,
                options=opts,
                embeddings=EmbeddingCache() if opts.embedding_cache else None,
                on_epoch=on_epoch,
                budget=budget,
                seed=seed,
                stop_after=total,
            )
    except Exception as e:  # a refit never costs the search its result: the winner stands
        note(f"failed ({error_line(e)}); trial {best['trial_id']} stands")
        return None
    finally:
        if progress is not None:
            progress.close()
    seen = out.metrics.get("val_accuracy", float("nan"))
    won = best["metrics"]["val_accuracy"]
    tracker.log_metrics(
        run_id,
        {
            "refit_val_accuracy": seen,  # on images it trained on: a sanity check only
            "best_epoch": out.metrics["best_epoch"],
            "epochs_run": out.metrics["epochs_run"],
        },
    )
    config_out = trial_config(
        cfg, data, seed=seed, split_seed=int(config["data"]["split_seed"]), budget=budget
    )
    config_out.update(refit_of=best["run_id"], stop_after=total)
    tracker.log_dict(run_id, config_out, CONFIG_FILE)
    if not seen >= won - TOLERANCE:  # it trained on these images: a working fit does this
        tracker.end_run(run_id, "FINISHED")
        note(
            f"not kept: val_accuracy {seen:.4f} on images it trained on, more than "
            f"{TOLERANCE:g} below trial {best['trial_id']}'s {won:.4f} without them; trial "
            f"{best['trial_id']} stands"
        )
        return None
    path = export_model(
        out.model, checkpoints.folder / FILE, class_names=data.class_names, force=True
    )
    # The winner's validation scores: the evidence the configuration was chosen on. With
    # them the refit ranks next to (just above) the trial it refits.
    tracker.log_metrics(
        run_id, {f"best_{k}": best["metrics"][k] for k in ("val_accuracy", "val_loss")}
    )
    tracker.set_tags(run_id, {"automl.checkpoint": str(path)})
    tracker.end_run(run_id, "FINISHED")
    tracker.set_tags(parent, {"automl.refit_run_id": run_id})
    note(
        f"kept: trial {best['trial_id']} trained again on {images} train + "
        f"validation images for {total} epochs"
    )
    del out
    keras.backend.clear_session()
    return run_id
