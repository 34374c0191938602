"""Score image files with an exported model, whatever its format.

>>> from automl.predict import predict
>>> predict(["cat.jpg"], "best.tflite", top_k=3)
[{'image': 'cat.jpg', 'predictions': [{'label': 'cat', 'probability': 0.93}, ...]}]

The format is told by the path: ``*.keras``, ``*.tflite``, ``*.onnx``, a directory with
``MLmodel`` (MLflow model), a directory with ``saved_model.pb`` (TF SavedModel), or an
MLflow URI (``models:/NAME/VERSION``, ``runs:/RUN_ID/PATH``). Class names come from the
artifact itself (see :mod:`automl.export`); without them the labels are ``class_0``, ...
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from automl.errors import AutoMLError, ExportError, quoted
from automl.export import (
    LABELS_SUFFIX,
    META_NAME,
    is_model_uri,
    load_keras_file,
    read_metadata,
)

FORMAT_HINT = (
    "a .keras/.tflite/.onnx file, a SavedModel or MLflow model directory, or models:/NAME/VERSION"
)


@dataclass
class Predictor:
    """A loaded model: ``predict_batch(uint8 NHWC images of one size) -> probabilities``."""

    format: str
    class_names: list[str]
    predict_batch: Callable[[np.ndarray], np.ndarray]
    input_size: int | None = None  # fixed square input (TFLite); None: any size
    # The task saved with a multi-label or regression export (None: classification).
    task: Any = None

    def label(self, i: int) -> str:
        return self.class_names[i] if i < len(self.class_names) else f"class_{i}"


def detect_format(model_path: str | Path) -> str:
    """``keras``, ``saved_model``, ``tflite``, ``onnx`` or ``mlflow`` for a model path or URI."""
    if is_model_uri(str(model_path)):
        return "mlflow"
    p = Path(model_path)
    if not p.exists():
        raise ExportError(f"model {str(p)!r} does not exist; pass {FORMAT_HINT}")
    if p.is_dir():
        if (p / "MLmodel").is_file():
            return "mlflow"
        if (p / "saved_model.pb").is_file():
            return "saved_model"
        raise ExportError(
            f"folder {str(p)!r} is neither an MLflow model (no MLmodel) nor a SavedModel "
            "(no saved_model.pb)"
        )
    fmt = {".keras": "keras", ".tflite": "tflite", ".onnx": "onnx"}.get(p.suffix.lower())
    if fmt is None:
        raise ExportError(f"cannot tell the format of {str(p)!r}; pass {FORMAT_HINT}")
    return fmt


def _sidecar_meta(path: Path) -> dict:
    side = Path(str(path) + LABELS_SUFFIX)
    if side.is_file():
        try:
            meta = json.loads(side.read_text())
        except ValueError:
            return {}
        return meta if isinstance(meta, dict) else {}
    return {}


def _sidecar_names(path: Path) -> list[str]:
    return list(_sidecar_meta(path).get("class_names", []))


def _task(meta: dict | None):
    """The multi-label or regression task saved in an export's metadata, else None."""
    from automl.tasks import task_from_config

    task = (meta or {}).get("task")
    return task_from_config(task) if isinstance(task, dict) else None


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize as the model's own ``Resizing`` layer does (float32 out)."""
    if images.shape[1:3] == (size, size):
        return images.astype(np.float32)
    import tensorflow as tf

    return tf.image.resize(images.astype(np.float32), (size, size), method="bilinear").numpy()


def _load_keras(path: Path) -> Predictor:
    model = load_keras_file(path)
    _check_image_input(model, path)
    meta = read_metadata(path)
    return Predictor(
        "keras",
        meta.get("class_names", []),
        lambda x: np.asarray(model.predict(x.astype(np.float32), verbose=0)),
        task=_task(meta),
    )


def _check_image_input(model, where) -> None:
    """Refuse a Keras model whose input is not a batch of RGB images, before any image runs."""
    shapes = [tuple(t.shape) for t in getattr(model, "inputs", None) or []]
    if len(shapes) != 1 or len(shapes[0]) != 4 or shapes[0][-1] not in (3, None):
        shown = ", ".join(str(s) for s in shapes) or "unknown"
        raise ExportError(
            f"model {quoted(str(where))} takes inputs of shape {shown}, not images "
            "(batch, height, width, 3); pass an image classifier, e.g. one `automl export` wrote"
        )


def _own_saved_model_metadata(path: Path) -> dict | None:
    """``assets/automl.json`` as automl's SavedModel export writes it, or None."""
    meta = path / "assets" / META_NAME
    try:
        data = json.loads(meta.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("class_names"), list):
        return None
    return data


