"""keras.applications backbones: weights from a local file (saved here; nothing downloads)."""

import numpy as np
import pytest

from udsph_tf.models.backbones import build_backbone
from udsph_tf.models.backbones.keras_apps import keras_app_backbone

# Keras 3.15's weight saving calls np.array on its variables, which numpy 2.4 flags; not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


@pytest.mark.parametrize("name,grid,channels", [("vgg16", 1, 512), ("vgg19", 1, 512),
                                                ("resnet50", 1, 2048)])
def test_weights_round_trip_through_a_local_file(tmp_path, name, grid, channels):
    shape = (32, 32, 3)
    model, app = keras_app_backbone(name, shape)  # weights=None: random init
    path = str(tmp_path / f"{name}_notop.weights.h5")
    app.save_weights(path)  # stands in for the user's downloaded notop weights file
    images = np.random.default_rng(0).uniform(-100, 100, (2,) + shape).astype(np.float32)
    expected = {k: v.numpy() for k, v in model(images).items()}
    backbone = build_backbone(name, path, input_shape=shape)
    got = {k: v.numpy() for k, v in backbone(images).items()}
    assert got["regions"].shape == (2, grid * grid, channels)
    assert got["global"].shape == (2, channels)
    np.testing.assert_allclose(got["global"], expected["global"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["regions"], expected["regions"], rtol=1e-5, atol=1e-5)
    assert float(np.abs(got["global"]).max()) > 0  # not a comparison of zeros
    assert backbone.preprocessing["bgr"] and backbone.preprocessing["height"] == 32
    assert not backbone.model.trainable_weights  # frozen by default


# Keras warns once per skipped sublayer before it fails on the mismatched file.
@pytest.mark.filterwarnings("ignore:Skipping nested container")
def test_missing_or_wrong_weights_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="needs --backbone_weights"):
        build_backbone("vgg16", "")
    with pytest.raises(FileNotFoundError, match="absent.h5"):
        build_backbone("vgg16", str(tmp_path / "absent.h5"))
    _, vgg16 = keras_app_backbone("vgg16", (32, 32, 3))
    path = str(tmp_path / "vgg16.weights.h5")
    vgg16.save_weights(path)
    with pytest.raises(ValueError, match=r"cannot load .*vgg16\.weights\.h5 into resnet50"):
        build_backbone("resnet50", path, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="unknown backbone 'alexnet'"):
        build_backbone("alexnet")
