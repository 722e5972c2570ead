"""The run's checkpoints: the full resumable state in ckpt/, the selected weights in best/.

Why a kill at any moment (even SIGKILL, even inside a save) leaves a resumable run: TensorFlow
writes a checkpoint's data under `<prefix>_temp/` and merges it into `<prefix>.index/.data-*`,
and only then does the CheckpointManager name it in the directory's `checkpoint` index (temp
file + rename); it deletes the previous checkpoint after that. So the index always names
complete checkpoints. What a kill leaves behind (a `*_temp` directory, an unnamed half-merged
prefix, an index temp file) is removed when training starts and after each save. A checkpoint
damaged on disk later (truncated copy, full disk) is skipped with a warning naming its file,
and the newest readable older one is used (with --keep_checkpoints >= 2 there is one).
"""

import glob
import os
import re
import shutil
import sys
import time

import tensorflow as tf
from google.protobuf.message import DecodeError

from udsph_tf.errors import MissingFileError, UserError
from udsph_tf.rundir import BEST_DIR, BEST_NAME, CKPT_DIR, CKPT_NAME, REFIT_DIR

# What an unreadable (truncated, damaged, missing) checkpoint raises on restore: a truncated
# .data file gives IndexError("Read less bytes than requested"), a bad .index or a checksum
# mismatch an OpError. A checkpoint of other networks raises AssertionError/ValueError instead,
# which is not damage and is never skipped.
READ_ERRORS = (tf.errors.OpError, IndexError, DecodeError)


class CheckpointUnreadableError(UserError, OSError):
    """No checkpoint of a directory could be read; the message names every file tried."""


class CheckpointVersionError(UserError, ValueError):
    """A checkpoint written before ImgNet/TxtNet owned the attention's projections."""


# Layers ImgNet and TxtNet own when the attention is on (issue 11); before, the attention
# layer held them (model_attention/region_proj, .../token_proj). Resuming such a checkpoint
# would also need each optimizer's slots remapped (they follow its variable list), so it is
# refused with its cause rather than half-loaded.
ATTENTION_PROJECTIONS = (("imgnet", "region_proj"), ("txtnet", "token_proj"))


def check_attention_projections(path, models):
    """Raise CheckpointVersionError when the networks own attention projections that the
    checkpoint at `path` holds no weights for (called once a restore did not match)."""
    keys = [name for name, _ in tf.train.list_variables(path)]
    missing = [f"{net}.{layer}" for net, layer in ATTENTION_PROJECTIONS
               if getattr(models.get(net), layer, None) is not None
               and not any(k.startswith(f"model_{net}/{layer}/") for k in keys)]
    if missing:
        held = any(k.startswith("model_attention/") for k in keys)
        raise CheckpointVersionError(
            f"{path}: holds no weights for {' and '.join(missing)}: it was written "
            + ("before ImgNet and TxtNet owned the attention's region and word projections "
               "(the attention layer held them then)" if held else "by a run without them")
            + "; this version cannot resume, evaluate or export it with the attention on. "
            "Train the run again in a new --workdir (runs with --attention=none or dense "
            "text are unaffected).")


def _warn(msg):
    print(f"WARNING: {msg}", file=sys.stderr, flush=True)


def _first_line(err):
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def damaged_files(prefix):
    """Which files of the checkpoint `prefix` are bad: its .index if TF cannot read it, else
    its .data shards (truncated, damaged or missing), each with its size on disk."""
    try:
        tf.train.load_checkpoint(prefix)
        files = sorted(glob.glob(glob.escape(prefix) + ".data-*")) or [prefix + ".data-*"]
    except READ_ERRORS:
        files = [prefix + ".index"]
    return ", ".join(f"{f} ({os.path.getsize(f):,} bytes)" if os.path.exists(f)
                     else f"{f} (missing)" for f in files)


def model_objects(models):
    """The checkpoint names of the networks: model_<name> for every built (non-None) one."""
    return {f"model_{k}": v for k, v in models.items() if v is not None}


