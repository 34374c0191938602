"""What a finished search's result can do with its models: predict, evaluate, the top n.

The methods of :class:`automl.search.SearchResult` call these; the best model is loaded once
per result and kept on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from automl.errors import DataError, SearchError


def _best_model(result):
    model = result.__dict__.get("_best_model")
    if model is None:
        model = result.best_model()
        result.__dict__["_best_model"] = model
    return model


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


def probabilities(result, images: Any) -> np.ndarray:
    """(N, classes) probabilities of the best model, in ``result.class_names`` order."""
    imgs = _images(images)
    if not imgs:
        return np.zeros((0, len(result.class_names)), np.float32)
    model = _best_model(result)
    if len({im.shape for im in imgs}) == 1:  # one batch; the model resizes inside
        return np.asarray(model.predict(np.stack(imgs), batch_size=64, verbose=0))
    return np.concatenate([np.asarray(model.predict(im[None], verbose=0)) for im in imgs])


def predict_classes(result, images: Any) -> list[str]:
    """The best model's class name for each image."""
    probs = probabilities(result, images)
    return [result.class_names[i] for i in np.argmax(probs, axis=1)]


def evaluate(result, x: Any, y: Any) -> dict[str, float]:
    """``accuracy`` and ``loss`` (cross-entropy) of the best model on ``x`` with labels ``y``."""
    names = [str(n) for n in result.class_names]
    index = {n: i for i, n in enumerate(names)}
    labels = np.asarray(y).reshape(-1)
    unknown = sorted({str(v) for v in labels.tolist()} - set(index))
    if unknown:
        raise DataError(
            f"labels {unknown[:5]} are not classes of this search ({', '.join(names)}); "
            "pass the labels the search was trained on"
        )
    target = np.array([index[str(v)] for v in labels.tolist()], np.int64)
    probs = probabilities(result, x)
    if len(probs) != len(target):
        raise DataError(f"x has {len(probs)} images but y has {len(target)} labels")
    picked = np.clip(probs[np.arange(len(target)), target], 1e-7, 1.0)
    return {
        "accuracy": float(np.mean(np.argmax(probs, axis=1) == target)),
        "loss": float(np.mean(-np.log(picked))),
        "n": float(len(target)),
    }


def best_models(result, n: int = 3) -> list:
    """The best ``n`` finished trials' models, best first (each at its best epoch)."""
    import keras

    if not isinstance(n, int) or n < 1:
        raise SearchError(f"n={n!r} must be a positive integer")
    board = result.leaderboard()
    done = board[board["status"].eq("FINISHED")] if not board.empty else board
    if done.empty:
        raise SearchError(f"search {result.parent_run_id} has no completed trial")
    models = []
    for run_id, trial in zip(done["run_id"][:n], done["trial"][:n]):
        ckpt = result.tracker.client.get_run(run_id).data.tags.get("automl.checkpoint")
        if not ckpt or not Path(ckpt).exists():
            raise SearchError(
                f"trial {trial} (rank {len(models) + 1}) kept no model file: only the best "
                f"keep_top_k trials keep one; ask for at most {len(models) or 1} models, or "
                "search with a larger keep_top_k"
            )
        models.append(keras.models.load_model(ckpt, safe_mode=True, compile=False))
    return models
