"""A run's identity (run.json: config + data fingerprint) and the checks that keep resume,
eval, export and search on the model and data the run was trained with.

No TensorFlow import at module level: main.py resolves the flags with it before the heavy
imports, and `udsph_tf.retrieval.cli` must stay importable without TensorFlow.
"""

import dataclasses
import datetime
import hashlib
import json
import math
import os
import sys
import uuid

import numpy as np

from udsph_tf.config import Config, config_fields
from udsph_tf.errors import ConfigError, DataError, MissingFileError
from udsph_tf.files import write_json
from udsph_tf.rundir import CKPT_DIR, CKPT_NAME, METRICS_FILE, RUN_FILE, checkpoint_label

RECORD_FORMAT = 1

# Fields that may change between sessions of one run (a resume, eval, export, search): how
# long and how visibly it trains, where exports go, what search asks. `workdir` may move;
# `deterministic` only pins op kernels and changes nothing a checkpoint holds; `fused_adam`
# applies the same Adam rule to the same slots with another kernel; `refit` adds a phase after
# the selection, in its own folder (refit/), and leaves the selection as it is. Every other
# Config field shapes the networks, the training recipe or the data, and is fixed by the
# run's first session (docs/reliability.md, Runs that cannot be mixed up).
BUDGET_FIELDS = (
    "mode", "workdir", "epochs", "patience", "eval_every", "keep_checkpoints", "progress",
    "num_replicas", "deterministic", "fused_adam", "refit", "export_dir", "run_name",
    "export_version", "query_tags", "query_image_row", "query_image_file", "top_k",
    "search_backend", "feature_file", "cache_dir")

# Where the data lives. A moved data set may be named by other paths: the data fingerprint,
# not the path, decides whether it is the run's data (runs recorded before run.json, which
# have no fingerprint, compare the paths).
LOCATION_FIELDS = ("data_dir", "tfds_data_dir", "image_file", "tag_file", "label_file",
                   "split_file", "image_dir")

# --mode=search: --backbone/--backbone_weights name the photo query's feature extractor,
# not the run's network input.
SEARCH_QUERY_FIELDS = ("backbone", "backbone_weights")

# Arrays above this size are hashed on a fixed strided sample of rows (plus their shape):
# sha1 reads ~0.5-1 GB/s, and a NUS-WIDE pixel array is tens of GB.
SAMPLE_ABOVE_BYTES = 256 << 20
SAMPLE_BYTES = 64 << 20
_HASH_CHUNK_BYTES = 16 << 20


# --- the record ------------------------------------------------------------------------------

def read_record(workdir):
    """The run's record: run.json, else (runs that predate it) {"config": metrics.json's config,
    "legacy": "metrics.json"}, else None. An unreadable file is a DataError naming it."""
    path = os.path.join(workdir, RUN_FILE)
    if os.path.exists(path):
        record = _read_json(path)
        if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
            raise DataError(f"{path}: unreadable run record (no config)")
        return record
    config = recorded_metrics_config(workdir)
    return None if config is None else {"config": config, "legacy": "metrics.json"}


def recorded_metrics_config(workdir):
    """The Config a finished run recorded in metrics.json (None when it never finished)."""
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return None
    recorded = _read_json(path)
    recorded = recorded.get("config") if isinstance(recorded, dict) else None
    return recorded if isinstance(recorded, dict) else None


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: unreadable run record ({err})") from None


def new_record(config, data_print):
    """A fresh run's record; run_id is new for every training started from scratch, so an
    export of an earlier training in the same (or a same-named) workdir is told apart."""
    config_dict = dataclasses.asdict(config)
    return {"format": RECORD_FORMAT, "run_id": uuid.uuid4().hex,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "fingerprint": fingerprint(config_dict, data_print),
            "budget_fields": list(BUDGET_FIELDS), "config": config_dict, "data": data_print}


def write_record(workdir, record):
    return write_json(os.path.join(workdir, RUN_FILE), record)


