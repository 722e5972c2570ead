"""SavedModels for TF Serving, in-graph retrieval, models.config, warm-up, and the encoders
and code databases of a trained run (`--mode=export` and `--mode=search` are in udsph_tf/modes/)."""

from udsph_tf.export.codes import (RunEncoders, SavedModelEncoders, build_database,
                                   cached_database, latest_export)
from udsph_tf.export.exporter import (IMAGE_ENCODER, IMAGE_TO_TEXT, MODEL_NAMES, TEXT_ENCODER,
                                      TEXT_TO_IMAGE, ExportResult, export_run)
from udsph_tf.export.layout import read_metadata, run_name_of
from udsph_tf.export.restore import raw_image_run_error, recorded_input_spec

__all__ = ["IMAGE_ENCODER", "IMAGE_TO_TEXT", "MODEL_NAMES", "TEXT_ENCODER", "TEXT_TO_IMAGE",
           "ExportResult", "RunEncoders", "SavedModelEncoders", "build_database",
           "cached_database", "export_run", "latest_export", "raw_image_run_error",
           "read_metadata", "recorded_input_spec", "run_name_of"]
