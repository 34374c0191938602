"""Load the best model of a search and export it to the formats people deploy.

Every export carries the class names and the preprocessing (resizing and the backbone's
normalisation are layers of the model), so a user needs nothing else to go from an image
file to a label. ``automl predict IMAGE --model PATH`` loads any of them.

=============  ==================================  ==================  ==========================
format         what is written at ``path``          input               class names
=============  ==================================  ==================  ==========================
``keras``      ``model.keras`` (safe-mode load,     float/uint8 RGB     ``automl.json`` inside the
               built-in layers only)                0-255, any HxW      zip
``saved_model`` TF SavedModel directory; endpoint   uint8 RGB 0-255,    ``assets/automl.json`` and
               ``serving_default`` (TF Serving)     ``[N, H, W, 3]``    ``assets/labels.txt``
               returns ``{"probabilities"}``        any N, H, W
``tflite``     ``model.tflite`` (float32; or        float32 0-255       ``model.tflite.labels.json``
               ``quantize="float16"``/``"int8"``)   ``[N, S, S, 3]``;   (sidecar)
                                                    int8: uint8 0-255
``onnx``       ``model.onnx`` (tf2onnx through      uint8 RGB 0-255,    model metadata
               Keras' exporter), onnxruntime        ``[N, H, W, 3]``    ``class_names`` and
                                                                        ``model.onnx.labels.json``
``mlflow``     MLflow model directory (keras        float32 RGB 0-255   ``metadata.class_names``
               flavor + pyfunc), signature and      ``[N, H, W, 3]``    in ``MLmodel`` and
               input example                                            ``automl.json``
=============  ==================================  ==================  ==========================

``S`` is the image size of the best trial (the model's ``resize`` layer): TFLite takes a
fixed ``S x S`` input (resize an image to it with bilinear interpolation first, as
:func:`automl.predict.predict` does); every other format resizes inside the model. The
int8 TFLite model is fully integer (``TFLITE_BUILTINS_INT8``), takes uint8 pixels
(scale 1, zero point 0) and returns uint8 probabilities (dequantize with the output's
scale / zero point); it is calibrated on up to 200 training images.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from automl.errors import (
    ExportError,
    NoCompletedSearchError,
    SearchError,
    StorageError,
    quoted,
)
from automl.tracking import Tracker

FORMATS = ("keras", "saved_model", "tflite", "onnx", "mlflow")
QUANTIZE = ("float16", "int8")
META_NAME = "automl.json"
LABELS_SUFFIX = ".labels.json"
INPUT_NOTE = "RGB uint8/float 0-255, any size"
CALIBRATION_IMAGES = 200


def load_best_model(tracker: Tracker, parent_id: str):
    """The best trial's model of search ``parent_id`` at its best epoch."""
    from automl.tracking import best_trial

    try:
        best = best_trial(tracker, parent_id)
    except SearchError as e:
        raise NoCompletedSearchError(str(e)) from None
    ckpt = tracker.run_tags(best["run_id"]).get("automl.checkpoint")
    if ckpt and Path(ckpt).exists():
        return load_keras_file(ckpt)
    return load_keras_file(tracker.download(parent_id, "best_model/model.keras"))


def load_keras_file(path: str | Path):
    """A ``.keras`` file loaded in Keras's safe mode; one that holds Python code (a Lambda
    layer, a custom function) is a one-line :class:`ExportError`, never loaded."""
    import keras

    try:
        return keras.models.load_model(path, safe_mode=True, compile=False)
    except ValueError as e:
        if "arbitrary code execution" not in str(e) and "safe_mode" not in str(e):
            raise
        raise ExportError(
            f"model {quoted(str(path))} holds Python code (a Lambda layer or a custom "
            "function), which automl never loads: it opens models in Keras safe mode, since "
            "loading that code would run it; export the model without Lambda layers, "
            "as `automl export` does"
        ) from None


