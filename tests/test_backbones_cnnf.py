"""CNN-F from a MatConvNet file: a small imagenet-vgg-f.mat look-alike vs a numpy forward pass."""

import numpy as np
import pytest
import scipy.io

from udsph_tf.models.backbones import build_backbone
from udsph_tf.models.backbones.cnnf import cnnf_backbone, read_matconvnet

H, W = 33, 33
LRN = (5.0, 2.0, 0.01, 0.75)  # [N kappa alpha beta]; alpha large enough to matter here


def _cell(*items):
    cell = np.empty((1, len(items)), dtype=object)
    for i, item in enumerate(items):
        cell[0, i] = item
    return cell


def _conv(name, kernel, bias, pad, stride):
    return {"name": name, "type": "conv", "weights": _cell(kernel, bias.reshape(1, -1)),
            "pad": np.array([pad], float), "stride": np.array([stride], float)}


def _layers(rng):
    """conv-relu-lrn-pool-conv-relu-pool-fc6-relu-fc7-relu-fc8-softmax, CNN-F's sequence in
    miniature, with asymmetric pads and a non-square map so H/W or pad-order mix-ups show."""
    k = lambda *shape: rng.normal(0, 0.3, shape).astype(np.float32)
    return [
        _conv("conv1", k(5, 5, 3, 8), k(8), [1, 2, 0, 1], [2, 2]),
        {"name": "relu1", "type": "relu"},
        {"name": "norm1", "type": "lrn", "param": np.array([LRN])},
        {"name": "pool1", "type": "pool", "method": "max", "pool": np.array([[3, 3]], float),
         "stride": np.array([[2, 2]], float), "pad": np.array([[0, 1, 0, 1]], float)},
        _conv("conv2", k(3, 3, 8, 6), k(6), [1, 1, 1, 1], [1, 1]),
        {"name": "relu2", "type": "relu"},
        {"name": "pool5", "type": "pool", "method": "max", "pool": np.array([[2, 2]], float),
         "stride": np.array([[2, 2]], float), "pad": np.array([[0, 0, 0, 0]], float)},
        _conv("fc6", k(4, 3, 6, 10), k(10), [0, 0, 0, 0], [1, 1]),
        {"name": "relu6", "type": "relu"},
        _conv("fc7", k(1, 1, 10, 12), k(12), [0, 0, 0, 0], [1, 1]),
        {"name": "relu7", "type": "relu"},
        _conv("fc8", k(1, 1, 12, 5), k(5), [0, 0, 0, 0], [1, 1]),
        {"name": "prob", "type": "softmax"},
    ]


def _save(path, layers, average):
    cells = np.empty((1, len(layers)), dtype=object)
    for i, layer in enumerate(layers):
        cells[0, i] = layer
    scipy.io.savemat(path, {"layers": cells, "normalization": {
        "averageImage": average, "imageSize": np.array([[H, W, 3]], float)}})


@pytest.fixture
def small_file(tmp_path):
    rng = np.random.default_rng(0)
    layers = _layers(rng)
    average = rng.uniform(100, 130, (H, W, 3)).astype(np.float32)
    path = str(tmp_path / "imagenet-vgg-f-small.mat")
    _save(path, layers, average)
    return path, layers, average


# --- numpy reference of MatConvNet's forward pass -----------------------------------------------
def _np_conv(x, kernel, bias, pad, stride):
    t, b, l, r = pad
    x = np.pad(x, ((t, b), (l, r), (0, 0)))
    kh, kw = kernel.shape[:2]
    oh, ow = (x.shape[0] - kh) // stride[0] + 1, (x.shape[1] - kw) // stride[1] + 1
    out = np.empty((oh, ow, kernel.shape[3]))
    for i in range(oh):
        for j in range(ow):
            patch = x[i * stride[0]:i * stride[0] + kh, j * stride[1]:j * stride[1] + kw]
            out[i, j] = np.tensordot(patch, kernel, axes=3) + bias
    return out


def _np_pool(x, window, pad, stride):
    t, b, l, r = pad
    x = np.pad(x, ((t, b), (l, r), (0, 0)), constant_values=-np.inf)
    oh, ow = (x.shape[0] - window[0]) // stride[0] + 1, (x.shape[1] - window[1]) // stride[1] + 1
    return np.array([[x[i * stride[0]:i * stride[0] + window[0],
                        j * stride[1]:j * stride[1] + window[1]].max(axis=(0, 1))
                      for j in range(ow)] for i in range(oh)])


def _np_lrn(x, n, kappa, alpha, beta):
    half = (int(n) - 1) // 2
    sq = x ** 2
    out = np.empty_like(x)
    for c in range(x.shape[-1]):
        s = sq[..., max(0, c - half):c + half + 1].sum(-1)
        out[..., c] = x[..., c] / (kappa + alpha * s) ** beta
    return out


