"""Keras Applications backbones (ImageNet weights through Keras's own download and cache)."""

from __future__ import annotations

from pathlib import Path

from automl.backbones.registry import register_backbone
from automl.errors import WeightsUnavailableError


def _build_app(
    name, app_fn, input_shape, weights, include_top, *, rescale=None, preprocessing_kw=True
):
    import keras

    if include_top and weights == "imagenet" and input_shape[0] != 224:
        raise WeightsUnavailableError(
            f"the ImageNet classifier of {name} takes 224 px images, not {input_shape[0]}"
        )
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if rescale is not None:  # (scale, offset) mapping 0-255 to the range the weights expect
        x = keras.layers.Rescaling(rescale[0], offset=rescale[1], name="normalize")(x)
    kw = dict(
        include_top=include_top,
        weights="imagenet" if weights == "imagenet" else None,
        input_tensor=x,
        pooling=None if include_top else "avg",
    )
    if preprocessing_kw:
        kw["include_preprocessing"] = True
    if include_top:
        kw["classifier_activation"] = "softmax"
    try:
        model = app_fn(**kw)
    except Exception as e:  # urllib / HTTP / SSL errors from keras.utils.get_file
        if weights == "imagenet" and any(
            s in f"{type(e).__name__} {e}"
            for s in ("URL", "http", "Errno", "resolve", "fetch", "SSL", "connect")
        ):
            raise WeightsUnavailableError(
                f"ImageNet weights for {name} could not be downloaded (no network?); use an "
                "efficientnet_lite0/1/2 backbone (its weights ship with automl), weights: random, "
                "or a local .weights.h5 file"
            ) from None
        raise
    if weights not in (None, "imagenet", "random"):
        load_weights_file(model, weights, name)
    return model


def load_weights_file(model, path, name: str) -> None:
    """Load a local ``.weights.h5`` file into ``model`` with a one-line error when it does not fit."""
    p = Path(path)
    if not p.exists():
        raise WeightsUnavailableError(
            f"weights file {str(path)!r} for {name} does not exist; pass an existing .weights.h5 file"
        )
    try:
        model.load_weights(str(p))
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160].rstrip(": ")
        raise WeightsUnavailableError(
            f"weights file {str(path)!r} does not fit backbone {name} ({first}); "
            "use a file saved from the same backbone"
        ) from None


@register_backbone("mobilenet_v3_small", default_size=224, family="mobilenet_v3")
def mobilenet_v3_small(input_shape, weights="imagenet", include_top=False):
    """MobileNetV3Small (2.5M params): the fastest Keras Applications backbone."""
    import keras

    return _build_app(
        "mobilenet_v3_small", keras.applications.MobileNetV3Small, input_shape, weights, include_top
    )


@register_backbone("mobilenet_v3_large", default_size=224, family="mobilenet_v3")
def mobilenet_v3_large(input_shape, weights="imagenet", include_top=False):
    """MobileNetV3Large (5.4M params)."""
    import keras

    return _build_app(
        "mobilenet_v3_large", keras.applications.MobileNetV3Large, input_shape, weights, include_top
    )


@register_backbone("efficientnet_b0", default_size=224, family="efficientnet")
def efficientnet_b0(input_shape, weights="imagenet", include_top=False):
    """EfficientNetB0 (5.3M params); normalisation is built into the Keras model."""
    import keras

    return _build_app(
        "efficientnet_b0",
        keras.applications.EfficientNetB0,
        input_shape,
        weights,
        include_top,
        preprocessing_kw=False,
    )


@register_backbone("efficientnet_v2_b0", default_size=224, family="efficientnet_v2")
def efficientnet_v2_b0(input_shape, weights="imagenet", include_top=False):
    """EfficientNetV2B0 (7.2M params)."""
    import keras

    return _build_app(
        "efficientnet_v2_b0", keras.applications.EfficientNetV2B0, input_shape, weights, include_top
    )


@register_backbone("resnet50_v2", default_size=224, family="resnet_v2")
def resnet50_v2(input_shape, weights="imagenet", include_top=False):
    """ResNet50V2 (25.6M params); inputs scaled to [-1, 1] inside the model."""
    import keras

    return _build_app(
        "resnet50_v2",
        keras.applications.ResNet50V2,
        input_shape,
        weights,
        include_top,
        rescale=(1 / 127.5, -1.0),
        preprocessing_kw=False,
    )


@register_backbone("convnext_tiny", default_size=224, family="convnext")
def convnext_tiny(input_shape, weights="imagenet", include_top=False):
    """ConvNeXtTiny (28.6M params): a GPU-sized backbone."""
    import keras

    return _build_app(
        "convnext_tiny", keras.applications.ConvNeXtTiny, input_shape, weights, include_top
    )