def load_run_model(tracker: Tracker, run_id: str):
    """The model of a run: a search (its best model) or a trial (its checkpoint, if kept)."""

    if is_model_uri(run_id):
        return load_uri_model(run_id, tracker.uri if tracker else None)[0]
    try:
        run = tracker.get_run(run_id)
    except Exception:
        raise ExportError(
            f"run id {run_id!r} is not in {tracker.uri}; copy a run id from `automl leaderboard`"
        ) from None
    if run.data.tags.get("automl.kind") == "search":
        return load_best_model(tracker, run_id)
    ckpt = run.data.tags.get("automl.checkpoint")
    if run.info.status != "FINISHED":
        raise ExportError(
            f"trial run {run_id} is {run.info.status}, not FINISHED; export a finished trial"
        )
    if not ckpt or not Path(ckpt).exists():
        raise ExportError(
            f"trial run {run_id} kept no model file (only the best --keep-top-k trials keep one); "
            "export the search's best model or retrain that trial"
        )
    return load_keras_file(ckpt)


def class_names_of(tracker: Tracker, run_id: str) -> list[str]:
    """The class names of a search or trial run (its search's ``class_names.json``).

    Raises :class:`ExportError` when they cannot be read: an export never loses its labels
    silently.
    """
    if is_model_uri(run_id):
        return load_uri_model(run_id, tracker.uri if tracker else None)[1]
    parent = tracker.run_tags(run_id).get("mlflow.parentRunId") or run_id
    try:
        names = json.loads(tracker.download(parent, "class_names.json").read_text())["class_names"]
    except Exception as e:
        raise ExportError(
            f"the class names of run {run_id} cannot be read from search run {parent}'s "
            f"class_names.json ({type(e).__name__}); export a run of a completed automl search"
        ) from None
    if not isinstance(names, list) or not names:
        raise ExportError(
            f"search run {parent}'s class_names.json holds no class names; export a run of a "
            "completed automl search"
        )
    return [str(n) for n in names]


def task_of_run(tracker: Tracker, run_id: str):
    """The fitted task of a search or trial run: its search's ``task.json`` (multi-label
    thresholds tuned after the search), else the one saved in its model file; ``None`` for
    a classification search (its class names are its task)."""
    from automl.task_outputs import task_from_meta

    if is_model_uri(run_id):
        load_uri_model(run_id, tracker.uri if tracker else None)
        return _URI_TASKS.get(run_id)
    parent = tracker.run_tags(run_id).get("mlflow.parentRunId") or run_id
    try:
        saved = json.loads(tracker.download(parent, "task.json").read_text())
    except Exception:
        saved = None
    if isinstance(saved, dict) and "task" in saved:
        return task_from_meta({"task": saved})
    ckpt = tracker.run_tags(run_id).get("automl.checkpoint")
    meta = read_metadata(ckpt) if ckpt and Path(ckpt).is_file() else {}
    return task_from_meta(meta) if "task" in meta else None


# --- MLflow model URIs (models:/NAME/VERSION, runs:/ID/PATH) ------------------------------
def is_model_uri(value: str | None) -> bool:
    return bool(value) and str(value).startswith(("models:/", "runs:/"))


_URI_CACHE: dict[str, tuple[object, list[str]]] = {}
_URI_TASKS: dict[str, object] = {}  # the multi-label / regression task saved with a URI's model


def load_uri_model(uri: str, tracking_uri: str | None = None):
    """``(keras.Model, class_names)`` of an MLflow model URI such as ``models:/NAME/1``.

    The model may be an MLflow keras-flavor model (as ``format="mlflow"`` writes) or any
    artifact folder holding a ``.keras`` file.
    """
    if uri in _URI_CACHE:
        return _URI_CACHE[uri]
    import keras

    from automl.tracking import download_model

    try:
        local = download_model(uri, tracking_uri)
    except Exception as e:
        raise ExportError(
            f"cannot fetch model {uri!r} from the MLflow registry/store "
            f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})"
        ) from None
    files = [local] if local.is_file() else sorted(local.rglob("*.keras"))
    files = [f for f in files if f.suffix == ".keras"]
    if not files:
        raise ExportError(f"model {uri!r} holds no .keras file; register an automl export")
    model = keras.models.load_model(files[0], safe_mode=True, compile=False)
    saved = read_metadata(files[0])
    names = saved.get("class_names") or []
    for meta in ([local / META_NAME] if local.is_dir() else []) + [files[0].parent / META_NAME]:
        if (not names or "task" not in saved) and meta.is_file():
            saved = {**json.loads(meta.read_text()), **saved}
            names = names or saved.get("class_names", [])
    if "task" in saved:
        from automl.tasks import task_from_config

        _URI_TASKS[uri] = task_from_config(saved["task"])
    if not names and local.is_dir() and (local / "MLmodel").is_file():
        import yaml

        names = (yaml.safe_load((local / "MLmodel").read_text()).get("metadata") or {}).get(
            "class_names", []
        )
    _URI_CACHE[uri] = (model, list(names))
    return _URI_CACHE[uri]


