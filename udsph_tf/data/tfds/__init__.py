"""TFDS builders of MIRFlickr-25K, NUS-WIDE and COCO (manual files) and their CrossModalData loader.

Importing this package registers the builders `mirflickr25k`, `nus_wide` and `coco_multilabel`,
so `tfds.builder(NAME, config=..., data_dir=...)` finds them; `build_dataset` (and
tools/build_tfds.py) builds one config from a manual_dir (`tfds build` needs apache_beam).
"""

from udsph_tf.data.tfds.coco_multilabel import CocoMultilabel
from udsph_tf.data.tfds.common import CrossModalConfig, with_split
from udsph_tf.data.tfds.loading import (BUILDERS, build_dataset, built_configs,
                                        load_tfds_as_crossmodal, load_tfds_from_config)
from udsph_tf.data.tfds.mirflickr25k import Mirflickr25k
from udsph_tf.data.tfds.nuswide import NusWide

__all__ = ["BUILDERS", "build_dataset", "CocoMultilabel", "CrossModalConfig", "Mirflickr25k",
           "NusWide", "built_configs", "load_tfds_as_crossmodal", "load_tfds_from_config",
           "with_split"]