def _load_saved_model(path: Path, trust_model: bool = False) -> Predictor:
    """Load a SavedModel; ``tf.saved_model.load`` runs the file's graph, which safe mode does
    not cover, so only exports signed by this user's automl load (:mod:`automl.signing`)
    unless the caller trusts the file."""
    from automl.signing import verify

    if not trust_model and not verify(path):
        raise ExportError(
            f"SavedModel {str(path)!r} is not signed by automl with your key, and loading a "
            "SavedModel runs its graph; pass --trust-model (trust_model=True) only if you "
            "trust where it came from"
        )
    meta = _own_saved_model_metadata(path)
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    fn = loaded.signatures["serving_default"]
    names = list((meta or {}).get("class_names", []))

    def run(x):
        out = fn(tf.constant(x.astype(np.uint8)))
        return out["probabilities"].numpy() if "probabilities" in out else next(iter(out.values()))

    p = Predictor("saved_model", names, run, task=_task(meta))
    p._keep = loaded  # the signature needs the loaded object alive
    return p


def _load_tflite(path: Path) -> Predictor:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    import warnings

    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice (use LiteRT)
        warnings.simplefilter("ignore", UserWarning)
        it = Interpreter(model_path=str(path))
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    size = int(inp["shape"][1])

    def run(x):
        x = _resize(x, size)
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / (scale or 1.0) + zero), info.min, info.max)
        it.resize_tensor_input(inp["index"], [len(x), size, size, 3])
        it.allocate_tensors()
        it.set_tensor(inp["index"], x.astype(inp["dtype"]))
        it.invoke()
        y = it.get_tensor(out["index"])
        if out["dtype"] != np.float32:
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y

    meta = _sidecar_meta(path)
    return Predictor("tflite", meta.get("class_names", []), run, input_size=size, task=_task(meta))


def _load_onnx(path: Path) -> Predictor:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError(
            "scoring an .onnx model needs onnxruntime; pip install onnxruntime"
        ) from None
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    names = json.loads(meta["class_names"]) if "class_names" in meta else _sidecar_names(path)
    saved = json.loads(meta["automl"]) if "automl" in meta else _sidecar_meta(path)
    inp = sess.get_inputs()[0]
    dtype = np.uint8 if inp.type == "tensor(uint8)" else np.float32
    return Predictor(
        "onnx",
        names,
        lambda x: sess.run(None, {inp.name: x.astype(dtype)})[0],
        task=_task(saved),
    )


def _load_mlflow(uri: str, tracking_uri: str | None = None) -> Predictor:
    """An MLflow model directory or ``models:/`` URI holding a Keras-flavour model.

    The Keras model inside is opened directly in safe mode; other flavours are refused,
    since a pickled Python model would run its code when loaded.
    """
    import yaml

    local = Path(uri) if Path(uri).is_dir() else _download_model(uri, tracking_uri)
    spec = yaml.safe_load((local / "MLmodel").read_text()) or {}
    flavors = sorted(spec.get("flavors") or {})
    files = sorted(local.rglob("*.keras"))
    if "keras" not in flavors or not files:
        raise ExportError(
            f"MLflow model {uri!r} has flavors {flavors} and no .keras file; automl only loads "
            "Keras-flavour models (it opens them in safe mode: a pickled model could run code)"
        )
    model = load_keras_file(files[0])
    _check_image_input(model, uri)
    meta = spec.get("metadata") or {}
    names = list(meta.get("class_names", []))
    if (not names or "task" not in meta) and (local / META_NAME).is_file():
        meta = {**json.loads((local / META_NAME).read_text()), **meta}
        names = names or list(meta.get("class_names", []))
    return Predictor(
        "mlflow",
        names,
        lambda x: np.asarray(model.predict(x.astype(np.float32), verbose=0), np.float32),
        task=_task(meta),
    )


def _download_model(uri: str, tracking_uri: str | None) -> Path:
    """A ``models:/`` or ``runs:/`` URI fetched from the project's store (never MLflow's
    default one), which must already exist: predicting creates no store."""
    from automl.tracking import check_store_exists, download_model, resolve_tracking_uri

    store = resolve_tracking_uri(tracking_uri)
    check_store_exists(store)
    try:
        return download_model(uri, store)
    except ExportError:
        raise
    except Exception as e:
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ExportError(
            f"cannot fetch model {quoted(uri)} from {quoted(store)} ({type(e).__name__}: "
            f"{quoted(detail, 200)[1:-1]}); check the name and version, or pass --tracking-uri"
        ) from None


