"""Read PyTorch ``.pth`` state dicts into NumPy arrays without importing torch.

Two on-disk formats are understood:

* the legacy (non-zip) format written by ``torch.save(..., _use_new_zipfile_serialization=False)``
  and by torch < 1.6: consecutive pickles (magic number, protocol version, system info,
  the object whose persistent ids name storages, the list of storage keys), followed by
  the raw bytes of each storage, each preceded by its element count as an int64;
* the zip format of torch >= 1.6: ``<root>/data.pkl`` plus one raw file per storage
  under ``<root>/data/<key>``.

Nothing from the file is executed: the unpickler resolves only the handful of globals a
state dict of tensors needs (``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``,
``torch._utils._rebuild_parameter`` and the typed storage classes) to local stand-ins, and
refuses every other global with :class:`~automl.errors.WeightsUnavailableError`.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from automl.errors import WeightsUnavailableError

__all__ = ["load_torch_state_dict", "LEGACY_MAGIC_NUMBER"]

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001

# torch typed-storage class name -> numpy dtype (little-endian). "bfloat16" has no NumPy
# dtype; it is read as uint16 and widened to float32.
_STORAGE_DTYPES: dict[str, str] = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        spec = _STORAGE_DTYPES[self.name]
        return np.dtype("<u2" if spec == "bfloat16" else spec)


@dataclass
class _StorageRef:
    """A storage named by a persistent id; its bytes are attached later."""

    key: str
    stype: _StorageType
    numel: int
    view: tuple[int, int] | None = None  # (element offset, element count) in the root
    data: np.ndarray | None = None
    root: _StorageRef | None = None  # set on views


@dataclass
class _TensorRef:
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_ignored, **_kw):
    if not isinstance(storage, _StorageRef):
        raise WeightsUnavailableError("tensor record does not reference a storage")
    return _TensorRef(
        storage, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride)
    )


def _rebuild_parameter(data, *_ignored, **_kw):
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}
for _name in _STORAGE_DTYPES:
    _ALLOWED_GLOBALS[("torch", _name)] = _StorageType(_name)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that knows only the globals of a state dict of tensors."""

    def __init__(self, file, path: str, storages: dict[str, _StorageRef]):
        super().__init__(file, encoding="utf-8")
        self._path = path
        self._storages = storages

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise WeightsUnavailableError(
                f"refusing to load {self._path}: it references the global "
                f"'{module}.{name}', which is not allowed in a weights file "
                "(only tensors, storages and OrderedDict are)"
            ) from None

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise WeightsUnavailableError(
                f"refusing to load {self._path}: unsupported persistent record {pid!r:.80}"
            )
        stype, key, _location, numel = pid[1], str(pid[2]), pid[3], int(pid[4])
        view = pid[5] if len(pid) > 5 else None
        if not isinstance(stype, _StorageType):
            raise WeightsUnavailableError(
                f"refusing to load {self._path}: storage record without a storage type"
            )
        root = self._storages.get(key)
        if root is None:
            root = self._storages[key] = _StorageRef(key, stype, numel)
        if view is not None:  # legacy storage view: (view_key, offset, view_size)
            _view_key, offset, view_size = view
            return _StorageRef(
                key, stype, int(view_size), view=(int(offset), int(view_size)), root=root
            )
        return root


def _as_array(t: _TensorRef, path: str) -> np.ndarray:
    st = t.storage
    root = st.root or st
    data = root.data
    if data is None:
        raise WeightsUnavailableError(f"{path} is corrupt: storage {root.key} has no data")
    base_offset = st.view[0] if st.view else 0
    flat = data[base_offset:]
    itemsize = flat.dtype.itemsize
    n = int(np.prod(t.size)) if t.size else 1
    if n == 0:
        arr = np.zeros(t.size, dtype=flat.dtype)
    else:
        last = t.offset + sum((s - 1) * d for s, d in zip(t.size, t.stride))
        if t.offset < 0 or last >= flat.size or any(d < 0 for d in t.stride):
            raise WeightsUnavailableError(
                f"{path} is corrupt: a tensor of size {t.size} does not fit its storage"
            )
        arr = np.lib.stride_tricks.as_strided(
            flat[t.offset :], shape=t.size, strides=tuple(d * itemsize for d in t.stride)
        ).copy()
    if st.stype.name == "BFloat16Storage":
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    return arr