def check_all_tracked(checkpoint, models, path=""):
    """Refuse weights a checkpoint cannot hold: a variable not reachable from the checkpoint
    object (e.g. a layer kept in a plain list inside a Keras 3 layer, which tf.train does not
    traverse) was never saved, so after a restore it still holds its random initial value."""
    reachable = {id(t) for t in tf.train.TrackableView(checkpoint).descendants()}
    # Dropout's random-stream state (keras SeedGenerator) is not a weight: inference never
    # reads it, and a run's weights-only best/ does not need it.
    missing = [v.path for model in models.values() if model is not None
               for v in model.variables if id(v) not in reachable
               and "seed_generator" not in v.path]
    if missing:
        raise ValueError(
            f"{len(missing)} network variable(s) are not tracked by the checkpoint "
            f"{path or ''} and would be exported with random values: {missing[:6]}. "
            "Their layers are invisible to tf.train.Checkpoint (e.g. Keras layers held in a "
            "Python list); assign them as attributes in the model and retrain.")


def restore_weights(path, models, extra=None):
    """Restore `models` (and the `extra` name -> trackable) from `path`, which may hold more
    (a full run checkpoint) or exactly that (a weights-only best/ checkpoint).

    Every variable of every model must come from the file: one that is not reachable from the
    checkpoint object, or not in the file, raises ValueError. A damaged file raises
    CheckpointUnreadableError naming it.
    """
    ckpt = tf.train.Checkpoint(**model_objects(models), **(extra or {}))
    check_all_tracked(ckpt, models, path)
    try:
        status = ckpt.restore(path)
    except READ_ERRORS as err:
        raise CheckpointUnreadableError(
            f"checkpoint {path} is unreadable: {damaged_files(path)}: {_first_line(err)}") \
            from None
    status.expect_partial()  # optimizers and buffers of a full checkpoint are not wanted here
    try:
        status.assert_existing_objects_matched()
    except AssertionError as err:
        check_attention_projections(path, models)
        raise ValueError(f"{path} lacks variables of the networks: {_first_line(err)}") from None
    return status


def remove_temporaries(directory, name):
    """Delete what an interrupted save leaves: `<name>-N_temp*` directories (TF's unmerged
    shards, as large as a checkpoint) and `checkpoint.tmp*` index temp files. Returns them.

    Only call it where no save can be running: at the start of training, after a save."""
    removed = []
    root = glob.escape(directory)
    for path in sorted(glob.glob(os.path.join(root, f"{glob.escape(name)}-*_temp*"))
                       + glob.glob(os.path.join(root, "checkpoint.tmp*"))):
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
        removed.append(path)
    return removed


def _on_disk(directory, name):
    """{number: prefix} of the `<name>-<number>.index` files in directory."""
    found = {}
    pattern = re.compile(rf"^{re.escape(name)}-(\d+)\.index$")
    for entry in os.listdir(directory) if os.path.isdir(directory) else ():
        m = pattern.match(entry)
        if m:
            found[int(m.group(1))] = os.path.join(directory, entry[:-len(".index")])
    return found


def _remove_unlisted(manager, name):
    """Delete `<name>-N.*` files the manager does not list: checkpoints a kill left unnamed
    (or named only until the sweep of the previous save), which nothing would ever delete."""
    listed = {os.path.abspath(p) for p in manager.checkpoints}
    for prefix in _on_disk(manager.directory, name).values():
        if os.path.abspath(prefix) not in listed:
            for path in glob.glob(glob.escape(prefix) + ".*"):
                os.remove(path)


def candidates(manager, name):
    """Checkpoints to try, best first: the ones the index names (newest first), then any other
    complete-looking prefix on disk (newest first; e.g. when the index file itself is bad)."""
    out = list(reversed(manager.checkpoints))
    named = {os.path.abspath(p) for p in out}
    others = _on_disk(manager.directory, name)
    out += [others[n] for n in sorted(others, reverse=True)
            if os.path.abspath(others[n]) not in named]
    return out


