"""Shared test set-up: two logical CPU devices (for MirroredStrategy tests) and the real data."""

import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# The project's real data lives beside the repository (read in place, never copied).
SHARED_DATA = pathlib.Path(os.environ.get("UDSPH_SHARED_DATA",
                                          REPO_ROOT.parent / "shared" / "data"))
MIRFLICKR_DIR = SHARED_DATA / "mirflickr25k"


def _split_cpu_into_two_devices():
    """Must run before TensorFlow initialises its devices, hence at conftest import."""
    try:
        import tensorflow as tf
    except ImportError:
        return
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    except RuntimeError:
        pass  # already initialised by an earlier import; tests needing two devices check it


_split_cpu_into_two_devices()


@pytest.fixture(scope="session")
def mirflickr_dir():
    """The real MIRFlickr-25K files of ../shared/data, or a skip saying why."""
    if not (MIRFLICKR_DIR / "mirflickr25k-lall.mat").exists():
        pytest.skip(f"real MIRFlickr data not found at {MIRFLICKR_DIR} "
                    "(set UDSPH_SHARED_DATA to the shared data folder)")
    return MIRFLICKR_DIR