def fingerprint(config_dict, data_print):
    """sha1 of what fixes a run: its model/recipe fields and its data (not paths, seeds of
    fixed splits or anything in BUDGET_FIELDS)."""
    fixed = {k: v for k, v in config_dict.items()
             if k not in BUDGET_FIELDS and k not in LOCATION_FIELDS}
    blob = json.dumps({"config": fixed, "data": _comparable(data_print)}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()


# --- the data fingerprint --------------------------------------------------------------------

def data_fingerprint(data, split, config=None):
    """Dataset name, the paths it came from, shape/dtype/sha1 of images, tags and labels, a
    hash of the item ids, and the split (seed, source, sizes, sha1 of its indices).

    Raw-image runs hash the image file names instead of the decoded pixels (or the backbone
    outputs computed from them, which float nondeterminism may change)."""
    raw = data.image_paths is not None
    arrays = {"images": array_digest(data.images, content=not raw),
              "tags": array_digest(data.tags), "labels": array_digest(data.labels)}
    out = {"dataset": str(data.name), "arrays": arrays, "ids": _ids_digest(data.ids)}
    if raw:
        names = "\n".join(os.path.basename(str(p)) for p in data.image_paths)
        out["image_files"] = {"count": len(data.image_paths),
                              "sha1": hashlib.sha1(names.encode()).hexdigest()}
    if config is not None:
        out["files"] = {name: getattr(config, name) for name in LOCATION_FIELDS
                        if getattr(config, name)}
    h = hashlib.sha1()
    for name in ("query_idx", "database_idx", "train_idx", "val_idx"):
        h.update(name.encode())
        h.update(np.ascontiguousarray(getattr(split, name), dtype="<i8").tobytes())
    out["split"] = {"seed": int(split.seed), "source": str(split.source),
                    "sizes": split.sizes(), "sha1": h.hexdigest()}
    return out


def array_digest(a, content=True):
    """{"shape", "dtype", "sha1", "rows_hashed"} of an array (a memory map is read in chunks).

    Above SAMPLE_ABOVE_BYTES only every k-th row is hashed (k fixed by the shape), so the same
    file always gives the same digest and a changed file almost always another one."""
    if a is None:
        return None
    a = np.asarray(a) if not isinstance(a, np.ndarray) else a
    out = {"shape": [int(s) for s in a.shape], "dtype": a.dtype.str}
    if not content:
        return out
    part = a
    if a.ndim and len(a) > 1 and a.nbytes > SAMPLE_ABOVE_BYTES:
        row_bytes = max(1, a.nbytes // len(a))
        stride = math.ceil(len(a) / max(1, SAMPLE_BYTES // row_bytes))
        part = a[::stride]
    h = hashlib.sha1(repr((out["shape"], out["dtype"])).encode())
    if part.ndim == 0:
        h.update(np.ascontiguousarray(part).tobytes())
    else:
        step = max(1, _HASH_CHUNK_BYTES // max(1, part.itemsize * int(np.prod(part.shape[1:]))))
        for i in range(0, len(part), step):
            h.update(np.ascontiguousarray(part[i:i + step]).tobytes())
    out["sha1"] = h.hexdigest()
    out["rows_hashed"] = int(len(part)) if part.ndim else 1
    return out


def _ids_digest(ids):
    ids = np.asarray(ids)
    if ids.dtype.kind in "OUS":
        blob = "\n".join(str(i) for i in ids.tolist()).encode()
        return {"count": int(len(ids)), "sha1": hashlib.sha1(blob).hexdigest()}
    return {"count": int(len(ids)), "sha1": array_digest(ids.astype("<i8"))["sha1"]}


def _comparable(data_print):
    """The parts of a data fingerprint that must match: content, not where it was read from
    or which seed named a fixed split."""
    if not data_print:
        return {}
    out = {k: v for k, v in data_print.items() if k not in ("files", "split")}
    split = data_print.get("split") or {}
    out["split"] = {"sizes": split.get("sizes"), "sha1": split.get("sha1")}
    return out


def data_differences(recorded, current):
    """Human-readable differences between two data fingerprints ([] when the data match)."""
    if not recorded or not current:
        return []
    diffs = []
    if recorded.get("dataset") != current.get("dataset"):
        diffs.append(f"dataset {recorded.get('dataset')!r}, now {current.get('dataset')!r}")
    for name in ("images", "tags", "labels"):
        was, now = (recorded.get("arrays") or {}).get(name), (current.get("arrays") or {}).get(name)
        if was != now:
            diffs.append(f"{name} {_describe(was)}, now {_describe(now)}")
    for name in ("ids", "image_files"):
        if recorded.get(name) != current.get(name):
            diffs.append(f"{name.replace('_', ' ')} ({(recorded.get(name) or {}).get('count')} "
                         f"items) differ, now {(current.get(name) or {}).get('count')} items")
    split_was, split_now = recorded.get("split") or {}, current.get("split") or {}
    if (split_was.get("sha1"), split_was.get("sizes")) != (split_now.get("sha1"),
                                                            split_now.get("sizes")):
        diffs.append(f"split {_describe_split(split_was)}, now {_describe_split(split_now)}")
    return diffs


def _describe(digest):
    if not digest:
        return "none"
    text = "x".join(str(s) for s in digest["shape"]) + " " + np.dtype(digest["dtype"]).name
    return text + (f" sha1 {digest['sha1'][:10]}" if "sha1" in digest else "")


def _describe_split(split):
    sizes = split.get("sizes") or {}
    return (f"(seed {split.get('seed')}, {split.get('source')}, "
            f"{sizes.get('query')} queries, {sizes.get('train')} train, {sizes.get('val')} val, "
            f"sha1 {str(split.get('sha1'))[:10]})")


# --- comparing flags with the record ---------------------------------------------------------

def resolve(config, explicit=None, exempt=(), record=None, resuming=False):
    """`config` with every recorded model/data field taken from the run's record.

    explicit: names of the flags given on the command line (main.py); None (library callers)
    counts a field as given when it differs from its Config default. A given flag that
    contradicts the record is a ConfigError listing all of them; a given data path that
    differs is kept (the data fingerprint is checked when the data is loaded). `exempt`
    fields are neither taken nor compared. resuming: a --mode=train re-run (wording of the
    error). No record: `config` unchanged.
    """
    record = read_record(config.workdir) if record is None else record
    if record is None:
        return config
    recorded, defaults = record["config"], Config()
    paths_free = bool(record.get("data"))
    changes, conflicts = {}, []
    for field in config_fields():
        name = field.name
        if name in BUDGET_FIELDS or name in exempt or name not in recorded:
            continue
        current, was = getattr(config, name), recorded[name]
        if current == was:
            continue
        given = (name in explicit) if explicit is not None else \
            current != getattr(defaults, name)
        if not given:
            changes[name] = _typed(was, getattr(defaults, name))
        elif not (paths_free and name in LOCATION_FIELDS):
            conflicts.append((name, was, current))
    if conflicts:
        raise ConfigError(mismatch_message(config.workdir, "train" if resuming else "use",
                                           conflicts))
    if resuming and changes:  # e.g. a default changed since: say which value is in force
        print(f"note: --workdir={config.workdir} resumes with its recorded "
              + " ".join(flag_text(n, v) for n, v in changes.items()), file=sys.stderr)
    return dataclasses.replace(config, **changes) if changes else config


def config_differences(config, record, exempt=()):
    """(name, recorded, current) of every recorded model/data field `config` changes."""
    recorded = record["config"]
    paths_free = bool(record.get("data"))
    out = []
    for field in config_fields():
        name = field.name
        if (name in BUDGET_FIELDS or name in exempt or name not in recorded
                or (paths_free and name in LOCATION_FIELDS)):
            continue
        if getattr(config, name) != recorded[name]:
            out.append((name, recorded[name], getattr(config, name)))
    return out


def mismatch_message(workdir, mode, conflicts=(), data_diffs=(), paths=()):
    """One line: what the run was trained with, what the flags (or data) say, what to do."""
    parts = []
    if conflicts:
        parts.append("this run was trained with "
                     + " ".join(flag_text(n, was) for n, was, _ in conflicts)
                     + ", the flags say " + " ".join(flag_text(n, now) for n, _, now in conflicts))
    if data_diffs:
        where = (" (" + ", ".join(f"{flag_text(n, was)} now {flag_text(n, now)}"
                                  for n, was, now in paths) + ")") if paths else ""
        parts.append(("and " if parts else "this run was trained ") + "on other data: "
                     + "; ".join(data_diffs) + where)
    if mode == "train":
        fix = "use another --workdir or the same " + " and ".join(
            w for w, on in (("flags", conflicts), ("data", data_diffs)) if on)
    elif conflicts:
        fix = ("drop these flags (the run's recorded values are used) or use another "
               "--workdir")
    else:
        fix = "point the data flags at the data this run was trained on"
    return f"--workdir={workdir}: " + ", ".join(parts) + "; " + fix


def flag_text(name, value):
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no{name}"
    if isinstance(value, float):
        short = format(value, "g")
        return f"--{name}={short if float(short) == value else repr(value)}"
    if isinstance(value, str) and value == "":
        return f"--{name}=''"
    return f"--{name}={value}"


def _typed(value, default):
    """A JSON value back in the field's type (JSON has no int/float distinction for 1.0)."""
    if isinstance(default, bool) or default is None:
        return value
    if isinstance(default, (int, float)) and isinstance(value, (int, float)):
        return type(default)(value)
    return value


# --- per mode --------------------------------------------------------------------------------

def config_for_mode(config, explicit):
    """main.py: the Config a mode runs with. eval/export/search (and a train re-run that
    resumes a checkpoint) take the run's recorded model/data fields; a flag given on the
    command line that contradicts them is a ConfigError."""
    if config.mode == "train":
        if not has_checkpoint(config.workdir):
            if os.path.exists(os.path.join(config.workdir, METRICS_FILE)):
                # A finished run whose ckpt/ was removed: starting afresh would overwrite
                # its metrics.json and best/ without a word.
                raise ConfigError(
                    f"--workdir={config.workdir}: holds a finished run (metrics.json) but no "
                    "checkpoint to resume; use another --workdir, or delete this one to "
                    "train it again")
            return config  # a fresh start records its own run.json
        return resolve(config, explicit, resuming=True)
    if config.mode in ("eval", "export"):
        return resolve(config, explicit)
    if config.mode == "search":
        return resolve(config, explicit, exempt=SEARCH_QUERY_FIELDS)
    return config


def has_checkpoint(workdir):
    """Whether --mode=train in `workdir` resumes (a checkpoint in its ckpt/)."""
    directory = os.path.join(workdir, CKPT_DIR)
    if not os.path.isdir(directory):
        return False
    return any(entry.startswith(f"{CKPT_NAME}-") and entry.endswith(".index")
               for entry in os.listdir(directory)) \
        or os.path.exists(os.path.join(directory, "checkpoint"))


def start_training(config, data, split, write=True):
    """Trainer.run, before anything is restored or written: a resume must be the recorded run
    (same model/recipe fields, same data) or it stops with one ConfigError; a fresh start
    records run.json. Returns the record in force."""
    data_print = data_fingerprint(data, split, config)
    if has_checkpoint(config.workdir):
        record = read_record(config.workdir)
        if record is not None:
            conflicts = config_differences(config, record)
            data_diffs = data_differences(record.get("data"), data_print)
            if conflicts or data_diffs:
                raise ConfigError(mismatch_message(
                    config.workdir, "train", conflicts, data_diffs,
                    _path_changes(record, config) if data_diffs else ()))
            if record.get("run_id"):
                return record
            # A run older than run.json whose metrics.json config matched: record it from now
            # on (its data cannot be checked; the fingerprint is the data of this session).
        else:
            # A checkpoint with no record at all (an older run killed before metrics.json):
            # nothing to check, and nothing written, so a wrong guess is never made permanent.
            return new_record(config, data_print)
    record = new_record(config, data_print)
    if write:
        write_record(config.workdir, record)
    return record


def check_data(config, data, split):
    """eval/export/search: the loaded data must be the data the run was trained on."""
    record = read_record(config.workdir)
    if record is None or not record.get("data"):
        return
    diffs = data_differences(record["data"], data_fingerprint(data, split, config))
    if diffs:
        raise ConfigError(mismatch_message(config.workdir, "use", (), diffs,
                                           _path_changes(record, config)))


def _path_changes(record, config):
    recorded = record["config"]
    return [(n, recorded[n], getattr(config, n)) for n in LOCATION_FIELDS
            if n in recorded and recorded[n] != getattr(config, n)]


def evaluation_config(config):
    """evaluate(): refuse a missing run before anything is created in --workdir (TensorBoard
    writers make their folders), then take the recorded model/data fields."""
    require_trained_run(config.workdir)
    return resolve(config)


def require_trained_run(workdir):
    """MissingFileError unless `workdir` is a run directory with a selected checkpoint."""
    if not os.path.isdir(workdir):
        raise MissingFileError(f"--workdir={workdir}: no such run directory (train first: "
                               "--mode=train with the same --workdir)")
    from udsph_tf.training.checkpointing import selected_checkpoint
    try:
        return selected_checkpoint(workdir)
    except FileNotFoundError as err:
        raise MissingFileError(f"--workdir={workdir}: {err}") from None


# --- exports -----------------------------------------------------------------------------------

def export_stamp(workdir, checkpoint):
    """What an export records about its run: run id and fingerprint from run.json, the
    workdir, and the checkpoint (path and training step) the encoders came from."""
    record = read_record(workdir) or {}
    return {"run_id": record.get("run_id"), "fingerprint": record.get("fingerprint"),
            "created": record.get("created"), "workdir": os.path.abspath(workdir),
            "checkpoint": os.path.abspath(checkpoint),
            "checkpoint_step": checkpoint_step(checkpoint)}


def checkpoint_step(path):
    """The training step a checkpoint was saved at (its `step` variable; else the number in
    its name, which the trainer sets to the step)."""
    try:
        import tensorflow as tf
        return int(tf.train.load_checkpoint(path).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))
    except Exception:  # noqa: BLE001 - a checkpoint without the scalar: fall back to the name
        tail = os.path.basename(path).rsplit("-", 1)[-1]
        return int(tail) if tail.isdigit() else None


def check_export(workdir, saved_model_dirs, reexport, run_name=""):
    """--mode=search with an export: every SavedModel used must carry the stamp of the run in
    `workdir` (run.json's run id) and come from its current selected checkpoint. Runs without
    run.json are not checked (nothing to compare with). reexport: the export command to
    suggest (without --run_name; `run_name` is the one given, if any)."""
    record = read_record(workdir) if os.path.isdir(workdir) else None
    if not record or not record.get("run_id"):
        return
    from udsph_tf.export.layout import run_stamp
    from udsph_tf.training.checkpointing import selected_checkpoint
    try:
        best = selected_checkpoint(workdir)
    except FileNotFoundError:
        best = None
    best_step = checkpoint_step(best) if best else None
    here = os.path.abspath(workdir)
    same_name = reexport + (f" --run_name={run_name}" if run_name else "")
    for path in saved_model_dirs:
        stamp = run_stamp(path)
        if not stamp or not stamp.get("run_id"):
            raise ConfigError(f"{path}: this export carries no run stamp (made before run "
                              f"identities), so it cannot be shown to come from --workdir="
                              f"{workdir}; re-export: {same_name}")
        if stamp["run_id"] != record["run_id"]:
            if os.path.abspath(stamp.get("workdir") or "") != here:
                raise ConfigError(
                    f"{path}: exported from another run ({stamp.get('workdir')}, run id "
                    f"{stamp['run_id'][:12]}), not from --workdir={workdir} (run id "
                    f"{record['run_id'][:12]}): the two runs share an export name; export this "
                    f"run under its own name: {reexport} --run_name=NAME, and search with that "
                    "--run_name")
            raise ConfigError(
                f"{path}: exported from an earlier training of --workdir={workdir} (run id "
                f"{stamp['run_id'][:12]}, now {record['run_id'][:12]}); re-export: {same_name}")
        exported = checkpoint_label(stamp.get("checkpoint") or "?")
        if best_step is not None and (stamp.get("checkpoint_step") != best_step
                                      or exported != checkpoint_label(best)):
            raise ConfigError(
                f"{path}: exported from {exported} (step {stamp.get('checkpoint_step')}), but "
                f"the run's model is now {checkpoint_label(best)} (step {best_step}); "
                f"re-export: {same_name}")