def _materialise(obj: Any, path: str) -> Any:
    if isinstance(obj, _TensorRef):
        return _as_array(obj, path)
    if isinstance(obj, dict):
        out = collections.OrderedDict()
        for k, v in obj.items():
            out[k] = _materialise(v, path)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v, path) for v in obj)
    return obj


def _load_legacy(f: io.BufferedReader, path: str) -> Any:
    storages: dict[str, _StorageRef] = {}

    def unpickle() -> Any:
        return _RestrictedUnpickler(f, path, storages).load()

    magic = unpickle()
    if magic != LEGACY_MAGIC_NUMBER:
        raise WeightsUnavailableError(f"{path} is not a PyTorch weights file (bad magic number)")
    version = unpickle()
    if version != _LEGACY_PROTOCOL_VERSION:
        raise WeightsUnavailableError(f"{path}: unsupported PyTorch protocol version {version!r}")
    sys_info = unpickle()
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise WeightsUnavailableError(f"{path}: big-endian PyTorch files are not supported")
    result = unpickle()
    keys = unpickle()
    if not isinstance(keys, list):
        raise WeightsUnavailableError(f"{path} is corrupt: no storage key list")
    for key in keys:
        ref = storages.get(str(key))
        if ref is None:
            raise WeightsUnavailableError(f"{path} is corrupt: unknown storage key {key!r}")
        head = f.read(8)
        if len(head) != 8:
            raise WeightsUnavailableError(f"{path} is truncated (storage {key} missing)")
        (numel,) = struct.unpack("<q", head)
        dtype = ref.stype.dtype
        nbytes = numel * dtype.itemsize
        if numel < 0 or numel < ref.numel:
            raise WeightsUnavailableError(f"{path} is corrupt: bad size for storage {key}")
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise WeightsUnavailableError(
                f"{path} is truncated: storage {key} needs {nbytes} bytes, found {len(raw)}"
            )
        ref.data = np.frombuffer(raw, dtype=dtype)
    return result


def _load_zip(path: str) -> Any:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pkl:
            raise WeightsUnavailableError(f"{path} is a zip file without data.pkl")
        root = pkl[0][: -len("data.pkl")]
        storages: dict[str, _StorageRef] = {}
        with zf.open(pkl[0]) as fp:
            result = _RestrictedUnpickler(io.BytesIO(fp.read()), path, storages).load()
        for key, ref in storages.items():
            member = f"{root}data/{key}"
            try:
                raw = zf.read(member)
            except KeyError:
                raise WeightsUnavailableError(f"{path} is corrupt: {member} is missing") from None
            dtype = ref.stype.dtype
            if len(raw) < ref.numel * dtype.itemsize:
                raise WeightsUnavailableError(f"{path} is truncated: {member} is short")
            ref.data = np.frombuffer(raw[: ref.numel * dtype.itemsize], dtype=dtype)
    return result


def load_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict (``torch.save(model.state_dict(), path)``) safely.

    Args:
        path: a ``.pth``/``.pt`` file in the legacy or the zip serialization format.

    Returns:
        An ordered ``{name: numpy array}`` dict, each array a C-contiguous copy honouring
        the tensor's storage offset, size and stride.

    Raises:
        WeightsUnavailableError: the file is missing, truncated or corrupt, is not a
            state dict, or references a global outside the small allow-list.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsUnavailableError(f"PyTorch weights file {path} does not exist")
    try:
        if zipfile.is_zipfile(path):
            result = _load_zip(path)
        else:
            with open(path, "rb") as f:
                result = _load_legacy(f, path)
        state = _materialise(result, path)
    except WeightsUnavailableError:
        raise
    except (
        EOFError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        struct.error,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        UnicodeDecodeError,
        OverflowError,
        MemoryError,
    ) as exc:
        raise WeightsUnavailableError(
            f"{path} is truncated or corrupt and cannot be read as PyTorch weights "
            f"({type(exc).__name__}: {exc})"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in state.items()
    ):
        raise WeightsUnavailableError(f"{path} does not hold a state dict of tensors")
    return dict(state)
