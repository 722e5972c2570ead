"""Read a PyTorch checkpoint (.pth/.pt) into numpy arrays without importing PyTorch.

Both on-disk layouts are handled: the zip archive of torch >= 1.6 (``*/data.pkl`` plus one raw
``*/data/<key>`` entry per storage) and the legacy stream of torch < 1.6 (five pickles in a row,
then each storage as an int64 element count followed by its raw bytes). A restricted unpickler
only rebuilds dicts, tensors and storages, so a checkpoint cannot run arbitrary code on load.
"""

import collections
import io
import pickle
import struct
import zipfile

import numpy as np

from udsph_tf.errors import DataError, MissingFileError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# torch storage class name -> numpy dtype (little-endian, as torch writes it).
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
_TORCH_DTYPES = {"float32": np.float32, "float": np.float32, "float64": np.float64,
                 "double": np.float64, "float16": np.float16, "half": np.float16,
                 "int64": np.int64, "long": np.int64, "int32": np.int32, "int": np.int32,
                 "int16": np.int16, "int8": np.int8, "uint8": np.uint8, "bool": np.bool_}


class WeightsFileError(DataError, pickle.UnpicklingError):
    """A weights file the restricted unpickler refuses: a user error that callers catching
    pickle.UnpicklingError still see as one."""


class _StorageRef:
    def __init__(self, key, dtype, numel, view):
        self.key, self.dtype, self.numel, self.view = key, dtype, numel, view


class _TensorRef:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


class _DtypeTag:
    """Stands for `torch.float32` etc. (newer archives name the dtype beside an UntypedStorage)."""

    def __init__(self, name):
        self.dtype = _TORCH_DTYPES[name]


class _StorageClass:
    def __init__(self, name):
        self.name = name
        self.dtype = _STORAGE_DTYPES.get(name)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *unused):
    return _TensorRef(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad, backward_hooks, *unused):
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path):
        super().__init__(file)
        self._path = path

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module in ("torch._utils", "torch.nn.parameter") and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and (name in _STORAGE_DTYPES or name == "UntypedStorage"):
            return _StorageClass(name)
        if module == "torch.storage" and name == "UntypedStorage":
            return _StorageClass(name)
        if module == "torch" and name in _TORCH_DTYPES:
            return _DtypeTag(name)
        raise WeightsFileError(
            f"{self._path}: refusing to load {module}.{name} (only tensors, storages and "
            "dicts are allowed in a weights file)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise WeightsFileError(f"{self._path}: unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid[:5]
        view = pid[5] if len(pid) > 5 else None
        dtype = storage_type.dtype if isinstance(storage_type, (_StorageClass, _DtypeTag)) else None
        if dtype is None:
            raise WeightsFileError(f"{self._path}: storage {key} has no known dtype")
        return _StorageRef(str(key), dtype, int(numel), view)


def _resolve(obj, storages):
    """Replace every tensor placeholder by a numpy array cut from its storage."""
    if isinstance(obj, _TensorRef):
        ref = obj.storage
        flat = storages[ref.key]
        offset = obj.offset
        if ref.view is not None:  # legacy view: (view_key, offset, size) into the root storage
            offset += int(ref.view[1])
        itemsize = flat.dtype.itemsize
        if not obj.size:
            return flat[offset].copy()
        needed = offset + sum((s - 1) * st for s, st in zip(obj.size, obj.stride)) + 1
        if needed > flat.size:
            raise DataError(f"tensor needs {needed} elements of storage {ref.key}, "
                            f"which holds {flat.size}")
        view = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=obj.size, strides=[st * itemsize for st in obj.stride])
        return np.array(view)  # a contiguous copy, independent of the storage buffer
    if isinstance(obj, dict):
        return type(obj)((k, _resolve(v, storages)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(v, storages) for v in obj)
    return obj


def _collect_storage_refs(obj, found):
    if isinstance(obj, _TensorRef):
        found[obj.storage.key] = obj.storage
    elif isinstance(obj, dict):
        for v in obj.values():
            _collect_storage_refs(v, found)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _collect_storage_refs(v, found)
    return found


def _load_zip(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pkl:
            raise DataError(f"{path}: zip archive without data.pkl (not a PyTorch checkpoint)")
        prefix = pkl[0][: -len("data.pkl")]
        obj = _RestrictedUnpickler(io.BytesIO(archive.read(pkl[0])), path).load()
        storages = {}
        for key, ref in _collect_storage_refs(obj, {}).items():
            entry = f"{prefix}data/{key}"
            if entry not in names:
                raise DataError(f"{path}: storage entry {entry!r} is missing")
            storages[key] = np.frombuffer(archive.read(entry), dtype=ref.dtype)
    return _resolve(obj, storages)


def _load_legacy(path):
    with open(path, "rb") as f:
        # Every pickle in the stream goes through the restricted unpickler, the header too.
        try:
            magic = _RestrictedUnpickler(f, path).load()
        except Exception:
            magic = None
        if magic != _LEGACY_MAGIC:
            raise DataError(f"{path}: neither a zip archive nor a legacy PyTorch file "
                            "(bad magic number)")
        _RestrictedUnpickler(f, path).load()  # protocol version
        _RestrictedUnpickler(f, path).load()  # sys_info (endianness, type sizes)
        obj = _RestrictedUnpickler(f, path).load()
        keys = _RestrictedUnpickler(f, path).load()  # storage keys, in the order of their bytes
        refs = _collect_storage_refs(obj, {})
        storages = {}
        for key in keys:
            if key not in refs:
                raise DataError(f"{path}: storage {key} is not used by any tensor")
            ref = refs[key]
            header = f.read(8)
            if len(header) != 8:
                raise DataError(f"{path}: truncated before storage {key}")
            (numel,) = struct.unpack("<q", header)
            nbytes = numel * np.dtype(ref.dtype).itemsize
            data = f.read(nbytes)
            if len(data) != nbytes:
                raise DataError(f"{path}: storage {key} truncated ({len(data)} of {nbytes} "
                                "bytes)")
            storages[key] = np.frombuffer(data, dtype=ref.dtype)
    return _resolve(obj, storages)


def load_torch_state_dict(path):
    """Return the checkpoint at `path` as {name: numpy array} (nested containers kept).

    Raises MissingFileError (a FileNotFoundError) if the file is absent and DataError (a
    ValueError; WeightsFileError, also an UnpicklingError, for refused pickles) naming the
    file if it is not a PyTorch checkpoint of tensors.
    """
    path = str(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except FileNotFoundError:
        raise MissingFileError(f"{path}: PyTorch weights file not found") from None
    try:
        if head.startswith(b"PK"):
            return _load_zip(path)
        return _load_legacy(path)
    except (pickle.UnpicklingError, ValueError) as err:
        if isinstance(err, DataError) and str(err).startswith(path):
            raise
        raise DataError(f"{path}: cannot read as a PyTorch checkpoint ({err})") from err
    except Exception as err:  # EOFError, struct errors, bad zip ...: name the file
        raise DataError(f"{path}: cannot read as a PyTorch checkpoint ({err!r})") from err