def read_metadata(path: str | Path) -> dict:
    """The automl metadata (class names, ...) stored inside a ``.keras`` export, or {}."""
    try:
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read(META_NAME)) if META_NAME in z.namelist() else {}
    except (zipfile.BadZipFile, KeyError, OSError):
        return {}


def image_size_of(model) -> int | None:
    """The square size the model resizes its input to (its ``resize`` layer), if any.

    An ensemble has no ``resize`` layer of its own: its largest member's size.
    """
    try:
        layer = model.get_layer("resize")
    except ValueError:
        sizes = [image_size_of(m) for m in getattr(model, "layers", []) if hasattr(m, "layers")]
        sizes = [s for s in sizes if s]
        return max(sizes) if sizes else None
    return int(layer.height)


def _metadata(model, class_names, **extra) -> dict:
    return {
        "class_names": list(class_names or []),
        "input": INPUT_NOTE,
        "image_size": image_size_of(model),
        **extra,
    }


def check_export_args(
    path: str | Path, *, format: str, force: bool = False, quantize: str | None = None
) -> str | None:
    """Refuse a bad format, quantization or output path before any model is loaded.

    Returns the quantization (``None`` for float32).
    """
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose one of: {', '.join(FORMATS)}")
    if quantize not in (None, "none", *QUANTIZE):
        raise ExportError(
            f"unknown quantization {quantize!r}; choose one of: none, {', '.join(QUANTIZE)}"
        )
    quantize = None if quantize == "none" else quantize
    if quantize and format != "tflite":
        raise ExportError(f"--quantize {quantize} applies to --format tflite only, not {format}")
    path = Path(path)
    suffix = {"keras": ".keras", "tflite": ".tflite", "onnx": ".onnx"}.get(format)
    if suffix and path.suffix != suffix:
        raise ExportError(f"output {str(path)!r} must end in {suffix} for --format {format}")
    try:
        if path.name not in ("", ".", ".."):  # (the current folder is refused below)
            reclaim(path, format)  # what an interrupted export left beside the output
    except OSError as e:
        from automl.paths import io_error_line, is_storage_error

        if not is_storage_error(e):
            raise
        raise StorageError(f"{io_error_line(e, path.parent)}; nothing was exported") from None
    if path.exists() or path.is_symlink():
        if not force:
            raise ExportError(
                f"output {str(path)!r} already exists; pass --force to overwrite it or choose "
                "another path"
            )
        if not is_own_export(path, format):
            raise ExportError(
                f"output {str(path)!r} exists and is not an automl {format} export, so --force "
                "will not replace it (nothing was deleted); choose another path"
            )
    _check_writable_folder(path)
    return quantize


def _check_writable_folder(path: Path) -> None:
    """Refuse an output whose folder cannot be written (read-only, immutable, not a folder),
    before any model is loaded: one line naming the path, not a traceback after the work."""
    import tempfile

    from automl.errors import quoted

    folder = path.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # export_model creates the missing folders below this one
    if not folder.is_dir():
        raise ExportError(
            f"cannot write output {quoted(str(path))}: {quoted(str(folder))} is not a folder; "
            "choose another --output"
        )
    try:  # a real write: os.access says yes to root on a read-only or immutable folder
        with tempfile.TemporaryFile(dir=folder, prefix=".automl-write-check-"):
            pass
    except OSError as e:
        raise ExportError(
            f"cannot write output {quoted(str(path))}: folder {quoted(str(folder))} is not "
            f"writable ({e.strerror}); choose another --output"
        ) from None


