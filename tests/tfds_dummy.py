"""The fake TFDS release folders, generated once per test session into a temporary folder."""

import atexit
import functools
import importlib.util
import pathlib
import shutil
import tempfile

_SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "tools" / "make_tfds_dummy_data.py"


@functools.lru_cache(maxsize=None)
def tfds_dummy_data() -> pathlib.Path:
    spec = importlib.util.spec_from_file_location("make_tfds_dummy_data", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = pathlib.Path(tempfile.mkdtemp(prefix="udsph_tfds_dummy_"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return module.write_all(root)
