"""TFDS builder of MIRFlickr-25K (the cleaned 20,015-pair DCMH/SSAH set) from manual files."""

import re

import numpy as np
from etils import epath

from udsph_tf.data.readers import ID_LIST
from udsph_tf.data.tfds import common
from udsph_tf.data.tfds.base import CrossModalBuilder

LABEL_NAMES = [
    "animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food", "indoor",
    "lake", "male", "night", "people", "plant_life", "portrait", "river", "sea", "sky",
    "structures", "sunset", "transport", "tree", "water"]
TAG_DIM = 1386
LABEL_FILE, TAG_FILE = "mirflickr25k-lall.mat", "mirflickr25k-yall.mat"
TEXT_FILE, VOCAB_FILE = "txt_database.txt", "common_tags.txt"
NAMES_FILE = "mirflickr25k-fall.mat"  # the "Cleared-Set" alternative to img_database.txt
PHOTO_DIRS = ("images", "mirflickr")

_INSTRUCTIONS = """\
MIRFlickr-25K cannot be downloaded automatically. Put these files in `manual_dir`
(default ~/tensorflow_datasets/downloads/manual/, or --manual_dir=...):

Always (labels and tags of the 20,015 cleaned pairs, from the DCMH / SSAH / DJSRH release;
DCMH: https://github.com/jiangqy/DCMH-CVPR2017 links them, SSAH: https://github.com/lelan-li/SSAH):
  mirflickr25k-lall.mat   key LAll, 20015 x 24 concept labels
  mirflickr25k-yall.mat   key YAll, 20015 x 1386 tag bag-of-words
Recommended (same release row order):
  img_database.txt        20015 lines `images/im<N>.jpg` (the photo id of each row)
                          (or mirflickr25k-fall.mat, key FAll, the file names)
  txt_database.txt        20015 lines of raw Flickr tags (the `text` feature)
  common_tags.txt         the 1386 tags in column order (`tag count` per line)
Image side, one of (the config chooses):
  iall              mirflickr25k-iall.mat  key IAll, 224x224x3 uint8 images (MATLAB v7.3)
  vgg               mirflickr25k-iall-vgg.mat  key XAll, 20015 x 4096 VGG fc7 features (DJSRH)
  photos            the original photos: unzip mirflickr25k.zip from
                    https://press.liacs.nl/mirflickr/mirdownload.html into manual_dir, giving
                    mirflickr/im<N>.jpg (images/im<N>.jpg as listed in img_database.txt also works)
  photos_available  as photos, keeping only the rows whose photo is present
  lite0_730         mirflickr730-efficientnet-lite0.npz (feat_lite0_1280, row_in_20015) and
                    mirflickr730-split.npz: the 730-row development subset of this project
Splits: query / database / train / validation from udsph_tf.data.make_split with the config's
split_seed (2,000 queries, 18,015 database, 10,000 train at full size), or the split file.
"""


def _photo_number(name: str) -> int:
    match = re.search(r"(\d+)", epath.Path(name).name)
    return int(match.group(1)) if match else -1


class Mirflickr25k(CrossModalBuilder):
    """MIRFlickr-25K: 24 concepts, 1,386-d tag bag-of-words, photo or feature image side."""

    DATASET_NAME = "mirflickr"
    NUM_LABELS = len(LABEL_NAMES)
    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
    DESCRIPTION = ("MIRFlickr-25K cleaned cross-modal set (Huiskes & Lew 2008; DCMH/SSAH "
                   "release): 20,015 image/tag pairs with 24 concept labels.")
    HOMEPAGE = "https://press.liacs.nl/mirflickr/"
    CITATION = """@inproceedings{huiskes2008mir,
  title={The MIR Flickr retrieval evaluation}, author={Huiskes, Mark J and Lew, Michael S},
  booktitle={ACM International Conference on Multimedia Information Retrieval}, year={2008}}"""
    BUILDER_CONFIGS = [
        common.CrossModalConfig(
            name="iall", image_source="mat", image_file="mirflickr25k-iall.mat",
            image_key="IAll", description="224x224 images of the DCMH release (IAll)."),
        common.CrossModalConfig(
            name="vgg", image_source="features", image_file="mirflickr25k-iall-vgg.mat",
            image_key="XAll", feature_dim=4096, description="4096-d VGG fc7 features (XAll)."),
        common.CrossModalConfig(
            name="photos", image_source="photos",
            description="Original JPEG photos; every row must have its photo."),
        common.CrossModalConfig(
            name="photos_available", image_source="photos", only_available_photos=True,
            description="Original JPEG photos; only the rows whose photo is present."),
        common.CrossModalConfig(
            name="lite0_730", image_source="features",
            image_file="mirflickr730-efficientnet-lite0.npz", image_key="feat_lite0_1280",
            row_key="row_in_20015", feature_dim=1280, split_file="mirflickr730-split.npz",
            description="The 730-row subset with EfficientNet-Lite0 features and fixed split."),
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "iall"

    def _tag_dim(self) -> int:
        return TAG_DIM

    def _read_release(self, manual_dir: epath.Path) -> common.Release:
        label_src = common.ArraySource(manual_dir / LABEL_FILE, "LAll", "MIRFlickr labels")
        tag_src = common.ArraySource(manual_dir / TAG_FILE, "YAll", "MIRFlickr tags")
        labels, tags = label_src.read(), tag_src.read()
        label_src.close()
        tag_src.close()
        common.validate_release_arrays("mirflickr", labels, label_src.where, tags, tag_src.where)
        n = len(labels)
        sources = {"labels": LABEL_FILE, "tags": TAG_FILE}

        if (manual_dir / ID_LIST).exists():
            image_files = [s.strip() for s in common.read_lines(manual_dir / ID_LIST, "ids")]
            common.check_count(manual_dir / ID_LIST, len(image_files), n)
            sources["ids"] = ID_LIST
        elif (manual_dir / NAMES_FILE).exists():
            names = common.ArraySource(manual_dir / NAMES_FILE, "FAll", "names").read()
            image_files = [str(np.asarray(v).reshape(-1)[0]).strip() for v in names.reshape(-1)]
            common.check_count(manual_dir / NAMES_FILE, len(image_files), n)
            sources["ids"] = NAMES_FILE
        else:
            image_files = [""] * n
        ids = np.asarray([_photo_number(f) if f else -1 for f in image_files], np.int64)

        if (manual_dir / TEXT_FILE).exists():
            texts = [common.text_of(s) for s in common.read_lines(manual_dir / TEXT_FILE, "text")]
            common.check_count(manual_dir / TEXT_FILE, len(texts), n)
            sources["text"] = TEXT_FILE
        else:
            texts = [""] * n
        vocab = None
        if (manual_dir / VOCAB_FILE).exists():
            vocab = [s.split()[0] for s in common.read_lines(manual_dir / VOCAB_FILE, "vocab")
                     if s.strip()]
            common.check_count(manual_dir / VOCAB_FILE, len(vocab), TAG_DIM, what="tags")

        image, kept = common.image_source_for(self.builder_config, manual_dir, n,
                                                     image_files, PHOTO_DIRS)
        if self.builder_config.image_file:
            sources["image"] = self.builder_config.image_file
        release = common.Release(
            labels=common.to_uint8_counts(labels, label_src.where),
            tags=common.to_uint8_counts(tags, tag_src.where), ids=ids, texts=texts,
            image_files=image_files, source_rows=np.arange(n, dtype=np.int64), image=image,
            label_names=list(LABEL_NAMES), tag_vocab=vocab, sources=sources)
        return release if kept is None else release.subset(kept)
