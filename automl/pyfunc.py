"""The ``mlflow.pyfunc`` flavour of an automl MLflow model: a DataFrame with named columns.

MLflow's Keras flavour answers ``pyfunc.predict`` with the model's raw outputs: unnamed
class probabilities, per-label probabilities or *standardised* values, which mean nothing
without the class names or the task saved beside them. So
:func:`automl.tracking.use_task_pyfunc` points the ``python_function`` flavour of every
model automl logs or exports in the ``mlflow`` format at this module instead:
:func:`_load_pyfunc` opens the ``.keras`` file in safe mode (no pickled code) and
``predict`` returns ``task.to_frame(outputs)``: ``label, prob_cat, prob_dog``
(classification: the top class, then each class's probability), ``labels, prob_cat,
prob_dog`` (multi-label: the ``;``-joined label set at the tuned thresholds) or ``age,
price`` (regression, in the targets' units). Serving it needs ``automl`` installed next to
MLflow; the Keras flavour inside is unchanged (``mlflow.keras.load_model`` still gives the
Keras model).

    import mlflow.pyfunc
    frame = mlflow.pyfunc.load_model("exported_model_dir").predict(images)  # float32 NHWC 0-255
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

LOADER = "automl.pyfunc"


class TaskModel:
    """A Keras model and its fitted task: ``predict(images) -> pandas.DataFrame``."""

    def __init__(self, model, task):
        self.model = model
        self.task = task

    def predict(self, data: Any, params: dict | None = None):
        if hasattr(data, "to_numpy"):
            data = data.to_numpy()
        if isinstance(data, dict):  # a tensor-signature input by name
            data = next(iter(data.values()))
        x = np.asarray(data, dtype=np.float32)
        outputs = np.asarray(self.model.predict(x, verbose=0))
        return self.task.to_frame(outputs)


def _load_pyfunc(path: str) -> TaskModel:
    """What ``mlflow.pyfunc.load_model`` calls for a folder ``use_task_pyfunc`` wrote."""
    from automl.export import META_NAME, load_keras_file
    from automl.task_outputs import task_from_meta

    root = Path(path)
    if not (root / META_NAME).is_file() and (root.parent / META_NAME).is_file():
        root = root.parent
    meta = json.loads((root / META_NAME).read_text())
    files = sorted(root.rglob("*.keras"))
    return TaskModel(load_keras_file(files[0]), task_from_meta(meta))  # or its class names
