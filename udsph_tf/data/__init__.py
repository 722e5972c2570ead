"""Datasets for cross-modal hashing: readers, validation, splits, generated data, tf.data."""

from udsph_tf.data.readers import (DATASETS, list_keys, load_dataset, load_dataset_from_config,
                                   read_array, read_tag_vocab)
from udsph_tf.data.splits import (STANDARD_SIZES, carve_validation, load_split_file,
                                  make_split, split_from_config)
from udsph_tf.data.synthetic import generate_default
from udsph_tf.data.types import CrossModalData, Split

__all__ = ["CrossModalData", "Split", "DATASETS", "STANDARD_SIZES", "load_dataset",
           "load_dataset_from_config", "generate_default", "make_split", "load_split_file",
           "split_from_config", "carve_validation", "read_array", "list_keys", "read_tag_vocab",
           "make_dataset_fn"]


def __getattr__(name):
    # TensorFlow is imported only when a pipeline is asked for, so reading data stays light.
    if name == "make_dataset_fn":
        from udsph_tf.data.pipeline import make_dataset_fn
        return make_dataset_fn
    raise AttributeError(f"module 'udsph_tf.data' has no attribute {name!r}")