def is_own_export(path: Path, format: str) -> bool:
    """Whether ``path`` is an earlier automl export in ``format`` (the only thing --force replaces).

    Recognised by what every export writes: ``automl.json`` inside a ``.keras`` zip, in a
    SavedModel's ``assets/``, in an MLflow model folder, or the ``.labels.json`` sidecar
    beside a ``.tflite`` / ``.onnx`` file. A symbolic link or the current folder never is.
    """
    path = Path(path)
    if path.is_symlink() or path.resolve() in (Path.cwd().resolve(), *Path.cwd().resolve().parents):
        return False
    if format == "keras":
        if not path.is_file() or not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as z:
            return META_NAME in z.namelist()
    if format in ("tflite", "onnx"):
        return path.is_file() and Path(str(path) + LABELS_SUFFIX).is_file()
    if format == "saved_model":
        return (
            path.is_dir()
            and (path / "saved_model.pb").is_file()
            and (path / "assets" / META_NAME).is_file()
        )
    if format == "mlflow":
        return path.is_dir() and (path / "MLmodel").is_file() and (path / META_NAME).is_file()
    return False


def export_model(
    model,
    path: str | Path,
    *,
    format: str = "keras",
    class_names: list[str] | None = None,
    force: bool = False,
    quantize: str | None = None,
    calibration_images: np.ndarray | None = None,
    task=None,
) -> Path:
    """Write ``model`` to ``path`` in ``format``; refuses to overwrite unless ``force``.

    Args:
        format: one of :data:`FORMATS` (see the module docstring for what each writes).
        task: the fitted :class:`automl.tasks.Task` the model answers; a multi-label or
            regression task is saved in the export's metadata (``"task"``) and read back
            by :func:`automl.predict.load_predictor` (classification: the class names).
        quantize: TFLite only: ``None`` (float32), ``"float16"`` or ``"int8"``.
        calibration_images: uint8 RGB training images (NHWC); required for int8.
    """
    quantize = check_export_args(path, format=format, force=force, quantize=quantize)
    path = Path(path)
    if quantize == "int8" and (calibration_images is None or len(calibration_images) == 0):
        raise ExportError(
            "int8 quantization needs calibration images (the training images); "
            "pass calibration_images= or --calibration-data SRC"
        )
    from automl.task_outputs import task_meta

    if task is not None and not class_names:
        class_names = {"regression": task.output_names, "multilabel": lambda: task.labels_}.get(
            task.name, lambda: task.classes_
        )()
    meta = _metadata(model, class_names, **task_meta(task))
    new = _new_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_ours(new, format)  # a partial export of an earlier, interrupted run
        if format == "keras":
            _export_keras(model, new, meta)
        elif format == "saved_model":
            _export_saved_model(model, new, meta)
        elif format == "tflite":
            _export_tflite(model, new, meta, quantize, calibration_images)
        elif format == "onnx":
            _export_onnx(model, new, meta)
        elif format == "mlflow":
            _export_mlflow(model, new, meta)
        _commit(new, path, format)
    except BaseException as e:  # Ctrl-C, disk full, a failed conversion: the old one stays
        with contextlib.suppress(OSError):
            _remove_ours(new, format)
        from automl.paths import io_error_line, is_storage_error

        if is_storage_error(e):
            raise StorageError(
                f"{io_error_line(e, path.parent)}; nothing was exported"
                + (" and the earlier export is unchanged" if path.exists() else "")
            ) from None
        raise
    return path


# --- atomic replacement ---------------------------------------------------------------------
# An export is written beside its target under a hidden name (``.NAME.automl-new``) and
# renamed over it only when complete. A folder cannot be renamed over a folder, so an earlier
# export moves aside first (``.NAME.automl-old``) and is removed after. Whatever stops an
# export, the target holds the old export or the new one; the next export reclaims the
# hidden names (the old export is put back if the swap was cut in the middle).
_NEW, _OLD = ".automl-new", ".automl-old"


def _new_name(path: Path) -> Path:
    """Where the export of ``path`` is written first (the suffix kept: Keras checks it)."""
    return path.with_name(f".{path.stem}{_NEW}{path.suffix}")


def _old_name(path: Path) -> Path:
    return path.with_name(f".{path.name}{_OLD}")


def _with_sidecar(path: Path, format: str) -> list[Path]:
    """The files an export of ``format`` at ``path`` consists of."""
    return [path, Path(str(path) + LABELS_SUFFIX)] if format in ("tflite", "onnx") else [path]


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


def _remove_ours(new: Path, format: str) -> None:
    for p in _with_sidecar(new, format):
        _remove(p)


