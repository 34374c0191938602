"""A greedy ensemble is one Keras model of built-in layers: it loads in safe mode and every
export format predicts like it (each scored in its own runtime, as in test_export_formats)."""

from __future__ import annotations

import types

import numpy as np
import pytest

from tests.test_export_formats import (
    NAMES,
    _assert_float_parity,
    _colour_images,
    _tflite_probs,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    """Two small scratch nets of different sizes (16 and 24 px), trained a little, mixed 2:1.

    They are also the parity check of the scratch family in every format."""
    import keras

    from automl.ensemble import ensemble_model
    from automl.families import build
    from automl.trial import TrialConfig

    x, y = _colour_images(96, 0, noise=20)
    members = []
    for size in (16, 24):
        keras.utils.set_random_seed(size)
        cfg = TrialConfig(  # the second: separable, residual, avg+max pooling (more layers)
            family="scratch",
            image_size=size,
            blocks=1,
            filters=8,
            conv_layers=1,
            separable=size == 24,
            residual=size == 24,
            pooling="avgmax" if size == 24 else "avg",
        )
        m = build(cfg, 3).model
        m.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
        m.fit(x.astype("float32"), y, epochs=4, batch_size=32, verbose=0)
        members.append(m)
    model = ensemble_model(members, [2 / 3, 1 / 3])
    x_held, y_held = _colour_images(60, 7, size=(24, 24), noise=20)
    ref = model.predict(x_held.astype(np.float32), verbose=0)
    return types.SimpleNamespace(
        model=model, x_train=x, x=x_held, y=y_held, ref=ref, root=tmp_path_factory.mktemp("ens")
    )


def test_ensemble_is_a_weighted_mean_of_its_members(ensemble):
    m = ensemble.model
    parts = [
        m.get_layer(f"member{i}").predict(ensemble.x.astype("float32"), verbose=0) for i in (0, 1)
    ]
    np.testing.assert_allclose(ensemble.ref, 2 / 3 * parts[0] + 1 / 3 * parts[1], atol=1e-6)
    np.testing.assert_allclose(ensemble.ref.sum(1), 1.0, atol=1e-5)
    assert (
        np.mean(ensemble.ref.argmax(1) == ensemble.y) >= 0.9
    )  # it learned: parity means something


def test_ensemble_exports_to_every_format_with_parity(ensemble):
    import keras
    import mlflow
    import onnxruntime as ort
    import tensorflow as tf

    from automl.export import export_model, image_size_of

    assert image_size_of(ensemble.model) == 24  # TFLite input: the largest member's size
    out = ensemble.root / "exports"

    def ex(name, fmt):
        return export_model(ensemble.model, out / name, format=fmt, class_names=NAMES)

    x = ensemble.x
    k = keras.models.load_model(ex("model.keras", "keras"), safe_mode=True, compile=False)
    _assert_float_parity("ensemble keras", k.predict(x.astype(np.float32), verbose=0), ensemble.ref)
    fn = tf.saved_model.load(str(ex("saved_model", "saved_model"))).signatures["serving_default"]
    sm = fn(images=tf.constant(x))["probabilities"].numpy()
    _assert_float_parity("ensemble saved_model", sm, ensemble.ref)
    _, tfl = _tflite_probs(ex("model.tflite", "tflite"), x)
    _assert_float_parity("ensemble tflite", tfl, ensemble.ref)
    sess = ort.InferenceSession(str(ex("model.onnx", "onnx")), providers=["CPUExecutionProvider"])
    onnx = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    _assert_float_parity("ensemble onnx", onnx, ensemble.ref)
    pyfunc = mlflow.pyfunc.load_model(str(ex("mlflow_model", "mlflow")))
    frame = pyfunc.predict(x.astype(np.float32))  # a DataFrame: label, prob_<class>...
    assert list(frame.columns) == ["label", *(f"prob_{n}" for n in NAMES)]
    _assert_float_parity("ensemble mlflow", frame.iloc[:, 1:].to_numpy(), ensemble.ref)
    assert frame["label"].tolist() == [NAMES[i] for i in ensemble.ref.argmax(1)]
