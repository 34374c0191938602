"""What a search leaves (its runs, leaderboard, best model), and the steps that close it.

:func:`finish` runs the closing steps in order, each a function of one :class:`Closing`
that can also run alone (AutoGluon's ``fit`` -> ``fit_weighted_ensemble`` -> ``refit_full``):
:func:`build_ensemble`, :func:`refit_winner`, :func:`score_test`, :func:`log_reports`,
:func:`check_registry`.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from automl.data import DataBundle
from automl.errors import DataError, RegistrationError, SearchError
from automl.metrics import accuracy, log_loss
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
    # The fitted task (multi-label thresholds tuned on validation by score_test); None: the
    # data's task, or a classification of class_names.
    task: Any = field(default=None, repr=False)
    # The best model, loaded once by the first predict/evaluate and kept.
    _model: Any = field(default=None, init=False, repr=False, compare=False)

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
        import keras

        if not isinstance(n, int) or n < 1:
            raise SearchError(f"n={n!r} must be a positive integer")
        board = self.leaderboard()
        done = board[board["status"].eq("FINISHED")] if not board.empty else board
        if done.empty:
            raise SearchError(f"search {self.parent_run_id} has no completed trial")
        models = []
        for run_id, trial in zip(done["run_id"][:n], done["trial"][:n]):
            ckpt = self.tracker.get_run(run_id).data.tags.get("automl.checkpoint")
            if not ckpt or not Path(ckpt).exists():
                raise SearchError(
                    f"trial {trial} (rank {len(models) + 1}) kept no model file: only the best "
                    f"keep_top_k trials keep one; ask for at most {len(models) or 1} models, or "
                    "search with a larger keep_top_k"
                )
            models.append(keras.models.load_model(ckpt, safe_mode=True, compile=False))
        return models

    def _task(self):
        """The search's fitted task, or None for a classification search."""
        from automl.tasks import is_classification

        task = self.task
        if task is None and self.data is not None:
            task = getattr(self.data, "task", None)
        return None if is_classification(task) else task

    def predict(self, images) -> list:
        """The best model's answer for each image (an (N, H, W[, C]) array, or a list of
        HxWxC arrays or image files): its class name (classification), its label set
        (multi-label, at the thresholds tuned on validation), its value(s) in the targets'
        units (regression: an (N,) array for one target, (N, targets) for several)."""
        probs = self.probabilities(images)
        task = self._task()
        if task is not None:
            return task.decode(probs)
        return [self.class_names[i] for i in np.argmax(probs, axis=1)]

    def evaluate(self, x, y) -> dict[str, float]:
        """The best model's ``accuracy`` and ``loss`` on images ``x`` and labels ``y``
        (labels as given to the search: ints or strings). Multi-label and regression:
        every score of the task (``macro_f1``, ``micro_f1``, ``auc``, ``loss``; ``mae``,
        ``rmse``, ``r2``, ``loss``), targets as given to the search."""
        task = self._task()
        if task is not None:
            return self._evaluate_task(task, x, y)
        names = [str(n) for n in self.class_names]
        index = {n: i for i, n in enumerate(names)}
        labels = np.asarray(y).reshape(-1)
        unknown = sorted({str(v) for v in labels.tolist()} - set(index))
        if unknown:
            raise DataError(
                f"labels {unknown[:5]} are not classes of this search ({', '.join(names)}); "
                "pass the labels the search was trained on"
            )
        target = np.array([index[str(v)] for v in labels.tolist()], np.int64)
        probs = self.probabilities(x)
        if len(probs) != len(target):
            raise DataError(f"x has {len(probs)} images but y has {len(target)} labels")
        return {
            "accuracy": accuracy(target, probs),
            "loss": log_loss(target, probs),
            "n": float(len(target)),
        }

    def _evaluate_task(self, task, x, y) -> dict[str, float]:
        from automl.metrics import score

        target = task.encode(y)
        outputs = self.probabilities(x)
        if len(outputs) != len(target):
            raise DataError(f"x has {len(outputs)} images but y has {len(target)} targets")
        out = {o.removeprefix("val_"): score(task, target, outputs, o) for o in task.objectives}
        return {**out, "n": float(len(target))}

    def probabilities(self, images) -> np.ndarray:
        """(N, classes) probabilities of the best model, in ``class_names`` order (the raw
        outputs: per-label probabilities for multi-label, standardised values for
        regression)."""
        imgs = _images(images)
        if not imgs:
            return np.zeros((0, len(self.class_names)), np.float32)
        if self._model is None:
            self._model = self.best_model()
        model = self._model
        if len({im.shape for im in imgs}) == 1:  # one batch; the model resizes inside
            return np.asarray(model.predict(np.stack(imgs), batch_size=64, verbose=0))
        return np.concatenate([np.asarray(model.predict(im[None], verbose=0)) for im in imgs])

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
        kwargs.setdefault("task", self._task())
        return export_model(
            self.best_model(), path, format=format, class_names=self.class_names, **kwargs
        )