def reclaim(path: str | Path, format: str) -> None:
    """Clean what an interrupted export of ``path`` left: its partial new export is removed;
    an earlier export moved aside is put back (the swap was cut) or removed (it was done)."""
    path = Path(path)
    _remove_ours(_new_name(path), format)
    for target in _with_sidecar(path, format):
        old = _old_name(target)
        if not (old.exists() or old.is_symlink()):
            continue
        if target.exists() or target.is_symlink():
            _remove(old)
        else:
            old.rename(target)


@contextlib.contextmanager
def _signals_deferred():
    """Ctrl-C and SIGTERM wait until the block is done (the main thread only)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, object]] = []
    sigs = [signal.SIGINT, signal.SIGTERM]
    previous = {s: signal.getsignal(s) for s in sigs}
    for s in sigs:
        signal.signal(s, lambda signum, frame: caught.append((signum, frame)))
    try:
        yield
    finally:
        for s in sigs:
            signal.signal(s, previous[s])
        if caught:  # delivered now, to the handler it was meant for
            signal.raise_signal(caught[0][0])


def _commit(new: Path, path: Path, format: str) -> None:
    """Put the complete export ``new`` at ``path`` (the earlier one out of the way)."""
    pairs = list(zip(_with_sidecar(new, format), _with_sidecar(path, format)))
    with _signals_deferred():
        for src, dst in pairs:
            if src.is_dir():
                if dst.exists() or dst.is_symlink():
                    dst.rename(_old_name(dst))
                src.rename(dst)
            else:
                os.replace(src, dst)  # atomic for a file
    for _, dst in pairs:  # the earlier export, now aside
        with contextlib.suppress(OSError):
            _remove(_old_name(dst))


def _export_keras(model, path: Path, meta: dict) -> None:
    model.save(path)
    with zipfile.ZipFile(path, "a") as z:
        saved = {"class_names": meta["class_names"], "input": INPUT_NOTE}
        if "task" in meta:  # (a classification export is exactly what it was before tasks)
            saved["task"] = meta["task"]
        z.writestr(META_NAME, json.dumps(saved))


def _write_sidecar(path: Path, meta: dict) -> None:
    Path(str(path) + LABELS_SUFFIX).write_text(json.dumps(meta, indent=2))


def _output_key(meta: dict) -> str:
    """The serving signature's output: ``values`` for regression, else ``probabilities``."""
    return "values" if (meta.get("task") or {}).get("task") == "regression" else "probabilities"


def _uint8_serving_fn(model, key: str = "probabilities"):
    import tensorflow as tf

    def serve(images):
        return {key: model(tf.cast(images, tf.float32), training=False)}

    return serve


def _export_saved_model(model, path: Path, meta: dict) -> None:
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default",
        _uint8_serving_fn(model, _output_key(meta)),
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")],
    )
    archive.write_out(str(path), verbose=False)
    assets = path / "assets"
    assets.mkdir(exist_ok=True)
    (assets / META_NAME).write_text(
        json.dumps({**meta, "input": "uint8 RGB 0-255 [N, H, W, 3], any N, H, W"}, indent=2)
    )
    (assets / "labels.txt").write_text("".join(f"{n}\n" for n in meta["class_names"]))
    from automl.signing import sign

    sign(path)  # `automl predict` loads a SavedModel only with this user's signature


def _representative(images: np.ndarray, size: int):
    """Calibration batches for int8: training images resized like the model does."""
    import tensorflow as tf

    imgs = np.asarray(images[:CALIBRATION_IMAGES])  # a view reads just these
    resized = tf.image.resize(tf.cast(imgs, tf.float32), (size, size), method="bilinear").numpy()
    resized = np.clip(np.round(resized), 0, 255).astype(np.float32)
    # One pixel black and one white, so the uint8 input's range is exactly 0..255 (scale 1,
    # zero point 0): raw pixels then map 1:1 to the quantized input.
    resized[0, 0, 0, :] = 0.0
    resized[0, 0, -1, :] = 255.0

    def gen():
        for img in resized:
            yield [img[None]]

    return gen


