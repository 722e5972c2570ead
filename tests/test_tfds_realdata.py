"""MIRFlickr-25K TFDS builds from the real shared files (730 photos / features), read in place."""

import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds
from PIL import Image

from udsph_tf.data import tfds as udsph_tfds
from udsph_tf.data.readers import load_dataset

pytestmark = [pytest.mark.realdata,
              pytest.mark.filterwarnings("ignore:.*cannot hold the standard:UserWarning")]


@pytest.fixture(scope="module")
def real_built(mirflickr_dir, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds_real")
    for cfg in ("photos_available", "lite0_730"):
        builder = tfds.builder("mirflickr25k", config=cfg, data_dir=str(data_dir))
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(mirflickr_dir)))
    return data_dir


def test_real_lite0_730_equals_the_raw_reader(real_built, mirflickr_dir):
    data = udsph_tfds.load_tfds_as_crossmodal("mirflickr730", str(real_built), "lite0_730")
    raw = load_dataset("mirflickr730", str(mirflickr_dir))
    for field in ("images", "tags", "labels", "ids"):
        np.testing.assert_array_equal(getattr(data, field), getattr(raw, field), err_msg=field)
    for field in ("query_idx", "database_idx", "train_idx", "val_idx"):
        np.testing.assert_array_equal(getattr(data.default_split, field),
                                      getattr(raw.default_split, field), err_msg=field)
    assert data.default_split.sizes()["query"] == 100
    assert data.tag_vocab[:3] == ["explore", "sky", "nikon"]


def test_real_photos_available_are_the_730_rows_with_photos(real_built, mirflickr_dir):
    data = udsph_tfds.load_tfds_as_crossmodal("mirflickr", str(real_built), "photos_available",
                                              image_size=32)
    z = np.load(mirflickr_dir / "mirflickr730-efficientnet-lite0.npz")
    rows = z["row_in_20015"]
    assert data.num_items == 730
    np.testing.assert_array_equal(data.ids, z["image_id"])
    labels = scipy.io.loadmat(mirflickr_dir / "mirflickr25k-lall.mat")["LAll"]
    tags = scipy.io.loadmat(mirflickr_dir / "mirflickr25k-yall.mat")["YAll"]
    np.testing.assert_array_equal(data.labels, labels[rows])
    np.testing.assert_array_equal(data.tags, tags[rows])
    np.testing.assert_array_equal(data.labels, z["LAll"])  # the npz's own copy agrees
    assert data.images.shape == (730, 32, 32, 3)


def test_real_photo_bytes_are_stored_unchanged(real_built, mirflickr_dir):
    builder = tfds.builder("mirflickr25k", config="photos_available", data_dir=str(real_built))
    ds = builder.as_dataset(split="query", decoders={"image": tfds.decode.SkipDecoding()})
    for ex in tfds.as_numpy(ds.take(3)):
        path = mirflickr_dir / ex["image_file"].decode()
        assert ex["image"] == path.read_bytes()
        with Image.open(path) as im:
            assert ex["text"].decode() and im.size[0] > 0


@pytest.mark.slow
def test_training_reads_the_tfds_build(real_built, tmp_path, monkeypatch):
    """What `main.py --dataset=mirflickr730 --data_source=tfds --tfds_data_dir=...` runs, with
    the one routing line the data layer needs (load_dataset_from_config -> tfds) patched in."""
    import udsph_tf.data.readers as data_layer
    from udsph_tf.modes import train as train_mode
    from udsph_tf.training.testing import tiny_config

    raw_loader = data_layer.load_dataset_from_config
    calls = []

    def routed(config):
        if config.data_source == "tfds":
            calls.append(config.tfds_data_dir)
            return udsph_tfds.load_tfds_from_config(config)
        return raw_loader(config)

    monkeypatch.setattr(data_layer, "load_dataset_from_config", routed)
    config = tiny_config(tmp_path / "run", dataset="mirflickr730", data_source="tfds",
                         tfds_data_dir=str(real_built), epochs=1, num_replicas=1,
                         attention="none")
    train_mode.run(config)
    assert calls == [str(real_built)]
    import json
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # the build's fixed split (mirflickr730-split.npz) was used, not a fresh seeded one
    assert metrics["split_seed"] == 730
    assert metrics["split_sizes"] == {"query": 100, "database": 630, "train": 450, "val": 50}
    assert metrics["split_source"].endswith("mirflickr730-split.npz")
