"""The GeneratorBasedBuilder the three data sets share: read the release, split, write examples."""

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from udsph_tf.data.tfds import common


class CrossModalBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Subclasses set the class attributes below and implement `_read_release`."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: query/database/train/validation splits."}
    DATASET_NAME = ""        # name in udsph_tf.data (make_split sizes, validation dims)
    NUM_LABELS = 0
    DESCRIPTION = ""
    HOMEPAGE = ""
    CITATION = ""

    def _tag_dim(self) -> int:
        raise NotImplementedError

    def _num_labels(self) -> int:
        return self.NUM_LABELS

    def _read_release(self, manual_dir: epath.Path) -> common.Release:
        raise NotImplementedError

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=self.DESCRIPTION,
            features=common.features_dict(self.builder_config, self._num_labels(),
                                          self._tag_dim()),
            homepage=self.HOMEPAGE,
            citation=self.CITATION,
            # Filled at build time: the exact split (so loaders need not recompute it),
            # label names and the tag vocabulary.
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        manual_dir = epath.Path(dl_manager.manual_dir)
        release = self._read_release(manual_dir)
        split = common.make_build_split(self.builder_config, manual_dir, len(release),
                                        self.DATASET_NAME)
        self.info.metadata.update({
            "split": common.split_metadata(split),
            "label_names": release.label_names,
            "tag_vocab": release.tag_vocab,
            "sources": release.sources or {},
            "num_items": len(release),
        })
        # TFDS cannot write an empty split (e.g. no validation items on a tiny data set);
        # the recorded split metadata still says it is empty.
        return {name: self._generate_examples(release, getattr(split, field))
                for name, field in common.SPLIT_FIELDS.items() if getattr(split, field).size}

    def _generate_examples(self, release: common.Release, rows):
        for pos in np.asarray(rows, dtype=np.int64):
            pos = int(pos)
            yield pos, {
                "image": release.image(pos),
                "image_file": release.image_files[pos],
                "tags": release.tags[pos],
                "text": release.texts[pos],
                "labels": release.labels[pos],
                "id": int(release.ids[pos]),
                "index": pos,
                "source_row": int(release.source_rows[pos]),
            }