class RunCheckpoint:
    """The run's state: step, epoch, best validation score, split seed, networks, optimizers
    and code/feature buffers, saved together in ckpt/ so a resume restores all of it at once;
    best/ holds the networks (every variable, normalisation statistics included) and the
    scalars only, which is all evaluation, export and search read."""

    def __init__(self, save_root, models, optimizers, buffers, split_seed, keep=1):
        if keep < 1:
            raise ValueError(f"keep_checkpoints must be >= 1, got {keep}")
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.best_score = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_score")
        self.best_epoch = tf.Variable(-1, dtype=tf.int64, trainable=False, name="best_epoch")
        self.split_seed = tf.Variable(int(split_seed), dtype=tf.int64, trainable=False,
                                      name="split_seed")
        self.scalars = dict(step=self.step, epoch=self.epoch, best_score=self.best_score,
                            best_epoch=self.best_epoch, split_seed=self.split_seed)
        self.models = {k: v for k, v in models.items() if v is not None}
        tracked = dict(self.scalars, **model_objects(self.models))
        self.weights = tf.train.Checkpoint(**tracked)
        tracked.update({f"opt_{k}": v for k, v in optimizers.items()})
        tracked.update({f"buf_{k}": v for k, v in buffers.items()})
        self.checkpoint = tf.train.Checkpoint(**tracked)
        self.latest = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(save_root, CKPT_DIR), max_to_keep=keep,
            checkpoint_name=CKPT_NAME)
        self.best = tf.train.CheckpointManager(
            self.weights, os.path.join(save_root, BEST_DIR), max_to_keep=1,
            checkpoint_name=BEST_NAME)
        self._write_seconds = 0.0

    def restore_latest(self):
        """Start of training: clear what an interrupted save left, then restore the newest
        readable checkpoint of ckpt/ (warning about each unreadable one, by file). Returns its
        path, or None for a fresh start; raises CheckpointUnreadableError if none is readable."""
        for directory, name in ((self.latest.directory, CKPT_NAME),
                                (self.best.directory, BEST_NAME)):
            for path in remove_temporaries(directory, name):
                _warn(f"removed {path}, left by an interrupted checkpoint save")
        index = os.path.join(self.latest.directory, "checkpoint")
        if os.path.exists(index) and tf.train.get_checkpoint_state(self.latest.directory) is None:
            _warn(f"{index} is unreadable; looking for checkpoints on disk instead")
        tried = []
        for path in candidates(self.latest, CKPT_NAME):
            try:
                status = self.checkpoint.restore(path)
            except READ_ERRORS as err:
                bad = f"{damaged_files(path)}: {_first_line(err)}"
                tried.append(bad)
                _warn(f"checkpoint {path} is unreadable, skipping it: {bad}")
                continue
            try:
                status.assert_existing_objects_matched()  # other networks: not damage, stop
            except AssertionError:
                check_attention_projections(path, self.models)
                raise
            if tried:
                _warn(f"resuming from the older checkpoint {path}")
            return path
        if tried:
            raise CheckpointUnreadableError(
                f"no readable checkpoint in {self.latest.directory}: " + "; ".join(tried)
                + ". Delete that directory to train this run again from the start (or use "
                "another --workdir); --keep_checkpoints >= 2 keeps an older one to fall back to.")
        return None

    def restore_best(self):
        """Restore the selected (best validation) weights and scalars; raise if there are none
        or if the file is unreadable. A best/ of an older version (full state) also works."""
        path = self.best.latest_checkpoint
        if not path:
            raise FileNotFoundError(
                f"no selected checkpoint in {self.best.directory!r}: train first "
                "(--mode=train with the same --workdir)")
        restore_weights(path, self.models, extra=self.scalars)
        return path

    def _save(self, manager, name):
        t0 = time.perf_counter()
        path = manager.save(checkpoint_number=int(self.step.numpy()))
        _remove_unlisted(manager, name)
        remove_temporaries(manager.directory, name)
        self._write_seconds += time.perf_counter() - t0
        return path

    def save_latest(self):
        """Save the full state to ckpt/ (keeping --keep_checkpoints); returns the path."""
        return self._save(self.latest, CKPT_NAME)

    def save_best(self):
        """Save the weights and scalars to best/ (one kept); returns the path."""
        return self._save(self.best, BEST_NAME)

    def take_write_seconds(self):
        """Seconds spent writing checkpoints since the last call (rounded to ms)."""
        seconds, self._write_seconds = self._write_seconds, 0.0
        return round(seconds, 3)


def model_root(workdir):
    """Where the run's model lives: <workdir>/refit once a --refit phase has finished (its
    best/ is written at its last epoch only), else the workdir itself."""
    refit = os.path.join(workdir, REFIT_DIR)
    return refit if tf.train.latest_checkpoint(os.path.join(refit, BEST_DIR)) else workdir


def selected_checkpoint(workdir):
    """Path of the run's model: the finished refit's weights (--refit), else the selected
    (best validation) checkpoint the trainer keeps under workdir."""
    best_dir = os.path.join(model_root(workdir), BEST_DIR)
    path = tf.train.latest_checkpoint(best_dir)
    if not path:
        # No --workdir prefix: run_identity.require_trained_run adds it (a prefix here would
        # print it twice).
        raise MissingFileError(
            f"no selected checkpoint in {best_dir!r}: train first (--mode=train with the same "
            "--workdir; the best checkpoint is written at the first validation)")
    return path
