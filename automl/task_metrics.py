"""A Keras callback that adds a task's validation objectives to each epoch's logs.

Keras computes ``val_loss`` (and ``val_accuracy`` when compiled with it) by itself; the
objectives it cannot compute per batch (``val_balanced_accuracy``, ``val_macro_f1``,
``val_micro_f1``, ``val_auc``, ``val_mae`` in the targets' units, ``val_rmse``, ``val_r2``)
are computed here from one prediction of the validation set at the end of each epoch, with
:func:`automl.metrics.score`, and written into ``logs`` so that every later callback (KerasTuner's
objective, early stopping, the MLflow per-epoch logger) sees them. Put it first in the list.

    cb = TaskMetrics(task, x_val, y_val_encoded)   # or TaskMetrics(task, val_dataset)
    model.fit(..., callbacks=[cb, *others])
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from automl.metrics import score
from automl.tasks import Task

__all__ = ["TaskMetrics"]


class TaskMetrics(keras.callbacks.Callback):
    """Adds ``task``'s objectives (all of them, or ``objectives``) to the epoch's logs.

    Args:
        task: a fitted task (regression errors are un-standardised; multi-label decisions use
            its ``thresholds_``, 0.5 until tuned after training).
        x: validation images (an array), or a ``tf.data.Dataset`` of ``(images, targets)``.
        y: the encoded validation targets (``task.encode``); None when ``x`` is a dataset.
        objectives: the names to add (default: every objective of the task Keras lacks).
    """

    def __init__(self, task: Task, x: Any, y: Any = None, objectives: list[str] | None = None):
        super().__init__()
        self.task = task
        self.x = x
        self.y = y
        self.objectives = objectives

    def _data(self):
        if self.y is not None:
            return self.x, np.asarray(self.y)
        xs, ys = [], []
        for xb, yb in self.x:
            xs.append(np.asarray(xb))
            ys.append(np.asarray(yb))
        self.x, self.y = np.concatenate(xs), np.concatenate(ys)  # read the dataset once
        return self.x, self.y

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None:
            return
        x, y = self._data()
        names = self.objectives or [o for o in self.task.objectives if o not in logs]
        if not names:
            return
        outputs = np.asarray(self.model.predict(x, verbose=0))
        for name in names:
            logs[name] = score(self.task, y, outputs, name)
