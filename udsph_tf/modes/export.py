"""`--mode=export`: the selected checkpoint of a run -> versioned SavedModels for TF Serving,
models.config, warm-up requests and the code databases; `load_run`, the trained run's data,
split and restored encoders, which --mode=search also uses.

    result = export_from_checkpoint(config)   # export/<run>/{image_encoder,text_encoder,
                                              #   image_to_text,text_to_image}/<version>/
    run = load_run(config)                    # data, split, restored ImgNet/TxtNet
"""

import dataclasses
import os
import sys

import tensorflow as tf

from udsph_tf import rundir, run_identity
from udsph_tf.data.splits import data_and_split
from udsph_tf.errors import ConfigError
from udsph_tf.export.codes import RunEncoders, build_database
from udsph_tf.export.exporter import export_run
from udsph_tf.export.layout import run_name_of
from udsph_tf.export.restore import raw_image_run_error, recorded_input_spec
from udsph_tf.models import build_models
from udsph_tf.training.checkpointing import (CheckpointVersionError, check_all_tracked,
                                             model_objects, restore_weights, selected_checkpoint)


def run(config):
    return export_from_checkpoint(config)


@dataclasses.dataclass
class LoadedRun:
    config: object      # the run's Config (recorded model/data fields filled in)
    data: object        # udsph_tf.data.CrossModalData
    split: object       # udsph_tf.data.Split
    imgnet: object
    txtnet: object
    checkpoint: str
    run_name: str

    def encoders(self):
        return RunEncoders(self.imgnet, self.txtnet,
                           source=f"checkpoint:{rundir.checkpoint_label(self.checkpoint)}")


def load_run(config, data=None, split=None):
    """The trained run in config.workdir: its data, split and restored encoders."""
    cfg = run_identity.resolve(config)
    data, split = data_and_split(cfg, data, split)
    if data.images is None:
        raise raw_image_run_error(data.name, config.mode if config.mode in ("export", "search")
                                  else "export")
    run_identity.check_data(cfg, data, split)  # the data the run was trained on
    imgnet, txtnet, path = restore_encoders(cfg, data.images.shape[1:], data.tag_dim,
                                            data.num_labels)
    return LoadedRun(cfg, data, split, imgnet, txtnet, path, run_name_of(cfg))


def export_from_checkpoint(config, data=None, split=None):
    """`--mode=export`: the selected checkpoint of config.workdir -> versioned SavedModels under
    config.export_dir/<run name>/, TF Serving models.config, warm-up requests, and the
    database code files (databases/v<version>/{image,text}.npz) the retrieval models embed."""
    run = load_run(config, data, split)
    cfg, d, s = run.config, run.data, run.split
    encoders = run.encoders()
    rows = s.database_idx
    image_db = build_database(encoders, d, rows, "image", run.run_name)
    text_db = build_database(encoders, d, rows, "text", run.run_name)
    warm_rows = s.query_idx[:8] if len(s.query_idx) else rows[:8]
    run_dir = os.path.join(cfg.export_dir, run.run_name)
    result = export_run(
        run_dir, imgnet=run.imgnet, txtnet=run.txtnet, image_shape=d.images.shape[1:],
        tag_dim=d.tag_dim, bits=cfg.bits, database_ids=image_db.ids,
        database_image_packed=image_db.packed, database_text_packed=text_db.packed,
        top_k=cfg.top_k, warmup_images=d.images[warm_rows], warmup_tags=d.tags[warm_rows],
        version=cfg.export_version, tag_vocab=d.tag_vocab,
        metadata={"run_name": run.run_name, "checkpoint": run.checkpoint,
                  "workdir": os.path.abspath(cfg.workdir), "dataset": d.name,
                  "split_seed": s.seed, "database": "split.database_idx",
                  "label_names": d.label_names, "config": dataclasses.asdict(cfg),
                  "run": run_identity.export_stamp(cfg.workdir, run.checkpoint)})
    for db in (image_db, text_db):
        db.model_version = str(result.version)
        db.save(os.path.join(run_dir, "databases", f"v{result.version}", f"{db.modality}.npz"))
    print(f"exported {run.run_name} version {result.version} from {run.checkpoint}:",
          file=sys.stderr)
    for name, path in result.paths.items():
        print(f"  {name}: {path}", file=sys.stderr)
    print(f"  TF Serving: tensorflow_model_server --rest_api_port=8501 "
          f"--model_config_file={result.models_config}", file=sys.stderr)
    return result


def restore_encoders(config, image_shape, tag_dim, num_labels, checkpoint_path=None):
    """(imgnet, txtnet, checkpoint path) with the run's selected weights.

    Only the two modality networks are attached to the checkpoint object, so optimizers,
    discriminators, LabNet and buffers are neither restored nor carried into an export.
    Names follow training/checkpointing.RunCheckpoint ("model_imgnet", "model_txtnet").
    """
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
    except CheckpointVersionError:
        raise  # says what is wrong with the checkpoint itself
    except ValueError as err:
        raise ConfigError(
            f"{path}: checkpoint does not match the networks built from the flags "
            f"(bits={config.bits}, image input {tuple(image_shape)}, tag_dim={tag_dim}, "
            f"{num_labels} labels): {str(err).splitlines()[0]}") from None
    return imgnet, txtnet, path
