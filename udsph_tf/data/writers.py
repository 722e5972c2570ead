"""Write arrays in the release formats (MATLAB v5 and v7.3), for fixtures and conversions."""

import time

import numpy as np

_MATLAB_CLASS = {"f8": "double", "f4": "single", "u1": "uint8", "i1": "int8", "u2": "uint16",
                 "i2": "int16", "u4": "uint32", "i4": "int32", "u8": "uint64", "i8": "int64",
                 "b1": "logical"}


def write_mat_v5(path, arrays: dict) -> None:
    import scipy.io
    scipy.io.savemat(path, arrays, do_compression=True)


def write_mat73(path, arrays: dict) -> None:
    """A .mat v7.3 laid out the way MATLAB's `save -v7.3` does for numeric matrices: an HDF5
    file behind a 512-byte text header, each array stored column-major (so h5py sees it
    transposed) with a MATLAB_class attribute. No cell arrays, hence no #refs# group."""
    import h5py
    with h5py.File(path, "w", userblock_size=512) as f:
        for key, value in arrays.items():
            arr = np.asarray(value)
            if arr.ndim < 2:
                arr = arr.reshape(-1, 1)  # MATLAB has no 1-D arrays
            cls = _MATLAB_CLASS.get(arr.dtype.str[1:])
            if cls is None:
                raise ValueError(f"write_mat73: {key!r} has unsupported dtype {arr.dtype}")
            store = arr.astype(np.uint8) if arr.dtype == np.bool_ else arr
            ds = f.create_dataset(key, data=np.ascontiguousarray(store.T))
            ds.attrs["MATLAB_class"] = np.bytes_(cls)
            if cls == "logical":
                ds.attrs["MATLAB_int_decode"] = np.int32(1)
    text = ("MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: "
            f"{time.strftime('%a %b %d %H:%M:%S %Y')} HDF5 schema 1.00 .").encode("ascii")
    header = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as f:
        f.write(header)
