"""Tasks: what the targets are and what the model's last layer, loss and objective must be.

Three tasks are registered: ``classification`` (one class per image), ``multilabel`` (a set
of labels per image) and ``regression`` (one or more numbers per image). A task is inferred
from the targets (:func:`infer_task`) or forced (:func:`resolve_task`), learns its encoding
from the training targets (``fit``: class names, label names, mean and standard deviation),
and turns targets into what the model trains on (``encode``) and model outputs back into
what a user reads (``decode``, ``to_frame``). Its learned state round-trips through
``to_config`` / :func:`task_from_config` (saved with the model).

    from automl.tasks import resolve_task
    task = resolve_task(y)                     # or resolve_task(y, task="regression")
    print(task.describe())                     # task: regression (1 target, range 0.0-97.0)
    y_train = task.encode(y)                   # float32 (N, 1), standardised
    values = task.decode(model.predict(x))     # in the targets' own units

Inference, in this order (``y`` a NumPy array, a list, or a pandas Series/DataFrame):

* rows that are lists, tuples or sets of labels, or strings holding ``;`` or ``|``
  (``"cat;dog"``): **multilabel**;
* a 2-D array of 0/1 (or booleans) with two or more columns: **multilabel**;
* any other 2-D numeric array: **regression** with one target per column;
* strings, booleans, integers: **classification** (integer codes with more than
  :data:`MANY_VALUES` distinct values are still classes; ``describe()`` then says to pass
  ``--task regression`` for a quantity);

Messages name the CLI's ``--task X``; in Python it is the ``task="X"`` argument.
* floats: **regression**, unless they are class ids stored as floats: every value a whole
  number and the distinct values exactly 0..K-1 or 1..K with K at most :data:`MANY_VALUES`
  (``0.0, 1.0, 2.0``): classification.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np

from automl.errors import DataError, SearchError, quoted

__all__ = [
    "MANY_VALUES",
    "SEPARATORS",
    "TASKS",
    "Classification",
    "MultiLabel",
    "Regression",
    "Task",
    "get_task",
    "infer_task",
    "register_task",
    "resolve_task",
    "split_labels",
    "task_from_config",
]

# Whole-number floats with at most this many distinct values are class ids, not quantities.
MANY_VALUES = 20
# What separates the labels of one row in a single multi-label column ("cat;dog", "a|b").
SEPARATORS = (";", "|")

TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: makes ``cls`` available under ``cls.name``."""
    TASKS[cls.name] = cls
    return cls


def get_task(name: str | Task) -> Task:
    """A new, unfitted task of the given name (or ``name`` itself when it is a task)."""
    if isinstance(name, Task):
        return name
    key = str(name).strip().lower().replace("-", "").replace("_", "")
    for cls in TASKS.values():
        if key == cls.name or key in cls.aliases:
            return cls()
    raise SearchError(
        f"unknown task {quoted(name)}; use one of: {', '.join(TASKS)} (or leave it out to "
        "infer it from the targets)"
    )


# --- turning whatever a user passes into a NumPy array ------------------------------------


def _as_array(y: Any) -> np.ndarray:
    """``y`` as a NumPy array: a 1-D object array for rows of label lists, (N, k) for tables."""
    if hasattr(y, "to_numpy"):  # pandas Series / DataFrame
        y = y.to_numpy()
    if isinstance(y, np.ndarray) and y.dtype != object:
        return y
    items = list(y) if not isinstance(y, np.ndarray) else list(y.ravel()) if y.ndim == 1 else None
    if items is not None and any(_is_label_list(v) for v in items):
        out = np.empty(len(items), dtype=object)
        for i, v in enumerate(items):
            out[i] = v
        return out
    arr = np.asarray(y)
    if arr.dtype == object and arr.size:  # e.g. a list of str and int: try as numbers/strings
        try:
            return arr.astype(np.float64)
        except (TypeError, ValueError):
            pass
    return arr


