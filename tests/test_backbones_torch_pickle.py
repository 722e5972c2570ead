"""The torch-free .pth reader: both PyTorch layouts written here without PyTorch, and refusals."""

import collections
import io
import pickle
import struct
import types
import zipfile

import numpy as np
import pytest

from udsph_tf.models.backbones.torch_pickle import load_torch_state_dict


# --- a minimal PyTorch checkpoint writer (what torch.save emits, for float32/int64 tensors) ----
def _rebuild_tensor_v2(*args):  # pickled under torch's name, never called
    raise AssertionError


class FloatStorage:
    pass


class LongStorage:
    pass


_GLOBALS = {_rebuild_tensor_v2: ("torch._utils", "_rebuild_tensor_v2"),
            FloatStorage: ("torch", "FloatStorage"), LongStorage: ("torch", "LongStorage")}


class _Storage:
    def __init__(self, key, array):
        self.key, self.array = key, array


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce__(self):
        return (_rebuild_tensor_v2, (self.storage, self.offset, self.size, self.stride, False,
                                     collections.OrderedDict()))


class _TorchPickler(pickle._Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            cls = FloatStorage if obj.array.dtype == np.float32 else LongStorage
            return ("storage", cls, obj.key, "cpu", obj.array.size)
        return None

    def save_global(self, obj, name=None):
        if obj in _GLOBALS:
            module, qualname = _GLOBALS[obj]
            self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode())
            self.memoize(obj)
            return
        super().save_global(obj, name)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[type] = save_global
    dispatch[types.FunctionType] = save_global


def _tensors(arrays):
    """name -> array as (state dict of _Tensor, storages); one storage per tensor, row-major."""
    state, storages = collections.OrderedDict(), []
    for i, (name, array) in enumerate(arrays.items()):
        array = np.ascontiguousarray(array)
        storage = _Storage(str(1000 + i), array.reshape(-1))
        strides = tuple(s // array.itemsize for s in array.strides)
        state[name] = _Tensor(storage, 0, tuple(array.shape), strides)
        storages.append(storage)
    return state, storages


def _pickle(obj):
    buf = io.BytesIO()
    _TorchPickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def write_zip_checkpoint(path, state, storages):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", _pickle(state))
        for s in storages:
            z.writestr(f"archive/data/{s.key}", s.array.tobytes())


def write_legacy_checkpoint(path, state, storages):
    with open(path, "wb") as f:
        pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True}, f, protocol=2)
        f.write(_pickle(state))
        pickle.dump([s.key for s in storages], f, protocol=2)
        for s in storages:
            f.write(struct.pack("<q", s.array.size))
            f.write(s.array.tobytes())


ARRAYS = {"conv.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2),
          "bn.running_var": np.array([0.5, 2.0], np.float32),
          "bn.num_batches_tracked": np.array(7, np.int64)}


@pytest.mark.parametrize("writer", [write_zip_checkpoint, write_legacy_checkpoint])
def test_reads_both_layouts(tmp_path, writer):
    path = tmp_path / "model.pth"
    writer(path, *_tensors(ARRAYS))
    state = load_torch_state_dict(path)
    assert list(state) == list(ARRAYS)
    for name, expected in ARRAYS.items():
        np.testing.assert_array_equal(state[name], expected)
        assert state[name].dtype == expected.dtype


@pytest.mark.parametrize("writer", [write_zip_checkpoint, write_legacy_checkpoint])
def test_offset_and_strides_shared_storage(tmp_path, writer):
    # Two views of one storage: a transposed 3x2 block after an offset of 2 elements.
    flat = np.arange(10, dtype=np.float32)
    storage = _Storage("7", flat)
    state = collections.OrderedDict(
        full=_Tensor(storage, 0, (10,), (1,)),
        view=_Tensor(storage, 2, (3, 2), (1, 3)))
    path = tmp_path / "views.pth"
    writer(path, state, [storage])
    loaded = load_torch_state_dict(path)
    np.testing.assert_array_equal(loaded["view"], flat[2:8].reshape(2, 3).T)
    np.testing.assert_array_equal(loaded["full"], flat)


class _Evil:
    def __reduce__(self):
        import os
        return (os.getcwd, ())


def test_refuses_arbitrary_globals(tmp_path):
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"x": _Evil()}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match=r"evil\.pth.*refusing.*getcwd"):
        load_torch_state_dict(path)


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_torch_state_dict(tmp_path / "nope.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="garbage.pth"):
        load_torch_state_dict(garbage)


def test_truncated_legacy_file_names_storage(tmp_path):
    path = tmp_path / "cut.pth"
    write_legacy_checkpoint(path, *_tensors(ARRAYS))
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    with pytest.raises(ValueError, match=r"cut\.pth: storage .* truncated"):
        load_torch_state_dict(path)


def test_zip_without_storage_entry(tmp_path):
    state, storages = _tensors(ARRAYS)
    path = tmp_path / "nostorage.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", _pickle(state))
    with pytest.raises(ValueError, match="storage entry 'archive/data/1000' is missing"):
        load_torch_state_dict(path)


def test_efficientnet_loader_names_missing_key(tmp_path):
    from udsph_tf.models.backbones.efficientnet_lite import (efficientnet_lite0,
                                                             load_efficientnet_lite0_weights)
    path = tmp_path / "partial.pth"
    write_zip_checkpoint(path, *_tensors({"_conv_stem.weight":
                                          np.zeros((32, 3, 3, 3), np.float32)}))
    model = efficientnet_lite0((32, 32, 3))
    with pytest.raises(ValueError, match=r"partial\.pth: key '_bn0.weight' missing"):
        load_efficientnet_lite0_weights(model, path)
    wrong = tmp_path / "wrong.pth"
    write_zip_checkpoint(wrong, *_tensors({"_conv_stem.weight":
                                           np.zeros((16, 3, 3, 3), np.float32)}))
    with pytest.raises(ValueError, match=r"'_conv_stem.weight' has shape \(16, 3, 3, 3\)"):
        load_efficientnet_lite0_weights(model, wrong)
