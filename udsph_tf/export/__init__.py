"""SavedModels for TF Serving (`--mode=export`) and the code databases `--mode=search` uses.

    result = export_from_checkpoint(config)   # export/<run>/{image_encoder,text_encoder,
                                              #   image_to_text,text_to_image}/<version>/
    db = build_code_database(config, "text")  # CodeDatabase of the run's database split
"""

import dataclasses
import os
import sys

import numpy as np

from udsph_tf import run_identity
from udsph_tf.export.codes import (RunEncoders, SavedModelEncoders, build_database,
                                   cached_database, latest_export)
from udsph_tf.export.exporter import (IMAGE_ENCODER, IMAGE_TO_TEXT, MODEL_NAMES, TEXT_ENCODER,
                                      TEXT_TO_IMAGE, ExportResult, export_run)
from udsph_tf.export.layout import read_metadata, run_name_of
from udsph_tf.export.restore import raw_image_run_error, restore_encoders, run_config

__all__ = ["IMAGE_ENCODER", "IMAGE_TO_TEXT", "MODEL_NAMES", "TEXT_ENCODER", "TEXT_TO_IMAGE",
           "ExportResult", "LoadedRun", "RunEncoders", "SavedModelEncoders",
           "build_code_database", "build_database", "cached_database", "export_from_checkpoint",
           "export_run", "latest_export", "load_run", "raw_image_run_error", "read_metadata",
           "restore_encoders", "run_config"]


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
                           source=f"checkpoint:{os.path.basename(self.checkpoint)}")


def load_run(config, data=None, split=None):
    """The trained run in config.workdir: its data, split and restored encoders."""
    cfg = run_config(config)
    if data is None or split is None:
        from udsph_tf.data import load_dataset_from_config, split_from_config
        data = data if data is not None else load_dataset_from_config(cfg)
        split = split if split is not None else split_from_config(cfg, data)
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


def build_code_database(config, modality, data=None, split=None, rows=None):
    """CodeDatabase of one modality's codes for the run's database split (or `rows`), encoded
    with the run's selected checkpoint."""
    run = load_run(config, data, split)
    rows = run.split.database_idx if rows is None else np.asarray(rows, np.int64)
    return build_database(run.encoders(), run.data, rows, modality, run.run_name)
