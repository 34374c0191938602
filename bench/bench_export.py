"""Size and single-image CPU latency of every export format (offline, random weights).

    PYTHONPATH=. python bench/bench_export.py [--backbone mobilenet_v3_small] [--image-size 224]
                                              [--runs 50] [--threads 0]

Builds the automl model (resize -> backbone -> head) with random weights, so nothing is
downloaded, exports it to each format with :func:`automl.export.export_model`, and scores
one 224x224 uint8 image ``--runs`` times in each format's own runtime (Keras
``model(x)``, ``tf.saved_model`` signature, ``tf.lite.Interpreter``, onnxruntime,
``mlflow.pyfunc``), after 5 warm-up calls. Latency is the mean wall time of one call.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def _runner(fmt: str, path: Path, model, size: int, threads: int):
    """A function scoring one uint8 HxWx3 image with the format's own runtime."""
    import tensorflow as tf

    if fmt == "keras":
        import keras

        m = keras.models.load_model(path, safe_mode=True, compile=False)
        return lambda x: m(x[None].astype(np.float32), training=False).numpy()
    if fmt == "saved_model":
        fn = tf.saved_model.load(str(path)).signatures["serving_default"]
        return lambda x: fn(images=tf.constant(x[None]))["probabilities"].numpy()
    if fmt.startswith("tflite"):
        it = tf.lite.Interpreter(model_path=str(path), num_threads=threads or None)
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        it.resize_tensor_input(inp["index"], [1, size, size, 3])
        it.allocate_tensors()

        def run(x):
            it.set_tensor(inp["index"], x[None].astype(inp["dtype"]))
            it.invoke()
            return it.get_tensor(out["index"])

        return run
    if fmt == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        name = s.get_inputs()[0].name
        return lambda x: s.run(None, {name: x[None]})[0]
    if fmt == "mlflow":
        import mlflow

        m = mlflow.pyfunc.load_model(str(path))
        return lambda x: m.predict(x[None].astype(np.float32))
    raise ValueError(fmt)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="mobilenet_v3_small")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--threads", type=int, default=0, help="0: the runtime's default")
    a = ap.parse_args(argv)

    import keras
    import tensorflow as tf

    from automl.export import export_model
    from automl.families.pretrained import build_model

    if a.threads:
        tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    keras.utils.set_random_seed(0)
    s = a.image_size
    model = build_model(a.backbone, num_classes=10, image_size=s, weights="random").model
    rng = np.random.default_rng(0)
    calib = rng.integers(0, 256, (32, s, s, 3)).astype(np.uint8)
    image = rng.integers(0, 256, (s, s, 3)).astype(np.uint8)
    names = [f"class_{i}" for i in range(10)]
    plan = [
        ("keras", "model.keras", {}),
        ("saved_model", "saved_model", {}),
        ("tflite", "model.tflite", {}),
        ("tflite-float16", "model16.tflite", {"quantize": "float16"}),
        ("tflite-int8", "model8.tflite", {"quantize": "int8", "calibration_images": calib}),
        ("onnx", "model.onnx", {}),
        ("mlflow", "mlflow_model", {}),
    ]
    print(
        f"backbone={a.backbone} image={s}x{s} params={model.count_params():,} "
        f"runs={a.runs} threads={a.threads or 'default'} cpus={os.cpu_count()} "
        f"tf={tf.__version__} keras={keras.__version__}",
        flush=True,
    )
    print(f"{'format':<16}{'size MB':>10}{'export s':>10}{'latency ms':>12}{'p50 ms':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for key, name, kw in plan:
            fmt = key.split("-")[0]
            t0 = time.perf_counter()
            path = export_model(model, Path(tmp) / name, format=fmt, class_names=names, **kw)
            export_s = time.perf_counter() - t0
            run = _runner(key, path, model, s, a.threads)
            for _ in range(5):
                run(image)
            times = []
            for _ in range(a.runs):
                t = time.perf_counter()
                run(image)
                times.append(time.perf_counter() - t)
            ms = np.array(times) * 1000
            print(
                f"{key:<16}{_size(path) / 1e6:>10.2f}{export_s:>10.1f}"
                f"{ms.mean():>12.2f}{np.median(ms):>9.2f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