def _images(images: Any) -> list[np.ndarray]:
    """Images as a list of HxWx3 uint8 arrays: an (N, H, W[, C]) array or a list of arrays
    and image files."""
    from automl.data.bundle import to_rgb_uint8
    from automl.predict import read_image

    if isinstance(images, (str, Path)):
        images = [images]
    if isinstance(images, np.ndarray):
        if images.ndim not in (3, 4):
            raise DataError(
                f"images have shape {images.shape}; pass (N, H, W) or (N, H, W, C) arrays"
            )
        return [to_rgb_uint8(im) for im in images]
    out = []
    for item in images:
        out.append(read_image(item) if isinstance(item, (str, Path)) else to_rgb_uint8(item))
    return out


# --- the steps that close a search -----------------------------------------------------------
@dataclass
class Closing:
    """What the closing steps share: the search's parts, and what each step leaves the next.

    ``checkpoints``: the search's top-k model files; ``model_in_memory``: ``(trial id, score,
    model)`` of the best trial when trials ran in this process; ``options``: the trials'
    :class:`automl.trial.RunOptions` (the refit's); ``deadline``: the search's
    :class:`automl.search.deadline.Deadline`; ``progress``: the display.
    """

    result: SearchResult
    tracker: Tracker
    data: DataBundle
    space: Any
    settings: Any
    checkpoints: Any
    model_in_memory: tuple[str, dict[str, float], Any] | None = None
    search_id: str = ""
    options: Any = None
    deadline: Any = None
    progress: Any = None
    best: dict[str, Any] | None = None  # score_test: the best trial (or ensemble, or refit)
    model: Any = None  # score_test: its model, one in memory from there on
    scored: DataBundle | None = None  # score_test: the data whose test split it scored
    test_outputs: Any = None  # score_test: the model's outputs on it (the reports reuse them)
    tags: dict[str, Any] = field(default_factory=dict)  # log_reports: what the reports tagged


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
    deadline=None,
    progress=None,
) -> None:
    """Build the ensemble, refit the winner, score the best model on the test split once,
    log the reports and close the parent run, then raise if the registry failed."""
    c = Closing(
        result,
        tracker,
        data,
        space,
        settings,
        checkpoints,
        model_in_memory,
        search_id=search_id,
        options=options,
        deadline=deadline,
        progress=progress,
    )
    for step in (build_ensemble, refit_winner, score_test, log_reports, check_registry):
        step(c)


def build_ensemble(c: Closing) -> None:
    """A greedy ensemble of the kept trials, a nested run of its own when it wins."""
    from automl.ensemble import build_search_ensemble
    from automl.reports import error_line

    try:
        build_search_ensemble(
            c.result,
            c.tracker,
            k=c.settings.ensemble,
            checkpoints=c.checkpoints,
            data=c.data,
            search_id=c.search_id,
        )
    except Exception as e:  # an ensemble never costs the search its result
        log.warning("ensemble not built: %s", error_line(e))


