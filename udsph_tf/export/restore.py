"""Rebuild ImgNet/TxtNet of a trained run and restore them from its selected checkpoint."""

import dataclasses
import json
import os
import sys

import tensorflow as tf

from udsph_tf.config import Config, config_fields

# Fields that shape the networks or pick the data: export/search must use the run's values.
RUN_FIELDS = (
    "bits", "feature_dim", "labnet_hidden", "imgnet_hidden", "txtnet_hidden", "txt_scales",
    "disc_hidden", "dropout", "label_net", "adversarial", "attention", "attention_dim",
    "attention_direction", "attention_pool", "lambda_softmax", "lambda_lse", "image_regions",
    "max_tokens", "token_dim", "region_dim", "backbone",
    "dataset", "data_dir", "data_source", "tfds_data_dir", "image_file", "tag_file",
    "label_file", "image_key", "tag_key", "label_key", "split_file", "split_seed",
    "num_query", "num_train", "num_val", "seed")


def raw_image_run_error(dataset_name, what):
    """The ValueError for export/search of a run that reads raw images (--image_dir): only
    runs trained on image features are served, so say how to get one."""
    return ValueError(
        f"{dataset_name}: {what} needs a run trained on image features, and this one reads raw "
        "images (--image_dir); serving a raw-image ImgNet is not supported. Extract the "
        "features with the same backbone (--mode=extract --image_dir=... --backbone=... "
        "--feature_file=F), train on them (--image_file=F --image_key=features) and use that "
        "run")


def recorded_config(workdir):
    """The Config a run recorded in metrics.json (None when the run never finished)."""
    path = os.path.join(workdir, "metrics.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            recorded = json.load(f).get("config")
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable run record ({err})") from None
    return recorded if isinstance(recorded, dict) else None


def run_config(config):
    """`config` with the run's recorded model/data fields where `config` keeps the default.

    So `--mode=export --workdir=W` needs no repetition of the training flags; a flag given
    with a non-default value still wins (and is reported when it differs from the record).
    """
    recorded = recorded_config(config.workdir)
    if recorded is None:
        return config
    defaults = Config()
    names = {f.name for f in config_fields()}
    changes, overridden = {}, []
    for name in RUN_FIELDS:
        if name not in names or name not in recorded:
            continue
        current, default = getattr(config, name), getattr(defaults, name)
        if current == default:
            changes[name] = recorded[name]
        elif current != recorded[name]:
            overridden.append(f"--{name}={current!r} (run: {recorded[name]!r})")
    if overridden:
        print("note: flags differ from the run's record in metrics.json: "
              + ", ".join(overridden), file=sys.stderr)
    return dataclasses.replace(config, **changes)


def selected_checkpoint(workdir):
    """Path of the selected (best validation) checkpoint the trainer keeps under workdir."""
    from udsph_tf.training.checkpointing import BEST_DIR
    best_dir = os.path.join(workdir, BEST_DIR)
    path = tf.train.latest_checkpoint(best_dir)
    if not path:
        raise FileNotFoundError(
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
    path = checkpoint_path or selected_checkpoint(config.workdir)
    models = build_models(config, image_shape, tag_dim, num_labels)
    imgnet, txtnet = models["imgnet"], models["txtnet"]
    ckpt = tf.train.Checkpoint(model_imgnet=imgnet, model_txtnet=txtnet)
    try:
        status = ckpt.restore(path)
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as err:
        raise ValueError(
            f"checkpoint {path} does not match the networks built from the flags "
            f"(bits={config.bits}, image input {tuple(image_shape)}, tag_dim={tag_dim}, "
            f"{num_labels} labels): {str(err).splitlines()[0]}") from None
    status.expect_partial()  # the rest of the run state is deliberately not restored
    check_all_tracked(ckpt, {"imgnet": imgnet, "txtnet": txtnet}, path)
    return imgnet, txtnet, path


def check_all_tracked(checkpoint, models, path=""):
    """Refuse weights a checkpoint cannot hold: a variable not reachable from the checkpoint
    object (e.g. a layer kept in a plain list inside a Keras 3 layer, which tf.train does not
    traverse) was never saved, so after a restore it still holds its random initial value."""
    reachable = {id(t) for t in tf.train.TrackableView(checkpoint).descendants()}
    missing = [v.path for model in models.values() for v in model.variables
               if id(v) not in reachable]
    if missing:
        raise ValueError(
            f"{len(missing)} network variable(s) are not tracked by the checkpoint "
            f"{path or ''} and would be exported with random values: {missing[:6]}. "
            "Their layers are invisible to tf.train.Checkpoint (e.g. Keras layers held in a "
            "Python list); assign them as attributes in the model and retrain.")
