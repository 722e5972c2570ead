"""Files written whole or not at all: a temporary file beside the target, then os.replace."""

import contextlib
import json
import os
import uuid

import numpy as np


@contextlib.contextmanager
def atomic_open(path, mode="w"):
    """An open file whose content replaces `path` when the with-block ends without error.

    Readers never see a half-written file and a kill leaves the old one (or none); on an
    error the temporary file is removed. mode: "w" (text) or "wb" (e.g. np.savez into it).
    """
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path, text):
    with atomic_open(path) as f:
        f.write(text)
    return path


def write_json(path, obj):
    """JSON with sorted keys; numpy scalars and arrays are written as numbers and lists."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=json_default)
                      + "\n")


def write_npz(path, arrays):
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")
