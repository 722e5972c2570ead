"""The real MIRFlickr-25K files of ../shared/data, read in place (skipped where absent)."""

import numpy as np
import pytest

from udsph_tf.config import Config, replace
from udsph_tf.data import (load_dataset, load_dataset_from_config, make_split, read_array,
                           split_from_config)

pytestmark = pytest.mark.realdata


def test_mirflickr_labels_and_tags_full_scale(mirflickr_dir):
    labels = read_array(str(mirflickr_dir / "mirflickr25k-lall.mat"), "LAll")
    tags = read_array(str(mirflickr_dir / "mirflickr25k-yall.mat"), "YAll")
    assert labels.shape == (20015, 24) and tags.shape == (20015, 1386)
    assert set(np.unique(labels)) == {0, 1} and set(np.unique(tags)) == {0, 1}
    assert labels.sum(1).min() >= 1  # no empty rows
    assert labels.sum(1).mean() == pytest.approx(3.78, abs=0.01)
    assert tags.sum(1).min() >= 1


def test_mirflickr_dataset_with_given_features(mirflickr_dir, tmp_path):
    """Real labels+tags with an image-feature file (as a user with extracted features has)."""
    feats = np.random.default_rng(0).standard_normal((20015, 8)).astype(np.float32)
    np.save(tmp_path / "feats.npy", feats)
    cfg = replace(Config(), dataset="mirflickr", data_dir=str(mirflickr_dir),
                  image_file=str(tmp_path / "feats.npy"))
    data = load_dataset_from_config(cfg)
    assert data.num_items == 20015 and data.labels.sum(1).mean() == pytest.approx(3.78, abs=0.01)
    assert data.ids[:3].tolist() == [1, 2, 3]  # from img_database.txt
    assert data.tag_vocab[0] == "explore" and len(data.tag_vocab) == 1386
    assert data.label_names[-1] == "water"
    split = split_from_config(cfg, data)
    assert split.sizes() == {"query": 2000, "database": 18015, "train": 9500, "val": 500}


def test_mirflickr_without_image_features_explains(mirflickr_dir):
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("mirflickr", str(mirflickr_dir))
    msg = str(err.value)
    assert "mirflickr25k-iall.mat" in msg
    assert "--image_file" in msg and "--image_dir" in msg and "img_database.txt" in msg


def test_mirflickr730_with_fixed_split(mirflickr_dir):
    data = load_dataset("mirflickr730", str(mirflickr_dir))
    assert data.images.shape == (730, 1280) and data.images.dtype == np.float32
    assert data.tags.shape == (730, 1386) and data.labels.shape == (730, 24)
    split = data.default_split
    assert split.seed == 730 and split.source.endswith("mirflickr730-split.npz")
    assert split.sizes()["query"] == 100 and split.sizes()["database"] == 630
    assert split.sizes()["train"] + split.sizes()["val"] == 500
    # The documented recipe: rng(730).permutation, first 100 queries, next 500 train.
    remade = make_split(730, "mirflickr730", 730, num_val=0)
    np.testing.assert_array_equal(remade.query_idx, split.query_idx)
    np.testing.assert_array_equal(remade.train_idx, np.union1d(split.train_idx, split.val_idx))
    # It is the default split for this dataset; num_val=0 gives the file's 500 training rows.
    cfg = replace(Config(), dataset="mirflickr730", data_dir=str(mirflickr_dir), num_val=0)
    assert split_from_config(cfg, data).sizes() == {"query": 100, "database": 630,
                                                    "train": 500, "val": 0}
    # Rows agree with the 20,015-row release they were cut from.
    big = read_array(str(mirflickr_dir / "mirflickr25k-lall.mat"), "LAll")
    with np.load(mirflickr_dir / "mirflickr730-efficientnet-lite0.npz") as z:
        rows = z["row_in_20015"]
    np.testing.assert_array_equal(data.labels, big[rows])


def test_mirflickr730_raw_images(mirflickr_dir):
    data = load_dataset("mirflickr730", str(mirflickr_dir), image_dir=str(mirflickr_dir))
    assert data.images is None and len(data.image_paths) == 730
    assert data.image_paths[0].endswith("images/im1.jpg")
    assert data.default_split is not None
