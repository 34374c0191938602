"""What a search leaves (its runs, leaderboard, best model), and the step that closes it."""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automl.data import DataBundle
from automl.errors import SearchError
from automl.tracking import Tracker, best_trial

log = logging.getLogger("automl")


@dataclass
class SearchResult:
    """What a search leaves: its MLflow runs, the leaderboard, and the best model."""

    tracking_uri: str
    experiment: str
    parent_run_id: str
    objective: str = "val_accuracy"
    class_names: list[str] = field(default_factory=list)
    data: DataBundle | None = field(default=None, repr=False)
    test_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def tracker(self) -> Tracker:
        return Tracker(self.tracking_uri, self.experiment)

    @property
    def ui_url(self) -> str:
        """This search's runs in the MLflow UI (`automl ui`), in the model-training view."""
        from automl.tracking import ui_base, ui_link

        return ui_link(self.tracker.experiment_id, ui_base(self.tracking_uri))

    @property
    def compare_url(self) -> str:
        """MLflow's compare view of the search's best finished trials (at most
        :data:`automl.search_report.COMPARE_MAX`), side by side; "" before any finished."""
        from automl.compare import search_compare_link
        from automl.tracking import ui_base

        return search_compare_link(
            self.tracker, self.parent_run_id, ui_base(self.tracking_uri), self.objective
        )[0]

    def leaderboard(self):
        """pandas DataFrame, one row per trial run, best first."""
        return self.tracker.leaderboard(self.parent_run_id, self.objective)

    @property
    def best_trial(self) -> dict[str, Any]:
        """The best finished trial: ``trial_id``, ``run_id``, ``hyperparameters``, ``metrics``."""
        return best_trial(self.tracker, self.parent_run_id, self.objective)

    def best_model(self):
        """The best trial's model at its best epoch (``keras.Model``)."""
        from automl.export import load_best_model

        return load_best_model(self.tracker, self.parent_run_id)

    def best_models(self, n: int = 3) -> list:
        """The ``n`` best finished trials' models (``keras.Model``, best first, best epochs).

        Only the best ``keep_top_k`` trials keep a model file, so ``n`` is at most that.
        """
        from automl.results import best_models

        return best_models(self, n)

    def predict(self, images) -> list[str]:
        """The best model's class name for each image (an (N, H, W[, C]) array, or a list of
        HxWxC arrays or image files)."""
        from automl.results import predict_classes

        return predict_classes(self, images)

    def evaluate(self, x, y) -> dict[str, float]:
        """The best model's ``accuracy`` and ``loss`` on images ``x`` and labels ``y``
        (labels as given to the search: ints or strings)."""
        from automl.results import evaluate

        return evaluate(self, x, y)

    def export(self, path: str | Path, format: str = "keras", **kwargs) -> Path:
        """Write the best model to ``path`` in ``format`` (see :mod:`automl.export`).

        ``quantize="float16"`` / ``"int8"`` apply to ``format="tflite"``; int8 calibrates on
        this search's training images unless ``calibration_images=`` is given.
        """
        from automl.export import CALIBRATION_IMAGES, check_export_args, export_model

        check_export_args(
            path, format=format, force=kwargs.get("force", False), quantize=kwargs.get("quantize")
        )
        if kwargs.get("quantize") == "int8" and self.data is not None:
            kwargs.setdefault("calibration_images", self.data.x_train[:CALIBRATION_IMAGES])
        return export_model(
            self.best_model(), path, format=format, class_names=self.class_names, **kwargs
        )


def finish(
    result: SearchResult,
    tracker: Tracker,
    data: DataBundle,
    space,
    settings,
    checkpoints,
    model_in_memory: tuple[str, dict[str, float], Any] | None = None,
    search_id: str = "",
    options=None,
    budget_end: float | None = None,
    progress=None,
) -> None:
    """Build the ensemble, refit the winner, score the best model on the test split once,
    and record it on the parent run.

    ``checkpoints``: the search's top-k model files; ``model_in_memory``: the best model
    when trials ran in this process; ``options``: the trials' run options (the refit's);
    ``budget_end``: when the time budget ends (``time.time()``); ``progress``: the display.
    """
    import keras
    import numpy as np

    from automl.ensemble import build_search_ensemble  # a nested run of its own when it wins
    from automl.reports import error_line

    try:
        build_search_ensemble(
            result,
            tracker,
            k=settings.ensemble,
            checkpoints=checkpoints,
            data=data,
            search_id=search_id,
        )
    except Exception as e:  # an ensemble never costs the search its result
        log.warning("ensemble not built: %s", error_line(e))
    if settings.refit:
        from automl.refit import build_search_refit
        from automl.trial import RunOptions

        try:
            build_search_refit(
                result,
                tracker,
                data=data,
                checkpoints=checkpoints,
                search_id=search_id,
                options=options or RunOptions(objective=result.objective),
                budget_end=budget_end,
                budget_seconds=settings.time_budget * 60 if settings.time_budget else None,
                progress=progress,
            )
        except SearchError:  # no finished trial: reported below
            pass
        except Exception as e:  # nor does a refit
            log.warning("refit not done: %s", error_line(e))
    try:
        best = result.best_trial
    except SearchError:
        tracker.end_run(result.parent_run_id, "FAILED")
        raise
    held = model_in_memory
    model = held[2] if held and held[0] == best["trial_id"] else result.best_model()
    held = model_in_memory = None  # noqa: F841 (one model in memory from here on)
    from automl.data.images import predict_images

    probs = predict_images(model, data.x_test)
    y = data.y_test
    acc = float(np.mean(np.argmax(probs, axis=1) == y))
    loss = float(np.mean(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0))))
    # The val-to-test gap says how much selecting on validation flattered the model.
    gap = float(best["metrics"]["val_accuracy"]) - acc
    result.test_metrics = {"test_accuracy": acc, "test_loss": loss, "val_test_gap": gap}
    tracker.log_metrics(
        result.parent_run_id,
        {**result.test_metrics, "best_val_accuracy": best["metrics"]["val_accuracy"]},
    )
    tracker.set_tags(
        result.parent_run_id,
        {"automl.best_trial_id": best["trial_id"], "automl.best_run_id": best["run_id"]},
    )
    ckpt = checkpoints.path(best["trial_id"])  # an export already (class names inside)
    with tempfile.TemporaryDirectory() as tmp:
        if ckpt.exists():
            path = Path(shutil.copy(ckpt, Path(tmp) / "model.keras"))
        else:
            from automl.export import export_model

            path = export_model(model, Path(tmp) / "model.keras", class_names=result.class_names)
        tracker.log_artifact(result.parent_run_id, path, "best_model")
    from automl.reports import log_search_reports

    tags = log_search_reports(
        tracker,
        result.parent_run_id,
        board=result.leaderboard(),
        searched=space.searched(),
        objective=result.objective,
        model=model,
        data=data,
        register=settings.register,
    )
    from automl import search_report

    search_report.refresh(tracker, result.parent_run_id)  # the winner, test score, outcome
    tracker.end_run(result.parent_run_id, "FINISHED")
    del model
    keras.backend.clear_session()
    log.info(
        "best trial %s: val_accuracy=%.4f, test_accuracy=%.4f",
        best["trial_id"],
        best["metrics"]["val_accuracy"],
        acc,
    )
    if "automl.register_error" in tags:  # never a warning only: the caller must see it fail
        from automl.errors import RegistrationError

        raise RegistrationError(
            f"{tags['automl.register_error']}; the search finished and its runs and best model "
            f"are kept (MLflow run {result.parent_run_id}): fix the registry and run the same "
            "command again to register it",
            result=result,
        )