def refit_winner(c: Closing) -> None:
    """With ``settings.refit``: the winning trial trained again on train + validation."""
    if not c.settings.refit:
        return
    from automl.refit import build_search_refit
    from automl.reports import error_line
    from automl.trial import RunOptions

    try:
        build_search_refit(
            c.result,
            c.tracker,
            data=c.data,
            checkpoints=c.checkpoints,
            search_id=c.search_id,
            options=c.options or RunOptions(objective=c.result.objective),
            deadline=c.deadline,
            progress=c.progress,
        )
    except SearchError:  # no finished trial: reported by score_test
        pass
    except Exception as e:  # nor does a refit
        log.warning("refit not done: %s", error_line(e))


def score_test(c: Closing) -> None:
    """Score the best model on the test split once; record it and the winner on the parent
    run. No finished trial ends the parent run FAILED (a :class:`SearchError`)."""
    from automl.data.images import predict_images

    result, tracker = c.result, c.tracker
    try:
        best = result.best_trial
    except SearchError:
        tracker.end_run(result.parent_run_id, "FAILED")
        raise
    held, c.model_in_memory = c.model_in_memory, None  # one model in memory from here on
    c.best = best
    c.model = held[2] if held and held[0] == best["trial_id"] else result.best_model()
    del held
    c.scored = _test_split(c)
    probs = c.test_outputs = predict_images(c.model, c.scored.x_test)
    y = c.scored.y_test
    from automl.tasks import is_classification, task_of

    if not is_classification(task_of(c.data)):
        _score_task_test(c, best, probs)
        return
    acc, loss = accuracy(y, probs), log_loss(y, probs)
    # The val-to-test gap says how much selecting on validation flattered the model.
    gap = float(best["metrics"]["val_accuracy"]) - acc
    result.test_metrics = {"test_accuracy": acc, "test_loss": loss, "val_test_gap": gap}
    if result.objective not in ("val_accuracy", "val_loss", None):  # balanced accuracy, ...
        from automl.metrics import score

        name = result.objective.removeprefix("val_")
        result.test_metrics[f"test_{name}"] = score("classification", y, probs, result.objective)
    tracker.log_metrics(
        result.parent_run_id,
        {**result.test_metrics, "best_val_accuracy": best["metrics"]["val_accuracy"]},
    )
    tracker.set_tags(
        result.parent_run_id,
        {"automl.best_trial_id": best["trial_id"], "automl.best_run_id": best["run_id"]},
    )


def _test_split(c: Closing) -> DataBundle:
    """The data whose test split is scored: all of it, or on a large data set (trials
    validated on a capped subset) a stratified sample (:func:`automl.fidelity.test_sample`),
    its size logged (``test_images``) and said."""
    from automl import fidelity

    cap = 0
    for r in c.tracker.trial_runs(c.result.parent_run_id):
        cap = max(cap, int(float(r.data.params.get("val_images", 0) or 0)))
    if not cap:  # the trials saw the whole validation split: the whole test split
        return c.data
    scored = fidelity.test_sample(c.data, cap, seed=c.settings.seed)
    if scored is not c.data:
        n, total = len(scored.y_test), len(c.data.y_test)
        log.info(
            "test split: scored on a stratified sample of %d of its %d images (large data: "
            "the trials were validated on %d images)",
            n,
            total,
            cap,
        )
        c.tracker.log_metrics(c.result.parent_run_id, {"test_images": n})
        c.tracker.set_tags(
            c.result.parent_run_id,
            {
                "automl.test_sample": f"stratified {n} of {total} test images (seed {c.settings.seed})"
            },
        )
    return scored


