"""automl: Keras 3 AutoML for image transfer learning, every trial tracked in MLflow.

import automl
result = automl.search(data="demo")  # the CLI's default search: data-aware space, 3 minutes
result.leaderboard(); result.best_model(); result.export("best.keras")
result.predict(images); result.evaluate(x, y); result.best_models(3)
automl.predict(["cat.jpg"], "best.keras"); automl.export_model(model, "m.tflite", format="tflite")
automl.retrain(result.best_trial["run_id"], full=True)
"""

from automl.backbones.registry import create_backbone, list_backbones
from automl.data import DataBundle, load_data
from automl.errors import AutoMLError
from automl.export import export_model
from automl.predict import predict
from automl.retrain import RetrainResult, retrain
from automl.search import SearchResult, search
from automl.space import SearchSpace, load_space

__all__ = [
    "AutoMLError",
    "DataBundle",
    "RetrainResult",
    "SearchResult",
    "SearchSpace",
    "create_backbone",
    "export_model",
    "list_backbones",
    "load_data",
    "load_space",
    "predict",
    "retrain",
    "search",
]
__version__ = "0.1.0"
