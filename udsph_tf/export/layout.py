"""The export/<run>/<model>/<version>/ layout: version numbers and atomic SavedModel writes."""

import json
import os
import shutil
import tempfile

import tensorflow as tf

from udsph_tf.errors import ConfigError, DataError, MissingFileError
from udsph_tf.files import write_text

METADATA_FILE = "udsph_export.json"  # beside the warm-up file in assets.extra/


def run_name_of(config):
    name = config.run_name or os.path.basename(os.path.normpath(config.workdir))
    if not name or name in (".", ".."):
        raise ConfigError(f"--workdir={config.workdir}: cannot derive a run name from it; "
                          "give --run_name")
    return name


def existing_versions(base_path):
    """Integer version folders under a model's base path (what TF Serving would consider)."""
    if not os.path.isdir(base_path):
        return []
    return sorted(int(d) for d in os.listdir(base_path)
                  if d.isdigit() and os.path.isdir(os.path.join(base_path, d)))


def choose_version(run_dir, model_names, requested=0):
    """`requested` if > 0 (refusing to overwrite), else one more than the highest version of
    any model of the run, so the models exported together share a version number."""
    if requested < 0:
        raise ConfigError(f"--export_version must be >= 0, got {requested}")
    taken = {name: existing_versions(os.path.join(run_dir, name)) for name in model_names}
    if requested:
        clash = [name for name, versions in taken.items() if requested in versions]
        if clash:
            raise ConfigError(f"--export_version={requested}: version {requested} already "
                              f"exists for {clash} under {run_dir}; choose another "
                              "--export_version or 0 for the next")
        return requested
    return 1 + max((max(v) for v in taken.values() if v), default=0)


def save_atomically(module, signatures, target_dir, extra_files=None):
    """tf.saved_model.save into a hidden sibling, then rename into place.

    TF Serving polls the base path and loads any new integer folder: a half-written version
    must never appear under its final name. `extra_files` {name: writer(dir)} add files to
    assets.extra/ before the rename.
    """
    if os.path.exists(target_dir):
        raise FileExistsError(f"{target_dir} already exists; SavedModel versions are immutable")
    parent = os.path.dirname(target_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
    try:
        tf.saved_model.save(module, tmp, signatures=signatures)
        for write in (extra_files or {}).values():
            write(tmp)
        os.rename(tmp, target_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target_dir


def write_metadata(saved_model_dir, metadata):
    extra = os.path.join(saved_model_dir, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    path = os.path.join(extra, METADATA_FILE)
    write_text(path, json.dumps(metadata, indent=2, sort_keys=True, default=str) + "\n")
    return path


def read_metadata(saved_model_dir):
    path = os.path.join(saved_model_dir, "assets.extra", METADATA_FILE)
    if not os.path.exists(path):
        raise MissingFileError(f"{path} not found: not a udsph-tf export")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: unreadable export metadata ({err})") from None


def run_stamp(saved_model_dir):
    """The run stamp of an export (run_identity.export_stamp), or None for an export made
    before stamps or without metadata."""
    try:
        return read_metadata(saved_model_dir).get("run")
    except MissingFileError:
        return None


def check_run_owner(run_dir, model_names, stamp):
    """Refuse to add versions of one run beside those of another (same export name, e.g. two
    workdirs with one basename): TF Serving would serve whichever was exported last, and
    search would find the other run's encoders. A retrained run in the same workdir (new run
    id, same workdir) may add versions; unstamped older exports are left alone."""
    if not stamp or not stamp.get("run_id"):
        return
    for name in model_names:
        for version in existing_versions(os.path.join(run_dir, name)):
            other = run_stamp(os.path.join(run_dir, name, str(version)))
            if (other and other.get("run_id") and other["run_id"] != stamp["run_id"]
                    and os.path.abspath(other.get("workdir") or "") != stamp.get("workdir")):
                raise ConfigError(
                    f"{run_dir}: holds exports of another run ({other.get('workdir')}, version "
                    f"{version} of {name}), not of --workdir={stamp.get('workdir')}; export "
                    "this run under its own name (--run_name=NAME) or --export_dir")