def _score_task_test(c: Closing, best: dict[str, Any], outputs: np.ndarray) -> None:
    """:func:`score_test` for multi-label and regression: multi-label thresholds tuned on
    the validation split (saved with the model: the parent's ``task.json``), then every
    objective of the task on the test split (``test_macro_f1``, ``test_mae``...)."""
    from automl.metrics import score
    from automl.task_outputs import task_objective, tuned_task
    from automl.tasks import task_of

    result, tracker, data = c.result, c.tracker, c.scored
    task = tuned_task(task_of(data), c.model, data)  # the data's own task keeps its thresholds
    objective = task_objective(task, result.objective)
    test = {
        f"test_{o.removeprefix('val_')}": score(task, data.y_test, outputs, o)
        for o in task.objectives
    }
    result.test_metrics = dict(test)
    logged = dict(test)
    val = best["metrics"].get(objective)
    if val is not None and val == val:
        # The val-to-test gap says how much selecting on validation flattered the model.
        result.test_metrics["val_test_gap"] = float(val) - test[f"test_{objective[4:]}"]
        logged.update(val_test_gap=result.test_metrics["val_test_gap"])
        logged[f"best_{objective}"] = float(val)
    tracker.log_metrics(result.parent_run_id, logged)
    tracker.log_dict(result.parent_run_id, task.to_config(), "task.json")
    result.task = task
    tracker.set_tags(
        result.parent_run_id,
        {"automl.best_trial_id": best["trial_id"], "automl.best_run_id": best["run_id"]},
    )


def log_reports(c: Closing) -> None:
    """The best model file, the search's reports (the registry's model among them), and the
    parent run closed FINISHED. Needs :func:`score_test` first."""
    import keras

    from automl import search_report
    from automl.reports import log_search_reports

    result, tracker, best = c.result, c.tracker, c.best
    ckpt = c.checkpoints.path(best["trial_id"])  # an export already (class names inside)
    task = result._task()  # multi-label / regression: saved with its tuned thresholds
    with tempfile.TemporaryDirectory() as tmp:
        if ckpt.exists() and task is None:
            path = Path(shutil.copy(ckpt, Path(tmp) / "model.keras"))
        else:
            from automl.export import export_model

            path = export_model(
                c.model, Path(tmp) / "model.keras", class_names=result.class_names, task=task
            )
        tracker.log_artifact(result.parent_run_id, path, "best_model")
    c.tags = log_search_reports(
        tracker,
        result.parent_run_id,
        board=result.leaderboard(),
        searched=c.space.searched(),
        objective=result.objective,
        model=c.model,
        data=c.scored,  # the test split scored (a sample on a large data set)
        register=c.settings.register,
        task=task,
        test_outputs=c.test_outputs,
    )
    c.test_outputs = None
    search_report.refresh(tracker, result.parent_run_id)  # the winner, test score, outcome
    tracker.end_run(result.parent_run_id, "FINISHED")
    c.model = None
    keras.backend.clear_session()
    if task is not None:
        from automl.task_outputs import task_objective

        objective = task_objective(task, result.objective)
        log.info(
            "best trial %s: %s=%.4f, test_%s=%.4f",
            best["trial_id"],
            objective,
            float(best["metrics"].get(objective, float("nan"))),
            objective[4:],
            result.test_metrics[f"test_{objective[4:]}"],
        )
        return
    log.info(
        "best trial %s: val_accuracy=%.4f, test_accuracy=%.4f",
        best["trial_id"],
        best["metrics"]["val_accuracy"],
        result.test_metrics["test_accuracy"],
    )


def check_registry(c: Closing) -> None:
    """Raise :class:`RegistrationError` when registering the best model failed (the reports
    register it as they log it): never a warning only, the caller must see it fail."""
    if "automl.register_error" in c.tags:
        raise RegistrationError(
            f"{c.tags['automl.register_error']}; the search finished and its runs and best "
            f"model are kept (MLflow run {c.result.parent_run_id}): fix the registry and run the "
            "same command again to register it",
            result=c.result,
        )
