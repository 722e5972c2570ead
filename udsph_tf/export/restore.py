"""Rebuild ImgNet/TxtNet of a trained run and restore them from its selected checkpoint."""

import json
import os

import tensorflow as tf

from udsph_tf import run_identity
from udsph_tf.errors import ConfigError, DataError, MissingFileError


def raw_image_run_error(dataset_name, what):
    """The ConfigError for export/search of a run that reads raw images (--image_dir): only
    runs trained on image features are served, so say how to get one."""
    return ConfigError(
        f"--image_dir: {what} needs a run trained on image features, and this one "
        f"({dataset_name}) reads raw images; serving a raw-image ImgNet is not supported. "
        "Extract the "
        "features with the same backbone (--mode=extract --image_dir=... --backbone=... "
        "--feature_file=F), train on them (--image_file=F --image_key=features) and use that "
        "run")


def recorded_config(workdir):
    """The Config a run recorded (run.json, else metrics.json for older runs), or None."""
    record = run_identity.read_record(workdir)
    return None if record is None else record["config"]


def run_config(config, explicit=None):
    """`config` with the run's recorded model/data fields (run_identity.resolve): a field left
    at its default takes the recorded value, so `--mode=export --workdir=W` needs no
    repetition of the training flags; a given one that contradicts the record is a
    ConfigError. explicit: the flags given on the command line (None: the non-default ones).
    """
    return run_identity.resolve(config, explicit)


def recorded_input_spec(workdir):
    """The input handling the run resolved at training (run_identity.INPUTS_FILE), or None for
    runs that predate it (then the config alone decides)."""
    from udsph_tf.run_identity import INPUTS_FILE
    path = os.path.join(workdir, INPUTS_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: unreadable run record ({err})") from None


def selected_checkpoint(workdir):
    """Path of the selected (best validation) checkpoint the trainer keeps under workdir."""
    from udsph_tf.training.checkpointing import BEST_DIR
    best_dir = os.path.join(workdir, BEST_DIR)
    path = tf.train.latest_checkpoint(best_dir)
    if not path:
        # No --workdir prefix: main.py adds it (a prefix here would print it twice).
        raise MissingFileError(
            f"no selected checkpoint in {best_dir!r}: train first (--mode=train with the same "
            "--workdir; the best checkpoint is written at the first validation)")
    return path


def restore_encoders(config, image_shape, tag_dim, num_labels, checkpoint_path=None):
    """(imgnet, txtnet, checkpoint path) with the run's selected weights.

    Only the two modality networks are attached to the checkpoint object, so optimizers,
    discriminators, LabNet and buffers are neither restored nor carried into an export.
    Names follow training/checkpointing.RunCheckpoint ("model_imgnet", "model_txtnet").
    """
    from udsph_tf.models import build_models
    from udsph_tf.training.checkpointing import model_objects, restore_weights
    path = checkpoint_path or selected_checkpoint(config.workdir)
    models = build_models(config, image_shape, tag_dim, num_labels,
                          recorded_input_spec(config.workdir))
    imgnet, txtnet = models["imgnet"], models["txtnet"]
    encoders = {"imgnet": imgnet, "txtnet": txtnet}
    check_all_tracked(tf.train.Checkpoint(**model_objects(encoders)), encoders, path)
    try:
        # best/ holds the weights alone (a full run checkpoint also works); every variable of
        # both networks must come from it. A damaged file raises CheckpointUnreadableError.
        restore_weights(path, encoders)
    except ValueError as err:
        raise ConfigError(
            f"{path}: checkpoint does not match the networks built from the flags "
            f"(bits={config.bits}, image input {tuple(image_shape)}, tag_dim={tag_dim}, "
            f"{num_labels} labels): {str(err).splitlines()[0]}") from None
    return imgnet, txtnet, path


def check_all_tracked(checkpoint, models, path=""):
    """Refuse weights a checkpoint cannot hold: a variable not reachable from the checkpoint
    object (e.g. a layer kept in a plain list inside a Keras 3 layer, which tf.train does not
    traverse) was never saved, so after a restore it still holds its random initial value."""
    from udsph_tf.training import checkpointing
    checkpointing.check_all_tracked(checkpoint, models, path)