def _export_tflite(model, path: Path, meta: dict, quantize, calibration) -> None:
    import keras
    import tensorflow as tf

    size = meta["image_size"]
    if size is None:
        raise ExportError("the model has no 'resize' layer, so its TFLite input size is unknown")
    spec = tf.TensorSpec([None, size, size, 3], tf.float32, name="image")
    with tempfile.TemporaryDirectory() as tmp:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            "serving_default", lambda x: model(x, training=False), input_signature=[spec]
        )
        archive.write_out(tmp, verbose=False)
        conv = tf.lite.TFLiteConverter.from_saved_model(tmp)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize == "float16":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = _representative(calibration, size)
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.uint8
            conv.inference_output_type = tf.uint8
        try:
            data = conv.convert()
        except Exception as e:
            raise ExportError(
                f"TFLite conversion failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
            ) from None
    path.write_bytes(data)
    input_note = (
        f"uint8 RGB 0-255 [N, {size}, {size}, 3]"
        if quantize == "int8"
        else f"float32 RGB 0-255 [N, {size}, {size}, 3]"
    )
    _write_sidecar(path, {**meta, "input": input_note, "quantize": quantize or "float32"})


def _export_onnx(model, path: Path, meta: dict) -> None:
    import tensorflow as tf

    try:
        import onnx
        import tf2onnx
    except ImportError as e:
        raise ExportError(f"--format onnx needs {e.name}; pip install tf2onnx onnx") from None
    from keras.src.export.tf2onnx_lib import patch_tf2onnx

    spec = [tf.TensorSpec([None, None, None, 3], tf.uint8, name="image")]
    fn = tf.function(_uint8_serving_fn(model, _output_key(meta)), input_signature=spec)
    patch_tf2onnx()  # numpy 2 compatibility, as keras' own ONNX exporter does
    tf2onnx_log = logging.getLogger("tf2onnx")
    level = tf2onnx_log.level
    tf2onnx_log.setLevel(logging.CRITICAL)  # an optimizer pass that fails is skipped, noisily
    try:
        tf2onnx.convert.from_function(fn, spec, output_path=str(path))
    except Exception as e:
        raise ExportError(
            f"ONNX conversion failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        ) from None
    finally:
        tf2onnx_log.setLevel(level)
    proto = onnx.load(str(path))
    for key, value in (
        ("class_names", json.dumps(meta["class_names"])),
        ("automl", json.dumps({**meta, "input": "uint8 RGB 0-255 [N, H, W, 3]"})),
    ):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    _write_sidecar(path, {**meta, "input": "uint8 RGB 0-255 [N, H, W, 3]"})


def _export_mlflow(model, path: Path, meta: dict) -> None:
    import keras
    import tensorflow as tf

    from automl.tracking import save_keras_model

    size = meta["image_size"] or 224
    path.mkdir(parents=True)
    example = np.random.default_rng(0).integers(0, 256, (1, size, size, 3)).astype(np.float32)
    save_keras_model(
        model,
        path,
        input_example=example,
        signature=((-1, -1, -1, 3), (-1, len(meta["class_names"]) or -1)),
        pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"],
        metadata={k: v for k, v in meta.items() if v is not None},
    )
    (path / META_NAME).write_text(json.dumps(meta, indent=2))
    from automl.task_outputs import task_from_meta

    task = task_from_meta(meta)  # a classification of the class names when no task is saved
    if task is not None:  # its pyfunc answers a DataFrame with the task's named columns
        from automl.tracking import use_task_pyfunc

        use_task_pyfunc(path, task.to_config())


def calibration_images_for(
    tracker: Tracker, run_id: str, source: str | None = None, image_size: int | None = None
) -> np.ndarray:
    """Training images to calibrate int8 on: from ``source``, else the search's own data."""
    from automl.data import load_data

    if source is None and not is_model_uri(run_id):
        parent = tracker.run_tags(run_id).get("mlflow.parentRunId") or run_id
        source = tracker.run_params(parent).get("data_source")
    if not source or source == "arrays" or source.startswith("numpy arrays"):
        raise ExportError(
            "int8 quantization needs calibration images and the search's data cannot be "
            "reloaded (in-memory arrays or a model URI); pass --calibration-data FOLDER"
        )
    return load_data(source, store_size=image_size or 128).x_train[:CALIBRATION_IMAGES]


def resolve_search(tracker: Tracker, run_id: str | None = None) -> str:
    """The run id to export: ``run_id`` if given, else the latest search of the experiment."""
    if run_id:
        return run_id
    latest = tracker.latest_search()
    if latest is None:
        raise NoCompletedSearchError(
            f"experiment {tracker.experiment!r} has no search in {tracker.uri}; run `automl search` first"
        )
    return latest.info.run_id
