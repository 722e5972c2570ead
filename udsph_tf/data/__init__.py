"""Datasets for cross-modal hashing: readers, validation, splits, generated data (numpy; the
tf.data pipeline, images and raw-image decoding are in their modules: pipeline, images,
raw_images, features)."""

from udsph_tf.data.readers import (DATASETS, list_keys, load_dataset, load_dataset_from_config,
                                   read_array, read_tag_vocab)
from udsph_tf.data.splits import (STANDARD_SIZES, carve_validation, data_and_split,
                                  load_split_file, make_split, split_from_config)
from udsph_tf.data.synthetic import generate_default
from udsph_tf.data.types import CrossModalData, Split

__all__ = ["CrossModalData", "Split", "DATASETS", "STANDARD_SIZES", "load_dataset",
           "load_dataset_from_config", "generate_default", "make_split", "load_split_file",
           "split_from_config", "carve_validation", "data_and_split", "read_array", "list_keys",
           "read_tag_vocab"]

