"""Encoders of a trained run (checkpoint or export) and the code databases they build."""

import os

import numpy as np
import tensorflow as tf

from udsph_tf.codes import to_codes
from udsph_tf.export import layout
from udsph_tf.export.exporter import IMAGE_ENCODER, TEXT_ENCODER
from udsph_tf.export.restore import raw_image_run_error
from udsph_tf.models.encoding import Encoder
from udsph_tf.retrieval import CodeDatabase

MODALITIES = ("image", "text")


class RunEncoders:
    """hash outputs of both modalities from in-process Keras models (restored checkpoint)."""

    def __init__(self, imgnet, txtnet, source):
        self.models = {"image": imgnet, "text": txtnet}
        self.source = source  # recorded as the CodeDatabase's model_version
        self._encoders = {}

    def hash(self, modality, x):
        _check_modality(modality)
        if modality not in self._encoders:
            self._encoders[modality] = Encoder.of_model(self.models[modality])
        return self._encoders[modality](x)["hash"]


class SavedModelEncoders:
    """hash outputs from the exported encoder SavedModels (what TF Serving would answer)."""

    def __init__(self, image_dir, text_dir):
        self.dirs = {"image": image_dir, "text": text_dir}
        self.inputs = {"image": "image_features", "text": "tags"}
        self._encoders = {}
        self.source = f"saved_model:{os.path.normpath(image_dir)}"

    def hash(self, modality, x):
        _check_modality(modality)
        if modality not in self._encoders:
            sig = tf.saved_model.load(self.dirs[modality]).signatures["serving_default"]
            name = self.inputs[modality]
            self._encoders[modality] = Encoder(lambda b, sig=sig, name=name: sig(**{name: b}),
                                               trace=False)
        return self._encoders[modality](x)["hash"]


def _check_modality(modality):
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")


def latest_export(export_dir, run_name, version=0):
    """(image_encoder dir, text_encoder dir, version) of an export, or None when absent."""
    run_dir = os.path.join(export_dir, run_name)
    versions = set(layout.existing_versions(os.path.join(run_dir, IMAGE_ENCODER)))
    versions &= set(layout.existing_versions(os.path.join(run_dir, TEXT_ENCODER)))
    if version:
        if version not in versions:
            raise FileNotFoundError(f"export version {version} of run {run_name!r} not found "
                                    f"under {run_dir} (have {sorted(versions)})")
    elif not versions:
        return None
    else:
        version = max(versions)
    return (os.path.join(run_dir, IMAGE_ENCODER, str(version)),
            os.path.join(run_dir, TEXT_ENCODER, str(version)), version)


def modality_inputs(data, modality, rows):
    if modality == "image":
        if data.images is None:
            raise raw_image_run_error(data.name, "encoding image codes")
        return data.images[rows]
    return data.tags[rows]


def database_ids(data, rows):
    """Item ids of `rows` as CodeDatabase stores them (integers, or unicode strings)."""
    ids = np.asarray(data.ids)[rows]
    return ids.astype(str) if ids.dtype == object else ids


def build_database(encoders, data, rows, modality, run_name):
    """CodeDatabase of `modality` codes for data rows `rows` (ids and labels carried along)."""
    rows = np.asarray(rows, np.int64)
    hashes = encoders.hash(modality, modality_inputs(data, modality, rows))
    return CodeDatabase.from_codes(to_codes(hashes), ids=database_ids(data, rows),
                                   labels=np.asarray(data.labels)[rows],
                                   model_version=str(encoders.source), run_name=run_name,
                                   modality=modality)


def cached_database(path, encoders, data, rows, modality, run_name, bits):
    """Load the database at `path` if it came from the same encoders and rows, else rebuild it."""
    rows = np.asarray(rows, np.int64)
    if os.path.exists(path):
        try:
            db = CodeDatabase.load(path)
        except ValueError:
            db = None  # corrupt or foreign: rebuilt below
        if (db is not None and db.model_version == str(encoders.source) and db.bits == bits
                and db.modality == modality and len(db) == len(rows)
                and np.array_equal(db.ids, database_ids(data, rows))):
            return db, True
    db = build_database(encoders, data, rows, modality, run_name)
    db.save(path)
    return db, False
