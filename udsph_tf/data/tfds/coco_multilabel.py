"""TFDS builder of a COCO multi-label / caption-tag set from the instances and captions JSON."""

import collections
import json
import re

import numpy as np
from etils import epath

from udsph_tf.data.tfds import common
from udsph_tf.data.tfds.base import CrossModalBuilder

NUM_LABELS = 80
# Function words carry no tag information; dropping them keeps the vocabulary for content.
STOPWORDS = frozenset("""
a an the and or of to in on at by for with from into onto over under up down out off is are
was were be been being it its this that these those there their his her he she they them we
you i as while some very has have had do does near next top side other another each two
three one""".split())

_INSTRUCTIONS = """\
Build from the MS-COCO annotation files you have (https://cocodataset.org/#download,
"2014 Train/Val annotations" or "2017 Train/Val annotations", and the matching images).
Put in `manual_dir` (default ~/tensorflow_datasets/downloads/manual/, or --manual_dir=...):
  annotations/instances_train<YEAR>.json    the 80 object categories -> labels
  annotations/instances_val<YEAR>.json
  annotations/captions_train<YEAR>.json     the captions -> tag bag-of-words and `text`
  annotations/captions_val<YEAR>.json
  train<YEAR>/<file_name>.jpg, val<YEAR>/<file_name>.jpg   the photos (unzipped train/val zips)
(the JSON files may also sit directly in manual_dir). A pair is every train+val image with at
least one labelled object and at least one vocabulary word in its captions (2014: ~122k).
Tags: the `vocab_size` words (lower-case letters, stop words removed) found in the most
images' captions, ties in alphabetical order; an entry is 1 if any caption of the image uses
the word. Labels: the 80 categories in category-id order. Configs: 2014 / 2017 (all photos
required) and 2014_available (only rows whose photo is present).
Splits: query / database / train / validation from udsph_tf.data.make_split with the config's
split_seed (5,000 queries and 10,000 train at full size).
"""


def caption_words(caption: str):
    return [w for w in re.findall(r"[a-z]+", caption.lower()) if w not in STOPWORDS]


def build_vocab(captions_per_image, vocab_size: int):
    """The words used by the most images (document frequency), ties alphabetical."""
    df = collections.Counter()
    for caps in captions_per_image:
        df.update({w for c in caps for w in caption_words(c)})
    ranked = sorted(df.items(), key=lambda kv: (-kv[1], kv[0]))
    return [w for w, _ in ranked[:vocab_size]]


class CocoMultilabel(CrossModalBuilder):
    """MS-COCO as a cross-modal hashing set: 80 category labels, caption-word tag vectors."""

    DATASET_NAME = "coco"
    NUM_LABELS = NUM_LABELS
    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
    DESCRIPTION = ("MS-COCO images with their 80 object categories as multi-label targets and a "
                   "bag-of-words over caption vocabulary as the text side.")
    HOMEPAGE = "https://cocodataset.org/"
    CITATION = """@inproceedings{lin2014coco, title={Microsoft COCO: Common Objects in Context},
  author={Lin, Tsung-Yi and others}, booktitle={ECCV}, year={2014}}"""
    BUILDER_CONFIGS = [
        common.CrossModalConfig(name="2014", year="2014", image_source="photos",
                                description="COCO 2014 train+val photos, 2000-word tags."),
        common.CrossModalConfig(name="2017", year="2017", image_source="photos",
                                description="COCO 2017 train+val photos, 2000-word tags."),
        common.CrossModalConfig(name="2014_available", year="2014", image_source="photos",
                                only_available_photos=True,
                                description="COCO 2014, only rows whose photo is present."),
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "2014"

    def _tag_dim(self) -> int:
        return self.builder_config.vocab_size

    def _json(self, manual_dir: epath.Path, name: str):
        for path in (manual_dir / "annotations" / name, manual_dir / name):
            if path.exists():
                try:
                    return json.loads(path.read_text())
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}: not valid JSON ({e})") from e
        raise FileNotFoundError(f"COCO: {name} not found in {manual_dir}/annotations or "
                                f"{manual_dir} (see MANUAL_DOWNLOAD_INSTRUCTIONS)")

    def _read_release(self, manual_dir: epath.Path) -> common.Release:
        cfg = self.builder_config
        images, cats = {}, None
        labels_of = collections.defaultdict(set)
        captions_of = collections.defaultdict(list)
        for part in ("train", "val"):
            name = f"instances_{part}{cfg.year}.json"
            inst = self._json(manual_dir, name)
            for key in ("images", "annotations", "categories"):
                if key not in inst:
                    raise ValueError(f"{name}: no {key!r} entry (is it an instances file?)")
            if cats is None:
                cats = sorted(inst["categories"], key=lambda c: c["id"])
            for im in inst["images"]:
                images[int(im["id"])] = f"{part}{cfg.year}/{im['file_name']}"
            for ann in inst["annotations"]:
                labels_of[int(ann["image_id"])].add(int(ann["category_id"]))
            caps = self._json(manual_dir, f"captions_{part}{cfg.year}.json")
            if "annotations" not in caps:
                raise ValueError(f"captions_{part}{cfg.year}.json: no 'annotations' entry")
            for ann in caps["annotations"]:
                captions_of[int(ann["image_id"])].append(ann["caption"].strip())
        if len(cats) != NUM_LABELS:
            raise ValueError(f"instances_train{cfg.year}.json: {len(cats)} categories, "
                             f"expected {NUM_LABELS}")
        column = {c["id"]: j for j, c in enumerate(cats)}

        candidates = sorted(i for i in images if labels_of.get(i) and captions_of.get(i))
        vocab = build_vocab([captions_of[i] for i in candidates], cfg.vocab_size)
        if len(vocab) < cfg.vocab_size:
            raise ValueError(f"COCO {cfg.year}: only {len(vocab)} distinct caption words, "
                             f"fewer than vocab_size={cfg.vocab_size}")
        word_col = {w: j for j, w in enumerate(vocab)}
        ids, labels, tags = [], [], []
        for i in candidates:
            words = {word_col[w] for c in captions_of[i] for w in caption_words(c)
                     if w in word_col}
            if not words:
                continue
            t = np.zeros(cfg.vocab_size, np.uint8)
            t[sorted(words)] = 1
            lab = np.zeros(NUM_LABELS, np.uint8)
            lab[[column[c] for c in labels_of[i]]] = 1
            ids.append(i)
            labels.append(lab)
            tags.append(t)
        ids = np.asarray(ids, np.int64)
        labels, tags = np.stack(labels), np.stack(tags)
        common.validate_release_arrays("coco", labels, f"instances_*{cfg.year}.json", tags,
                                       f"captions_*{cfg.year}.json")
        image_files = [images[int(i)] for i in ids]
        image, kept = common.image_source_for(cfg, manual_dir, len(ids), image_files,
                                                     photo_dirs=())
        release = common.Release(
            labels=labels, tags=tags, ids=ids,
            texts=["\n".join(captions_of[int(i)]) for i in ids], image_files=image_files,
            source_rows=np.arange(len(ids), dtype=np.int64), image=image,
            label_names=[c["name"] for c in cats], tag_vocab=vocab,
            sources={"annotations": f"instances/captions_(train|val){cfg.year}.json"})
        return release if kept is None else release.subset(kept)