def _np_forward(image, layers, average):
    x, outs = image.astype(np.float64) - average, {}
    for layer in layers:
        kind = layer["type"]
        if kind == "conv":
            x = _np_conv(x, layer["weights"][0, 0], layer["weights"][0, 1].ravel(),
                         [int(v) for v in layer["pad"][0]], [int(v) for v in layer["stride"][0]])
        elif kind == "relu":
            x = np.maximum(x, 0)
        elif kind == "lrn":
            x = _np_lrn(x, *layer["param"][0])
        elif kind == "pool":
            x = _np_pool(x, [int(v) for v in layer["pool"][0]],
                         [int(v) for v in layer["pad"][0]], [int(v) for v in layer["stride"][0]])
        outs[layer["name"]] = x
    return outs


def test_keras_cnnf_reproduces_numpy_forward(small_file):
    path, layers, average = small_file
    model = cnnf_backbone(path, (H, W, 3))
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (2, H, W, 3)).astype(np.float32)
    out = model(images)
    assert out["regions"].shape == (2, 4 * 3, 6) and out["global"].shape == (2, 12)
    for image, regions, pooled in zip(images, out["regions"].numpy(), out["global"].numpy()):
        ref = _np_forward(image, layers, average)
        assert ref["pool5"].shape == (4, 3, 6) and ref["relu7"].shape == (1, 1, 12)
        np.testing.assert_allclose(regions, ref["pool5"].reshape(-1, 6), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(pooled, ref["relu7"].reshape(12), rtol=1e-4, atol=1e-4)
        assert np.abs(ref["relu7"]).max() > 0.1  # the comparison is not of zeros


def test_build_backbone_cnnf(small_file):
    path, _, _ = small_file
    backbone = build_backbone("cnnf", path, input_shape=(H, W, 3))
    assert (backbone.num_regions, backbone.region_dim, backbone.global_dim) == (12, 6, 12)
    assert backbone.preprocessing["mean"] == (0.0, 0.0, 0.0)  # the model subtracts the mean
    assert not backbone.model.trainable_weights
    with pytest.raises(FileNotFoundError, match="imagenet-vgg-f.mat"):
        build_backbone("cnnf", "")


def test_reader_fields_and_legacy_filters(small_file, tmp_path):
    path, layers, average = small_file
    parsed, avg = read_matconvnet(path)
    assert [l["type"] for l in parsed][:4] == ["conv", "relu", "lrn", "pool"]
    assert parsed[0]["pad"] == (1, 2, 0, 1) and parsed[3]["window"] == (3, 3)
    np.testing.assert_array_equal(avg, average)
    # Older MatConvNet files: `filters`/`biases`, scalar pad/stride, per-channel mean.
    old = [dict(l) for l in layers]
    w, b = old[0].pop("weights")[0]
    old[0].update(filters=w, biases=b)
    old[4]["pad"] = np.array([[1.0]])
    legacy = str(tmp_path / "legacy.mat")
    _save(legacy, old, np.array([120.0, 115.0, 100.0], np.float32))
    parsed, avg = read_matconvnet(legacy)
    np.testing.assert_array_equal(parsed[0]["kernel"], w)
    assert parsed[4]["pad"] == (1, 1, 1, 1) and avg.shape == (1, 1, 3)
    model = cnnf_backbone(legacy, (H, W, 3))
    assert model(np.zeros((1, H, W, 3), np.float32))["global"].shape == (1, 12)


def test_bad_files_are_named(tmp_path, small_file):
    path, layers, average = small_file
    with pytest.raises(FileNotFoundError, match="nothere.mat"):
        read_matconvnet(str(tmp_path / "nothere.mat"))
    scipy.io.savemat(tmp_path / "nolayers.mat", {"x": np.zeros(3)})
    with pytest.raises(ValueError, match=r"nolayers\.mat: no 'layers' variable"):
        read_matconvnet(str(tmp_path / "nolayers.mat"))
    bad = [dict(l) for l in layers]
    bad[2]["param"] = np.array([[4.0, 2.0, 1e-4, 0.75]])
    _save(tmp_path / "badlrn.mat", bad, average)
    with pytest.raises(ValueError, match=r"badlrn\.mat: layer 3 \('norm1'.*odd N"):
        read_matconvnet(str(tmp_path / "badlrn.mat"))
    bad = [dict(l) for l in layers]
    bad[1]["type"] = "bnorm"
    _save(tmp_path / "badtype.mat", bad, average)
    with pytest.raises(ValueError, match=r"layer 2 \('relu1', type 'bnorm'\): unsupported"):
        read_matconvnet(str(tmp_path / "badtype.mat"))
    with pytest.raises(ValueError, match="no layer named 'fc9'"):
        cnnf_backbone(path, (H, W, 3), global_layer="fc9")
    (tmp_path / "junk.mat").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"junk\.mat: not a readable MATLAB"):
        read_matconvnet(str(tmp_path / "junk.mat"))
