"""User errors of raw images, backbones and TFDS loading: the UserError class, and a message
that starts with the flag or file at fault (main.py prints it as `error: <message>`, exit 2)."""

import pickle
import zipfile

import numpy as np
import pytest
import scipy.io
from PIL import Image

from udsph_tf import errors
from udsph_tf.data import images as im
from udsph_tf.data import tfds as udsph_tfds
from udsph_tf.models.backbones import build_backbone
from udsph_tf.models.backbones.cnnf import read_matconvnet
from udsph_tf.models.backbones.torch_pickle import WeightsFileError, load_torch_state_dict

SPEC = im.ImageSpec(height=16, width=16)


def _raises(cls, start, fn, *args, **kwargs):
    """fn(...) raises a `cls` (a UserError) whose message starts with `start`; one line."""
    with pytest.raises(cls) as err:
        fn(*args, **kwargs)
    message = str(err.value)
    assert isinstance(err.value, errors.UserError), type(err.value)
    assert message.startswith(start), message
    assert "\n" not in message, message
    return message


@pytest.fixture
def photos(tmp_path):
    """tmp/images/im1.jpg, im2.jpg and tmp/img_database.txt listing them."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in (1, 2):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), np.uint8)).save(folder / f"im{i}.jpg")
    (tmp_path / "img_database.txt").write_text("images/im1.jpg\nimages/im2.jpg\n")
    return folder


# --- udsph_tf/data/images.py ------------------------------------------------------------------

def test_missing_image_file_names_the_folder_flag_and_the_file(photos):
    (photos / "im2.jpg").unlink()
    message = _raises(errors.MissingFileError, f"--image_dir={photos}: 1 image file(s) missing",
                      im.list_image_files, str(photos))
    assert "im2.jpg" in message and "--skip_bad_images" in message
    # Still a FileNotFoundError for callers that caught the builtin before.
    with pytest.raises(FileNotFoundError):
        im.list_image_files(str(photos))


def test_undecodable_image_names_the_folder_flag_and_the_file(photos):
    (photos / "im2.jpg").write_bytes(b"not an image at all")
    message = _raises(errors.DataError, f"--image_dir={photos}: 1 image file(s) cannot be "
                      "decoded", im.list_image_files, str(photos))
    assert "im2.jpg" in message
    assert isinstance(pytest.raises(ValueError, im.list_image_files, str(photos)).value,
                      errors.DataError)


def test_missing_folder_and_id_list(tmp_path, photos):
    _raises(errors.MissingFileError, f"--image_dir={tmp_path / 'absent'}: image folder not found",
            im.list_image_files, str(tmp_path / "absent"))
    _raises(errors.MissingFileError, "--image_dir=: empty", im.list_image_files, "")
    _raises(errors.MissingFileError, f"{tmp_path / 'nolist.txt'}: image id list not found",
            im.read_id_list, str(tmp_path / "nolist.txt"))
    _raises(errors.DataError, f"{tmp_path / 'img_database.txt'}: rows out of range",
            im.list_image_files, str(photos), rows=[5])


def test_single_query_image_missing_or_undecodable(tmp_path):
    _raises(errors.MissingFileError, f"{tmp_path / 'q.jpg'}: image file not found",
            im.load_image, str(tmp_path / "q.jpg"), SPEC)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff truncated jpeg")
    _raises(errors.DataError, f"{bad}: cannot decode image bad.jpg", im.load_image, str(bad),
            SPEC)


def test_programming_errors_stay_plain():
    with pytest.raises(ValueError) as err:
        im.ImageSpec(resize="squash")
    assert not isinstance(err.value, errors.UserError)
    with pytest.raises(ValueError) as err:
        im.image_dataset([], SPEC, 4)
    assert not isinstance(err.value, errors.UserError)


# --- udsph_tf/models/backbones/ -----------------------------------------------------------------

def test_missing_weights_file_names_the_flag(tmp_path):
    absent = tmp_path / "absent.pth"
    _raises(errors.MissingFileError, f"--backbone_weights={absent}: file not found",
            build_backbone, "efficientnet_lite0", str(absent))
    _raises(errors.MissingFileError, "--backbone_weights: the cnnf backbone needs",
            build_backbone, "cnnf", "")
    _raises(errors.MissingFileError, f"{absent}: PyTorch weights file not found",
            load_torch_state_dict, str(absent))
    _raises(errors.ConfigError, "--backbone=alexnet: unknown backbone", build_backbone,
            "alexnet")


def _pth(path, obj):
    """A zip-layout .pth whose data.pkl holds `obj` (no tensors needed)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(obj, protocol=2))
    return str(path)


def test_weights_file_of_the_wrong_structure_names_the_file(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(np.random.default_rng(0).bytes(300))
    _raises(errors.DataError, f"{garbage}: ", build_backbone, "efficientnet_lite0",
            str(garbage), (32, 32, 3))
    other = _pth(tmp_path / "other.pth", {"layer.weight": 1.0})
    message = _raises(errors.DataError, f"{other}: key '_conv_stem.weight' missing",
                      build_backbone, "efficientnet_lite0", other, (32, 32, 3))
    assert "EfficientNet-Lite0" in message
    flat = _pth(tmp_path / "flat.pth", {"_conv_stem.weight": 1.0})  # a scalar, not a kernel
    _raises(errors.DataError, f"{flat}: '_conv_stem.weight' has shape ()", build_backbone,
            "efficientnet_lite0", flat, (32, 32, 3))


def test_refused_pickle_is_a_user_error_and_still_an_unpickling_error(tmp_path):
    class Evil:
        def __reduce__(self):
            import os
            return (os.getcwd, ())

    path = _pth(tmp_path / "evil.pth", {"x": Evil()})
    message = _raises(WeightsFileError, f"{path}: refusing to load", load_torch_state_dict, path)
    assert "getcwd" in message
    assert issubclass(WeightsFileError, pickle.UnpicklingError)
    assert issubclass(WeightsFileError, errors.DataError)


def test_matconvnet_file_of_the_wrong_structure_names_the_file(tmp_path):
    nolayers = tmp_path / "nolayers.mat"
    scipy.io.savemat(nolayers, {"x": np.zeros(3)})
    _raises(errors.DataError, f"{nolayers}: no 'layers' variable", build_backbone, "cnnf",
            str(nolayers))
    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"MATLAB? no" * 20)
    _raises(errors.DataError, f"{junk}: not a readable MATLAB v5 file", read_matconvnet,
            str(junk))


# --- udsph_tf/data/tfds/loading.py ------------------------------------------------------------

def test_tfds_data_not_built_names_the_flag(tmp_path):
    _raises(errors.MissingFileError, f"--tfds_data_dir={tmp_path}: no build of mirflickr25k",
            udsph_tfds.load_tfds_as_crossmodal, "mirflickr", str(tmp_path))
    _raises(errors.MissingFileError, "--tfds_config=vgg: mirflickr25k/vgg is not built",
            udsph_tfds.load_tfds_as_crossmodal, "mirflickr", str(tmp_path), "vgg")
    _raises(errors.ConfigError, "--tfds_data_dir: ", udsph_tfds.load_tfds_as_crossmodal,
            "mirflickr", "")
    _raises(errors.ConfigError, "--dataset=custom: no TFDS builder",
            udsph_tfds.load_tfds_as_crossmodal, "custom", str(tmp_path))