_LOADERS = {
    "keras": _load_keras,
    "saved_model": _load_saved_model,
    "tflite": _load_tflite,
    "onnx": _load_onnx,
}


def load_predictor(
    model_path: str | Path, *, trust_model: bool = False, tracking_uri: str | None = None
) -> Predictor:
    """Load an exported model of any format; one-line :class:`ExportError` if it cannot.

    ``trust_model``: also load a SavedModel that automl did not export (its graph runs).
    ``tracking_uri``: the store a ``models:/`` or ``runs:/`` URI is read from (default as
    for :func:`automl.search`: ``$MLFLOW_TRACKING_URI``, else ``mlruns/mlflow.db``).
    """
    fmt = detect_format(model_path)
    try:
        if fmt == "mlflow":
            return _load_mlflow(str(model_path), tracking_uri)
        if fmt == "saved_model":
            return _load_saved_model(Path(model_path), trust_model=trust_model)
        return _LOADERS[fmt](Path(model_path))
    except AutoMLError:
        raise
    except Exception as e:
        detail = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        raise ExportError(
            f"cannot load {str(model_path)!r} as a {fmt} model: the file is corrupt or not a "
            f"{fmt} export ({type(e).__name__}{': ' + detail if detail else ''})"
        ) from None


def read_image(path: str | Path) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB (grayscale, palette, RGBA converted)."""
    from automl.data.imageio import UnreadableImage, open_image, to_rgb

    p = Path(path)
    if p.is_dir():
        raise ExportError(
            f"image {quoted(str(p))} is a folder; pass the image files in it "
            f"(e.g. {quoted(str(p / '*.jpg'))})"
        )
    if not p.is_file():
        raise ExportError(f"image {quoted(str(p))} does not exist")
    try:
        with open_image(p) as im:
            return to_rgb(im)
    except UnreadableImage as e:
        raise ExportError(
            f"{quoted(str(p))} is not an image PIL can read ({e}); "
            "pass PNG, JPEG, BMP, GIF, TIFF or WebP files"
        ) from None


def _as_image(item) -> tuple[str, np.ndarray]:
    if isinstance(item, (str, Path)):
        return str(item), read_image(item)
    a = np.asarray(item)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ExportError(f"an image array must be HxWx3 RGB, not shape {a.shape}")
    return "<array>", a


def predict(
    images: Sequence[str | Path | np.ndarray],
    model_path: str | Path | Predictor,
    top_k: int = 5,
    *,
    trust_model: bool = False,
    tracking_uri: str | None = None,
) -> list[dict]:
    """Top-``top_k`` labels of each image (file paths or HxWx3 uint8 arrays).

    Returns one ``{"image", "predictions": [{"label", "probability"}, ...]}`` per image,
    most probable first (classification); ``{"image", "values": {target: value}}`` in the
    targets' units (regression); ``{"image", "labels": [...], "probabilities": {label: p}}``
    (multi-label: the labels at or over their tuned thresholds, most probable first). A SavedModel loads only when this user's automl exported it (it
    carries automl's signature, see :mod:`automl.signing`) or with ``trust_model=True``:
    loading one runs its graph.
    ``tracking_uri``: the store of a ``models:/NAME/VERSION`` model (see :func:`load_predictor`).
    """
    if top_k < 1:
        raise ExportError(f"top_k={top_k} must be 1 or more")
    predictor = (
        model_path
        if isinstance(model_path, Predictor)
        else load_predictor(model_path, trust_model=trust_model, tracking_uri=tracking_uri)
    )
    results = []
    for item in images:
        name, img = _as_image(item)
        probs = np.asarray(predictor.predict_batch(img[None]))[0]
        if predictor.task is not None:
            from automl.task_outputs import result_of

            results.append(result_of(predictor.task, name, probs))
            continue
        order = np.argsort(-probs)[:top_k]
        results.append(
            {
                "image": name,
                "predictions": [
                    {"label": predictor.label(int(i)), "probability": float(probs[i])}
                    for i in order
                ],
            }
        )
    return results


def format_results(results: list[dict]) -> str:
    """Human-readable lines: ``IMAGE: label (p), label (p), ...`` (classification),
    ``IMAGE: 23.41`` (regression), ``IMAGE: cat (0.9100), dog (0.6200)`` (multi-label)."""
    from automl.task_outputs import format_result

    return "\n".join(
        f"{r['image']}: "
        + ", ".join(f"{p['label']} ({p['probability']:.4f})" for p in r["predictions"])
        if "predictions" in r
        else format_result(r)
        for r in results
    )
