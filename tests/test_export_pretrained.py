"""Float16 TFLite parity on real pretrained weights (EfficientNet-Lite0 ImageNet classifier, real photos)."""

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_tflite_float16_matches_keras_on_a_pretrained_model(tmp_path):
    import keras
    import tensorflow as tf
    from PIL import Image
    from sklearn.datasets import load_sample_image

    import automl
    from automl.export import export_model

    clf = automl.create_backbone("efficientnet_lite0", weights="imagenet", include_top=True)
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, clf(keras.layers.Resizing(224, 224, name="resize")(inputs)))
    crops = []
    for name in ("china.jpg", "flower.jpg"):
        a = load_sample_image(name)
        for x0, y0 in [(0, 0), (100, 50), (200, 100), (300, 150)]:
            crops.append(
                np.asarray(Image.fromarray(a[y0 : y0 + 300, x0 : x0 + 300]).resize((224, 224)))
            )
    x = np.stack(crops).astype("float32")
    ref = model.predict(x, verbose=0)
    path = export_model(model, tmp_path / "m.tflite", format="tflite", quantize="float16")
    interp = tf.lite.Interpreter(model_path=str(path))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    got = []
    for xi in x:
        interp.set_tensor(inp["index"], xi[None].astype(inp["dtype"]))
        interp.invoke()
        got.append(interp.get_tensor(out["index"])[0])
    got = np.stack(got)
    assert np.array_equal(got.argmax(1), ref.argmax(1))
    assert np.abs(got - ref).max() <= 1e-2
