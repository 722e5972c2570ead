"""TFDS's own builder checks (tfds.testing.DatasetBuilderTestCase) on fake releases generated
at test time (tests/tfds_dummy.py)."""

import pathlib
import warnings

import numpy as np
import tensorflow_datasets as tfds

from udsph_tf.data.splits import make_split
from tfds_dummy import tfds_dummy_data  # tests/ is on sys.path (rootdir conftest)
from udsph_tf.data.tfds import CocoMultilabel, Mirflickr25k, NusWide

DUMMY = tfds_dummy_data()


def expected_splits(num_items, dataset_name, seed=0):
    """The split sizes udsph_tf.data.make_split gives, under the TFDS split names."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dummy data is smaller than the standard protocol
        sizes = make_split(num_items, dataset_name, seed).sizes()
    named = {"query": sizes["query"], "database": sizes["database"], "train": sizes["train"],
             "validation": sizes["val"]}
    return {k: v for k, v in named.items() if v}  # empty splits are not written


def nuswide_original_rows(k):
    """Rows the top-k original build must keep, computed straight from the dummy text files."""
    root = DUMMY / "nus_wide"
    concepts = (root / "Concepts81.txt").read_text().split()
    labels = np.stack([np.loadtxt(root / "Groundtruth" / "AllLabels" / f"Labels_{c}.txt")
                       for c in concepts], axis=1)
    tags = np.loadtxt(root / "NUS_WID_Tags" / "AllTags1k.txt")
    top = np.argsort(-labels.sum(0), kind="stable")[:k]
    return int(((labels[:, top].sum(1) > 0) & (tags.sum(1) > 0)).sum())


class _Base(tfds.testing.DatasetBuilderTestCase):
    # train and validation are subsets of database by design (the data layer's Split).
    OVERLAPPING_SPLITS = ["train", "validation"]
    SKIP_CHECKSUMS = True  # manual-download builders fetch no URL

    def test_session(self, *args, **kwargs):  # the harness's graph-mode session, not a test
        return super().test_session(*args, **kwargs)

    # Without this pytest collects tf.test.TestCase's helper and reports a skip per class.
    test_session.__test__ = False


class Mirflickr25kTest(_Base):
    DATASET_CLASS = Mirflickr25k
    EXAMPLE_DIR = str(DUMMY / "mirflickr25k")
    # lite0_730 reads its split file with np.load(path), which the harness forbids; it is
    # built and checked against the raw reader in test_tfds_loading.py instead.
    # photos_available equals photos here (every dummy photo exists); its restriction is
    # tested in test_tfds_loading.py with photos removed.
    BUILDER_CONFIG_NAMES_TO_TEST = ["iall", "vgg", "photos"]
    SPLITS = expected_splits(30, "mirflickr")


class NusWideReleaseTest(_Base):
    DATASET_CLASS = NusWide
    EXAMPLE_DIR = str(DUMMY / "nus_wide")
    BUILDER_CONFIG_NAMES_TO_TEST = ["tc21_iall", "tc10_iall", "tc10_vgg"]
    SPLITS = expected_splits(30, "nuswide")


class NusWideOriginalTc21Test(_Base):
    DATASET_CLASS = NusWide
    EXAMPLE_DIR = str(DUMMY / "nus_wide")
    BUILDER_CONFIG_NAMES_TO_TEST = ["tc21_original"]
    SPLITS = expected_splits(nuswide_original_rows(21), "nuswide")


class NusWideOriginalTc10Test(_Base):
    DATASET_CLASS = NusWide
    EXAMPLE_DIR = str(DUMMY / "nus_wide")
    BUILDER_CONFIG_NAMES_TO_TEST = ["tc10_original"]
    SPLITS = expected_splits(nuswide_original_rows(10), "nuswide")


class CocoMultilabelTest(_Base):
    DATASET_CLASS = CocoMultilabel
    EXAMPLE_DIR = str(DUMMY / "coco_multilabel")
    BUILDER_CONFIG_NAMES_TO_TEST = ["2014"]
    SPLITS = expected_splits(19, "coco")  # 20 images, one without any object


del _Base  # not a test case by itself