def _is_label_list(v: Any) -> bool:
    return isinstance(v, (list, tuple, set, frozenset)) or (
        isinstance(v, np.ndarray) and v.ndim == 1
    )


def _squeeze(y: np.ndarray) -> np.ndarray:
    return y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y


def _show(v: Any) -> str:
    """A target value as an error message quotes it: ``'abc'``, ``0.5``, ``NaN``."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    return quoted(v)


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    try:
        return isinstance(v, (float, np.floating)) and math.isnan(v)
    except TypeError:
        return False


def _check_no_missing(y: np.ndarray) -> None:
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise DataError(
                f"the targets hold {_show(y[bad].flat[0])} at row {row}; every image needs a finite "
                "target: fill or drop the rows without one"
            )
    elif y.dtype == object:
        for i, v in enumerate(y.flat):
            if _is_missing(v):
                row = i // (y.shape[1] if y.ndim == 2 else 1)
                raise DataError(
                    f"the targets hold an empty value ({_show(v)}) at row {row}; every image needs a "
                    "target: fill or drop the rows without one"
                )


def split_labels(value: Any, separators: Iterable[str] = SEPARATORS) -> list[str]:
    """The labels of one multi-label row: ``"cat; dog"`` -> ``["cat", "dog"]``.

    A list/tuple/set is taken as is; an empty string or a missing value is the empty set.
    """
    if _is_label_list(value):
        return sorted({str(v).strip() for v in value if str(v).strip()})
    if _is_missing(value):
        return []
    text = str(value)
    for sep in separators:
        text = text.replace(sep, "\0")
    return sorted({part.strip() for part in text.split("\0") if part.strip()})


def _has_separator(y: np.ndarray) -> bool:
    if y.ndim != 1 or y.dtype.kind not in "UO":
        return False
    return any(isinstance(v, str) and any(s in v for s in SEPARATORS) for v in y)


def _is_binary_matrix(y: np.ndarray) -> bool:
    if y.ndim != 2 or y.shape[1] < 2 or y.dtype.kind not in "biuf":
        return False
    return bool(np.isin(y, (0, 1)).all())


def _whole(y: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(y)) and np.all(y == np.round(y)))


def _class_codes(y: np.ndarray) -> bool:
    """Whether floats are class ids in disguise: whole numbers 0..K-1 or 1..K, K <= MANY_VALUES."""
    if not _whole(y):
        return False
    values = np.unique(y)
    k = len(values)
    return k <= MANY_VALUES and values[0] in (0, 1) and values[-1] == values[0] + k - 1


def infer_task(y: Any) -> str:
    """The name of the task the targets ``y`` look like (see the module's docstring)."""
    arr = _as_array(y)
    if arr.ndim == 0 or len(arr) == 0:
        raise DataError("there are no targets (y is empty); pass one target per image")
    arr = _squeeze(arr)
    if arr.ndim > 2:
        raise DataError(
            f"the targets have shape {arr.shape}; expected (N,) or (N, k): one row per image"
        )
    if arr.dtype == object and arr.ndim == 1 and any(_is_label_list(v) for v in arr):
        return "multilabel"
    if _has_separator(arr):
        return "multilabel"
    if arr.ndim == 2:
        if _is_binary_matrix(arr):
            return "multilabel"
        if arr.dtype.kind in "iuf":
            return "regression"
        raise DataError(
            f"the targets have {arr.shape[1]} columns of {arr.dtype} values; several target "
            "columns must be numbers (regression) or 0/1 (one column per label, multilabel)"
        )
    if arr.dtype.kind == "f":
        _check_no_missing(arr)
        return "classification" if _class_codes(arr) else "regression"
    return "classification"


def resolve_task(y: Any, task: str | Task | None = None) -> Task:
    """The task for targets ``y``, fitted to them: ``task`` when given (``--task``), else
    inferred. Raises :class:`DataError` (one line, naming the bad value and the fix) when the
    targets fit no task or do not fit the forced one."""
    chosen = get_task(task if task is not None else infer_task(y))
    return chosen.fit(y)


def task_from_config(config: dict) -> Task:
    """The fitted task saved by ``Task.to_config()`` (e.g. next to an exported model)."""
    if not isinstance(config, dict) or "task" not in config:
        raise DataError(f"{quoted(config)} is not a saved task; expected a dict with a 'task' key")
    return TASKS[get_task(config["task"]).name].from_config(config)


# --- the tasks -----------------------------------------------------------------------------


class Task:
    """One kind of problem. Constructors store nothing; ``fit(y)`` learns the encoding
    (state ending in ``_``) and returns ``self``."""

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    activation: ClassVar[str] = ""
    loss: ClassVar[str] = ""
    # objective -> "max" or "min"; the first one is the default.
    objectives: ClassVar[dict[str, str]] = {}
    # What the ensemble averages: "probabilities" or "values".
    ensemble_average: ClassVar[str] = "probabilities"

    @property
    def default_objective(self) -> str:
        return next(iter(self.objectives))

    def direction(self, objective: str) -> str:
        """``"max"`` or ``"min"`` for one of this task's objectives."""
        return self.objectives[self.check_objective(objective)]

    def check_objective(self, objective: str | None) -> str:
        """``objective`` (or the default when None) when this task allows it, else an error."""
        if objective is None:
            return self.default_objective
        if objective not in self.objectives:
            raise SearchError(
                f"objective {quoted(objective)} does not apply to {self.name}; use one of: "
                f"{', '.join(self.objectives)} (default {self.default_objective})"
            )
        return objective

    @property
    def fitted(self) -> bool:
        return hasattr(self, "units_")

    def _need_fit(self) -> None:
        if not self.fitted:
            raise SearchError(f"the {self.name} task is not fitted; call fit(y) on the targets")

    # subclasses implement these
    def fit(self, y: Any) -> Task:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, y: Any) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, outputs: np.ndarray) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def output_names(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_frame(self, outputs: np.ndarray):  # pragma: no cover - abstract
        raise NotImplementedError

    def format_predictions(self, outputs: np.ndarray) -> list[str]:  # pragma: no cover
        """One short line per image, what ``automl predict`` prints."""
        raise NotImplementedError

    def to_config(self) -> dict:
        self._need_fit()
        return {"task": self.name}

    @classmethod
    def from_config(cls, config: dict) -> Task:  # pragma: no cover - abstract
        raise NotImplementedError

    def head(self, name: str = "head_dense"):
        """The model's last layer: a float32 ``Dense(units_, activation)``."""
        import keras

        self._need_fit()
        return keras.layers.Dense(
            self.units_, activation=self.activation, dtype="float32", name=name
        )

    def keras_loss(self):
        """The Keras loss for ``encode``'s targets and ``head``'s outputs."""
        return self.loss

    def __repr__(self) -> str:
        return f"{type(self).__name__}()" if not self.fitted else f"<{self.describe()}>"


def _n_rows(n: int) -> str:
    return f"{n} row" + ("" if n == 1 else "s")


@register_task
class Classification(Task):
    """One class per image: softmax over the classes, sparse categorical cross-entropy."""

    name = "classification"
    aliases = ("class", "classifier", "multiclass", "binary")
    activation = "softmax"
    loss = "sparse_categorical_crossentropy"
    objectives = {
        "val_accuracy": "max",
        "val_loss": "min",
        "val_balanced_accuracy": "max",
        "val_macro_f1": "max",
        "val_auc": "max",
    }

    def _labels(self, y: Any) -> np.ndarray:
        arr = _squeeze(_as_array(y))
        if arr.ndim == 1 and arr.dtype == object and any(_is_label_list(v) for v in arr):
            raise DataError(
                "the targets are sets of labels, not one class per image; use --task multilabel"
            )
        if arr.ndim != 1:
            raise DataError(
                f"the targets have shape {arr.shape}; classification takes one class per image "
                "(shape (N,)); use --task multilabel for 0/1 columns or --task regression for numbers"
            )
        if len(arr) == 0:
            raise DataError("there are no targets (y is empty); pass one target per image")
        _check_no_missing(arr)
        if arr.dtype.kind == "f":
            if not _whole(arr):
                bad = arr[arr != np.round(arr)][0]
                raise DataError(
                    f"the targets hold {_show(bad)}, which is not a class label; use "
                    "--task regression for a quantity, or pass integer or text classes"
                )
            arr = arr.astype(np.int64)
        if arr.dtype == object:
            arr = np.asarray([str(v) for v in arr])
        return arr

    @classmethod
    def of_names(cls, names: list[str], y: Any = None) -> Classification:
        """The task of data that is already encoded: classes ``names`` in this order (class
        ``i`` is ``names[i]``, as every loader numbers them), counts from the indices ``y``."""
        task = cls()
        task.classes_ = [str(n) for n in names]
        task._values_ = np.asarray(task.classes_)
        counts = np.zeros(len(task.classes_), np.int64)
        if y is not None and len(y):
            counts = np.bincount(np.asarray(y, np.int64).reshape(-1), minlength=len(names))
        task.counts_ = counts
        task.numeric_ = False
        task.units_ = len(task.classes_)
        return task

    def fit(self, y: Any) -> Classification:
        arr = self._labels(y)
        classes = np.unique(arr)
        if len(classes) < 2:
            raise DataError(
                f"the targets hold one class only ({_show(classes[0])}) in "
                f"{_n_rows(len(arr))}; a classifier needs images of at least 2 classes"
            )
        self.classes_ = [str(c) for c in classes]
        self._values_ = classes
        self.counts_ = np.bincount(np.searchsorted(classes, arr), minlength=len(classes))
        self.numeric_ = arr.dtype.kind in "iub"
        self.units_ = len(classes)
        return self

    def encode(self, y: Any) -> np.ndarray:
        """Class index per image (int64), in the order of ``classes_``."""
        self._need_fit()
        arr = self._labels(y)
        keys = np.asarray([str(v) for v in arr]) if arr.dtype.kind != "U" else arr
        names = np.asarray(self.classes_)
        idx = np.searchsorted(names, keys) if _sorted(names) else None
        if idx is None:
            lookup = {c: i for i, c in enumerate(self.classes_)}
            idx = np.asarray([lookup.get(k, -1) for k in keys])
        else:
            idx = np.clip(idx, 0, len(names) - 1)
            idx = np.where(names[idx] == keys, idx, -1)
        if (idx < 0).any():
            bad = keys[idx < 0][0]
            raise DataError(
                f"class {quoted(str(bad))} was not among the training classes "
                f"({', '.join(self.classes_[:10])}{'...' if len(self.classes_) > 10 else ''})"
            )
        return idx.astype(np.int64)

    def decode(self, outputs: np.ndarray) -> np.ndarray:
        """The predicted class name per image (argmax of the probabilities)."""
        self._need_fit()
        probs = np.asarray(outputs)
        return np.asarray(self.classes_)[np.argmax(probs, axis=-1)]

    def output_names(self) -> list[str]:
        self._need_fit()
        return [f"prob_{c}" for c in self.classes_]

    def to_frame(self, outputs: np.ndarray):
        """A DataFrame: ``label`` then ``prob_<class>`` per class."""
        import pandas as pd

        probs = np.asarray(outputs, dtype=np.float64)
        frame = pd.DataFrame(probs, columns=self.output_names())
        frame.insert(0, "label", self.decode(probs))
        return frame

    def format_predictions(self, outputs: np.ndarray) -> list[str]:
        """``"cat (0.93)"`` per image."""
        probs = np.asarray(outputs, dtype=np.float64)
        best = np.argmax(probs, axis=-1)
        return [f"{self.classes_[j]} ({probs[i, j]:.2f})" for i, j in enumerate(best)]

    def describe(self) -> str:
        self._need_fit()
        k = len(self.classes_)
        counts = self.counts_
        text = f"task: classification ({k} classes, {int(counts.sum())} images"
        if counts.min() > 0 and counts.max() > 3 * counts.min():
            text += f", imbalanced {int(counts.max())}:{int(counts.min())}"
        text += ")"
        if self.numeric_ and k > MANY_VALUES:
            text += f"; {k} distinct numbers: pass --task regression if they are a quantity"
        return text

    def to_config(self) -> dict:
        return {**super().to_config(), "classes": list(self.classes_)}

    @classmethod
    def from_config(cls, config: dict) -> Classification:
        task = cls()
        task.classes_ = list(config["classes"])
        task._values_ = np.asarray(task.classes_)
        task.counts_ = np.zeros(len(task.classes_), np.int64)
        task.numeric_ = False
        task.units_ = len(task.classes_)
        return task


def _sorted(names: np.ndarray) -> bool:
    return bool(np.all(names[:-1] <= names[1:])) if len(names) > 1 else True


@register_task
class MultiLabel(Task):
    """Any set of labels per image: one sigmoid per label, binary cross-entropy; a label is
    predicted when its probability reaches its threshold (``thresholds_``, 0.5 until tuned
    on validation with :meth:`set_thresholds`)."""

    name = "multilabel"
    aliases = ("multilabels", "tags")
    activation = "sigmoid"
    loss = "binary_crossentropy"
    objectives = {"val_macro_f1": "max", "val_micro_f1": "max", "val_auc": "max", "val_loss": "min"}

    def __init__(self, labels: list[str] | None = None):
        self.labels = labels

    def _rows(self, y: Any) -> tuple[np.ndarray | None, list[list[str]] | None]:
        """Either a 0/1 matrix (N, K) or a list of label lists."""
        arr = _as_array(y)
        if len(arr) == 0:
            raise DataError("there are no targets (y is empty); pass one target per image")
        if arr.ndim == 2 and arr.shape[1] >= 1 and arr.dtype.kind in "biuf":
            _check_no_missing(arr)
            if not np.isin(arr, (0, 1)).all():
                bad = arr[~np.isin(arr, (0, 1))].flat[0]
                raise DataError(
                    f"a multi-label column holds {_show(bad)}; one column per label takes 0 or "
                    "1 only (use --task regression for numbers)"
                )
            return arr.astype(np.uint8), None
        arr = _squeeze(arr)
        if arr.ndim != 1:
            raise DataError(
                f"the targets have shape {arr.shape}; multi-label takes a 0/1 matrix (N, labels) "
                "or one set of labels per image"
            )
        return None, [split_labels(v) for v in arr]

    def fit(self, y: Any) -> MultiLabel:
        matrix, sets = self._rows(y)
        if matrix is not None:
            k = matrix.shape[1]
            names = list(self.labels) if self.labels is not None else [str(i) for i in range(k)]
            if len(names) != k:
                raise DataError(
                    f"{len(names)} label names for {k} label columns; pass one name per column"
                )
            self.labels_ = names
            counts = matrix.sum(axis=0)
        else:
            found = sorted({lbl for row in sets for lbl in row})
            self.labels_ = list(self.labels) if self.labels is not None else found
            counts = self._matrix(sets).sum(axis=0)
        n = len(matrix) if matrix is not None else len(sets)
        if counts.sum() == 0:
            raise DataError(
                f"no image has any label ({_n_rows(n)} with an empty label set); multi-label "
                "needs at least one label on some images"
            )
        if len(self.labels_) < 1:  # pragma: no cover - counts.sum() == 0 above
            raise DataError("no labels found")
        self.counts_ = np.asarray(counts, np.int64)
        self.n_ = n
        self.units_ = len(self.labels_)
        self.thresholds_ = np.full(self.units_, 0.5)
        return self

    def _matrix(self, sets: list[list[str]]) -> np.ndarray:
        index = {lbl: i for i, lbl in enumerate(self.labels_)}
        out = np.zeros((len(sets), len(self.labels_)), np.uint8)
        for r, row in enumerate(sets):
            for lbl in row:
                if lbl not in index:
                    raise DataError(
                        f"label {quoted(lbl)} (row {r}) was not among the training labels "
                        f"({', '.join(self.labels_[:10])}{'...' if len(self.labels_) > 10 else ''})"
                    )
                out[r, index[lbl]] = 1
        return out

    def encode(self, y: Any) -> np.ndarray:
        """The 0/1 matrix (N, labels), float32, columns in the order of ``labels_``."""
        self._need_fit()
        matrix, sets = self._rows(y)
        if matrix is not None:
            if matrix.shape[1] != self.units_:
                raise DataError(
                    f"the targets have {matrix.shape[1]} label columns; the task has "
                    f"{self.units_} ({', '.join(self.labels_[:10])})"
                )
            return matrix.astype(np.float32)
        return self._matrix(sets).astype(np.float32)

    def set_thresholds(self, thresholds: Any) -> MultiLabel:
        """Use these per-label decision thresholds (e.g. ``metrics.tune_thresholds``)."""
        self._need_fit()
        t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
        if t.shape != (self.units_,) or not np.all((t >= 0) & (t <= 1)):
            raise SearchError(
                f"thresholds {quoted(t.tolist())} do not fit {self.units_} labels; pass one "
                "value in [0, 1] per label"
            )
        self.thresholds_ = t
        return self

    def predict_matrix(self, outputs: np.ndarray) -> np.ndarray:
        """0/1 decisions (N, labels): probability >= the label's threshold."""
        self._need_fit()
        return (np.asarray(outputs) >= self.thresholds_).astype(np.uint8)

    def decode(self, outputs: np.ndarray) -> list[list[str]]:
        """The predicted label set of each image."""
        names = self.labels_
        return [[names[j] for j in np.flatnonzero(row)] for row in self.predict_matrix(outputs)]

    def output_names(self) -> list[str]:
        self._need_fit()
        return [f"prob_{lbl}" for lbl in self.labels_]

    def to_frame(self, outputs: np.ndarray):
        """A DataFrame: ``labels`` (``;``-joined) then ``prob_<label>`` per label."""
        import pandas as pd

        probs = np.asarray(outputs, dtype=np.float64)
        frame = pd.DataFrame(probs, columns=self.output_names())
        frame.insert(0, "labels", [";".join(row) for row in self.decode(probs)])
        return frame

    def format_predictions(self, outputs: np.ndarray) -> list[str]:
        """``"cat (0.91), dog (0.62)"`` per image (labels at or over their threshold, most
        probable first), ``"(no label)"`` when none is."""
        probs = np.asarray(outputs, dtype=np.float64)
        keep = self.predict_matrix(probs)
        lines = []
        for row, on in zip(probs, keep):
            idx = [j for j in np.argsort(-row, kind="mergesort") if on[j]]
            lines.append(
                ", ".join(f"{self.labels_[j]} ({row[j]:.2f})" for j in idx) or "(no label)"
            )
        return lines

    def describe(self) -> str:
        self._need_fit()
        per_image = self.counts_.sum() / max(self.n_, 1)
        return (
            f"task: multilabel ({self.units_} labels, {self.n_} images, "
            f"{per_image:.1f} labels per image)"
        )

    def to_config(self) -> dict:
        return {
            **super().to_config(),
            "labels": list(self.labels_),
            "thresholds": [float(t) for t in self.thresholds_],
        }

    @classmethod
    def from_config(cls, config: dict) -> MultiLabel:
        task = cls()
        task.labels_ = list(config["labels"])
        task.units_ = len(task.labels_)
        task.counts_ = np.zeros(task.units_, np.int64)
        task.n_ = 0
        task.thresholds_ = np.asarray(config.get("thresholds", [0.5] * task.units_), float)
        return task


@register_task
class Regression(Task):
    """One or more numbers per image: a linear output per target, trained on standardised
    targets (mean 0, std 1, per column) with mean squared error; ``decode`` un-standardises.
    ``fit`` learns the scale from all the targets it is given; a data bundle then learns it
    again from its training split only (:meth:`fit_scale`), and that is the scale saved
    with the model and used by every output."""

    name = "regression"
    aliases = ("regressor", "regress")
    activation = "linear"
    loss = "mean_squared_error"
    objectives = {"val_mae": "min", "val_rmse": "min", "val_r2": "max", "val_loss": "min"}
    ensemble_average = "values"

    def __init__(self, target_names: list[str] | None = None):
        self.target_names = target_names

    def _values(self, y: Any) -> np.ndarray:
        arr = _as_array(y)
        if len(arr) == 0:
            raise DataError("there are no targets (y is empty); pass one target per image")
        if arr.ndim == 1 and arr.dtype == object and any(_is_label_list(v) for v in arr):
            raise DataError("the targets are sets of labels, not numbers; use --task multilabel")
        if arr.ndim > 2:
            raise DataError(
                f"the targets have shape {arr.shape}; regression takes (N,) or (N, targets)"
            )
        if arr.dtype.kind not in "biuf":
            flat = arr.reshape(-1)
            for i, v in enumerate(flat):
                if _is_missing(v):
                    continue
                try:
                    float(v)
                except (TypeError, ValueError):
                    raise DataError(
                        f"the targets hold {_show(v)} (row {i // (arr.shape[1] if arr.ndim == 2 else 1)}), "
                        "which is not a number; a regression target must be numeric "
                        "(fix the value, or use --task classification for classes)"
                    ) from None
            arr = np.asarray([float("nan") if _is_missing(v) else float(v) for v in flat]).reshape(
                arr.shape
            )
        arr = arr.astype(np.float64)
        _check_no_missing(arr)
        return arr.reshape(len(arr), -1)

    def fit(self, y: Any) -> Regression:
        arr = self._values(y)
        self.one_d_ = _squeeze(_as_array(y)).ndim == 1
        std = arr.std(axis=0)
        k = arr.shape[1]
        names = list(self.target_names) if self.target_names else None
        if names is None:
            names = ["value"] if k == 1 else [f"value_{i}" for i in range(k)]
        if len(names) != k:
            raise DataError(
                f"{len(names)} target names for {k} target columns; pass one per column"
            )
        if (std == 0).any():
            j = int(np.argwhere(std == 0)[0][0])
            raise DataError(
                f"the target {quoted(names[j])} has one value only ({_show(arr[0, j])}) in "
                f"{_n_rows(len(arr))}; there is nothing to learn: check the column"
            )
        self.target_names_ = names
        self.mean_ = arr.mean(axis=0)
        self.std_ = std
        self.min_ = arr.min(axis=0)
        self.max_ = arr.max(axis=0)
        self.n_ = len(arr)
        self.units_ = k
        return self

    def fit_scale(self, y: Any, rows: Any = None) -> Regression:
        """Learn the standardisation (``mean_``, ``std_``) from these targets only (their
        ``rows`` when given): the training rows, so that validation and test values never
        shape what the model trains on. ``describe``'s range stays that of every target
        ``fit`` saw. A column constant on these rows keeps a scale of 1 (only centred)."""
        self._need_fit()
        arr = self._values(y)
        if rows is not None:
            arr = arr[np.asarray(rows)]
        if arr.shape[1] != self.units_ or len(arr) == 0:
            raise DataError(
                f"the targets have {arr.shape[1]} columns and {_n_rows(len(arr))}; the scale "
                f"is learned from at least one row of {self.units_} target(s)"
            )
        std = arr.std(axis=0)
        self.mean_ = arr.mean(axis=0)
        self.std_ = np.where(std > 0, std, 1.0)
        return self

    def encode(self, y: Any) -> np.ndarray:
        """Standardised targets, float32 (N, targets)."""
        self._need_fit()
        arr = self._values(y)
        if arr.shape[1] != self.units_:
            raise DataError(
                f"the targets have {arr.shape[1]} columns; the task has {self.units_} "
                f"({', '.join(self.target_names_)})"
            )
        return ((arr - self.mean_) / self.std_).astype(np.float32)

    def decode(self, outputs: np.ndarray) -> np.ndarray:
        """Model outputs in the targets' units: (N,) for one target given as (N,), else (N, k)."""
        self._need_fit()
        out = np.asarray(outputs, dtype=np.float64).reshape(-1, self.units_)
        values = out * self.std_ + self.mean_
        return values.reshape(-1) if self.one_d_ and self.units_ == 1 else values

    def output_names(self) -> list[str]:
        self._need_fit()
        return list(self.target_names_)

    def to_frame(self, outputs: np.ndarray):
        """A DataFrame with one column per target, in the targets' units."""
        import pandas as pd

        values = self.decode(outputs).reshape(-1, self.units_)
        return pd.DataFrame(values, columns=self.output_names())

    def format_predictions(self, outputs: np.ndarray) -> list[str]:
        """``"23.41"`` per image (one target), ``"age 23.41, price 1.2e+03"`` (several)."""
        values = self.decode(outputs).reshape(-1, self.units_)
        if self.units_ == 1:
            return [f"{v:.4g}" for v in values[:, 0]]
        return [
            ", ".join(f"{n} {v:.4g}" for n, v in zip(self.target_names_, row)) for row in values
        ]

    def describe(self) -> str:
        self._need_fit()
        k = self.units_
        if k == 1:
            rng = f"range {_span(self.min_[0], self.max_[0])}"
        else:
            rng = ", ".join(
                f"{n} {_span(lo, hi)}"
                for n, lo, hi in zip(self.target_names_, self.min_, self.max_)
            )
        return f"task: regression ({k} target{'s' if k > 1 else ''}, {rng})"

    def to_config(self) -> dict:
        return {
            **super().to_config(),
            "target_names": list(self.target_names_),
            "mean": [float(v) for v in self.mean_],
            "std": [float(v) for v in self.std_],
            "min": [float(v) for v in self.min_],
            "max": [float(v) for v in self.max_],
            "one_d": bool(self.one_d_),
        }

    @classmethod
    def from_config(cls, config: dict) -> Regression:
        task = cls()
        task.target_names_ = list(config["target_names"])
        task.mean_ = np.asarray(config["mean"], float)
        task.std_ = np.asarray(config["std"], float)
        task.min_ = np.asarray(config.get("min", config["mean"]), float)
        task.max_ = np.asarray(config.get("max", config["mean"]), float)
        task.one_d_ = bool(config.get("one_d", True))
        task.n_ = 0
        task.units_ = len(task.target_names_)
        return task


def _num(v: float) -> str:
    """A number for a one-line summary: ``97.0``, ``0.25``, ``-29.98``, ``1.235e+05``."""
    v = float(v)
    if v == round(v) and abs(v) < 1e6:
        return f"{v:.1f}"
    return f"{v:.4g}"


def _span(lo: float, hi: float) -> str:
    """``0.0-97.0``; ``-30.0 to 30.0`` when a minus sign would make the dash ambiguous."""
    return f"{_num(lo)} to {_num(hi)}" if lo < 0 or hi < 0 else f"{_num(lo)}-{_num(hi)}"


def is_classification(task: Task | None) -> bool:
    """Whether ``task`` is classification (None: a bundle from before tasks, classification)."""
    return task is None or task.name == Classification.name


def task_of(data: Any) -> Task:
    """``data.task`` (a fitted task), or the classification of ``data.class_names``."""
    task = getattr(data, "task", None)
    return task if task is not None else Classification.of_names(list(data.class_names))
