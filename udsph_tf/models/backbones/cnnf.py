"""CNN-F (Chatfield et al. 2014), the image network of DCMH and SSAH, from MatConvNet's file.

`imagenet-vgg-f.mat` (vlfeat.org/matconvnet/models) holds `layers`, a cell array of structs
with `name`, `type` (conv / relu / lrn or normalize / pool / softmax), conv `weights` = {W, b}
(W is H x W x in x out, the layout of a Keras Conv2D kernel; very old files use `filters` and
`biases`), `pad` [top bottom left right], `stride`, pool `pool` (window) and `method`, lrn
`param` [N kappa alpha beta]; and `normalization.averageImage` (subtracted from [0, 255] RGB).
The Keras graph is built from that list, so any file of this structure loads (tests use a
small one). Fully connected layers are convolutions over the whole map, as in MatConvNet.
"""

import os

import numpy as np
import scipy.io

import keras
import tensorflow as tf

from udsph_tf.errors import DataError, MissingFileError

DOWNLOAD_HINT = "http://www.vlfeat.org/matconvnet/models/imagenet-vgg-f.mat"


@keras.saving.register_keras_serializable(package="udsph_tf")
class SubtractMean(keras.layers.Layer):
    """x - averageImage (a full mean image or one value per channel), kept as a constant weight."""

    def __init__(self, mean_shape, **kwargs):
        super().__init__(**kwargs)
        self.mean_shape = tuple(int(s) for s in mean_shape)
        self.mean = self.add_weight(shape=self.mean_shape, initializer="zeros",
                                    trainable=False, name="average_image")

    def call(self, x):
        return x - tf.cast(self.mean, x.dtype)

    def get_config(self):
        return {**super().get_config(), "mean_shape": self.mean_shape}


@keras.saving.register_keras_serializable(package="udsph_tf")
class LocalResponseNorm(keras.layers.Layer):
    """MatConvNet vl_nnnormalize: x / (kappa + alpha * sum of x^2 over N channels)^beta."""

    def __init__(self, size, kappa, alpha, beta, **kwargs):
        super().__init__(**kwargs)
        self.size, self.kappa = int(size), float(kappa)
        self.alpha, self.beta = float(alpha), float(beta)

    def call(self, x):
        # TF's alpha multiplies the plain sum (not the mean) of squares, as MatConvNet's does.
        return tf.nn.local_response_normalization(x, depth_radius=(self.size - 1) // 2,
                                                  bias=self.kappa, alpha=self.alpha,
                                                  beta=self.beta)

    def get_config(self):
        return {**super().get_config(), "size": self.size, "kappa": self.kappa,
                "alpha": self.alpha, "beta": self.beta}


@keras.saving.register_keras_serializable(package="udsph_tf")
class PaddedMaxPool(keras.layers.Layer):
    """Max pooling with MatConvNet's asymmetric padding (padded cells never win)."""

    def __init__(self, window, stride, pad, **kwargs):
        super().__init__(**kwargs)
        self.window, self.stride, self.pad = tuple(window), tuple(stride), tuple(pad)

    def call(self, x):
        t, b, l, r = self.pad
        x = tf.pad(x, [[0, 0], [t, b], [l, r], [0, 0]], constant_values=x.dtype.min)
        return tf.nn.max_pool2d(x, self.window, self.stride, "VALID")

    def get_config(self):
        return {**super().get_config(), "window": self.window, "stride": self.stride,
                "pad": self.pad}


def _field(struct, name, default=None):
    if name not in struct.dtype.names:
        return default
    return struct[name]


def _unwrap(value):
    while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        value = value.reshape(-1)[0]
    return value


def _string(value):
    value = _unwrap(value)
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)
        return str(value[0]) if value.size else ""
    return str(value)


def _ints(value, count, what):
    arr = np.asarray(_unwrap(value), dtype=np.float64).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, count)
    elif count == 4 and arr.size == 2:  # [vertical horizontal] -> [t b l r]
        arr = np.array([arr[0], arr[0], arr[1], arr[1]])
    if arr.size != count:
        raise DataError(f"{what}: expected {count} values, got {arr.tolist()}")
    return tuple(int(v) for v in arr)


def read_matconvnet(path):
    """Parse a MatConvNet simplenn .mat into a list of layer dicts and the average image."""
    if not os.path.isfile(path):
        raise MissingFileError(f"{path}: MatConvNet file not found (CNN-F weights: "
                               f"download {DOWNLOAD_HINT})")
    try:
        data = scipy.io.loadmat(path)
    except Exception as err:
        raise DataError(f"{path}: not a readable MATLAB v5 file "
                        f"({' '.join(str(err).split())})") from err
    if "layers" not in data:
        raise DataError(f"{path}: no 'layers' variable (not a MatConvNet simplenn model); "
                        f"variables: {sorted(k for k in data if not k.startswith('__'))}")
    layers = []
    for i, cell in enumerate(np.asarray(data["layers"]).reshape(-1)):
        struct = _unwrap(cell)
        if not hasattr(struct, "dtype") or struct.dtype.names is None:
            raise DataError(f"{path}: layers{{{i + 1}}} is not a struct")
        struct = struct.reshape(-1)[0] if struct.ndim else struct
        name = _string(_field(struct, "name", f"layer{i + 1}"))
        kind = _string(_field(struct, "type", ""))
        where = f"{path}: layer {i + 1} ({name!r}, type {kind!r})"
        layer = {"name": name, "type": kind}
        if kind == "conv":
            weights = _field(struct, "weights")
            if weights is not None:
                pair = np.asarray(weights).reshape(-1)
                if pair.size == 1:
                    pair = np.asarray(pair[0]).reshape(-1)
                if pair.size != 2:
                    raise DataError(f"{where}: 'weights' must be a {{W, b}} cell")
                kernel, bias = pair[0], pair[1]
            else:
                kernel, bias = _field(struct, "filters"), _field(struct, "biases")
                if kernel is None or bias is None:
                    raise DataError(f"{where}: conv layer without 'weights' or "
                                    "'filters'/'biases'")
            kernel = np.asarray(_unwrap(kernel), dtype=np.float32)
            if kernel.ndim == 3:  # MATLAB drops a trailing singleton (one output channel)
                kernel = kernel[..., np.newaxis]
            if kernel.ndim == 2:
                kernel = kernel[:, :, np.newaxis, np.newaxis]
            bias = np.asarray(_unwrap(bias), dtype=np.float32).reshape(-1)
            if kernel.ndim != 4 or bias.size != kernel.shape[3]:
                raise DataError(f"{where}: kernel {kernel.shape} and bias {bias.shape} "
                                "do not match (H x W x in x out and out)")
            layer.update(kernel=kernel, bias=bias,
                         pad=_ints(_field(struct, "pad", 0), 4, where + " pad"),
                         stride=_ints(_field(struct, "stride", 1), 2, where + " stride"))
        elif kind == "pool":
            method = _string(_field(struct, "method", "max")) or "max"
            if method != "max":
                raise DataError(f"{where}: only max pooling is supported, got {method!r}")
            layer.update(window=_ints(_field(struct, "pool"), 2, where + " pool"),
                         pad=_ints(_field(struct, "pad", 0), 4, where + " pad"),
                         stride=_ints(_field(struct, "stride", 1), 2, where + " stride"))
        elif kind in ("lrn", "normalize"):
            param = np.asarray(_unwrap(_field(struct, "param")), np.float64).reshape(-1)
            if param.size != 4 or int(param[0]) % 2 == 0:
                raise DataError(f"{where}: lrn 'param' must be [N kappa alpha beta] with odd N")
            layer.update(type="lrn", param=tuple(float(v) for v in param))
        elif kind not in ("relu", "softmax", "dropout"):
            raise DataError(f"{where}: unsupported layer type")
        layers.append(layer)
    average = None
    norm = data.get("normalization")
    if norm is None and "meta" in data:
        meta = _unwrap(data["meta"])
        norm = _field(meta.reshape(-1)[0], "normalization") if meta.dtype.names else None
    if norm is not None:
        norm = _unwrap(norm)
        norm = norm.reshape(-1)[0] if norm.ndim else norm
        avg = _field(norm, "averageImage")
        if avg is not None:
            average = np.asarray(_unwrap(avg), np.float32)
    if average is None:
        raise DataError(f"{path}: no normalization.averageImage")
    if average.size == 3:  # one value per channel, however MATLAB shaped it
        average = average.reshape(1, 1, 3)
    if average.ndim != 3 or average.shape[-1] != 3:
        raise DataError(f"{path}: normalization.averageImage must be H x W x 3 or 3 values, "
                        f"got shape {average.shape}")
    return layers, average


def cnnf_backbone(path, input_shape=(224, 224, 3), region_layer="pool5", global_layer="relu7"):
    """Keras model: [0, 255] RGB images -> {"global": global_layer (pooled), "regions": grid}.

    With CNN-F at 224x224: regions = pool5, 6x6 = 36 regions of 256; global = relu7 (fc7), 4096.
    The average image is subtracted inside the model (its preprocessing is the identity).
    """
    layers, average = read_matconvnet(path)
    names = [l["name"] for l in layers]
    for wanted in (region_layer, global_layer):
        if wanted not in names:
            raise DataError(f"{path}: no layer named {wanted!r}; layers: {names}")
    images = keras.Input(shape=tuple(input_shape), name="images")
    mean = average
    if mean.shape[:2] not in ((1, 1), tuple(input_shape[:2])):
        mean = tf.image.resize(mean, input_shape[:2]).numpy()
    sub = SubtractMean(mean.shape, name="average_image")
    x = sub(images)
    sub.set_weights([mean])
    outputs, to_load = {}, []
    for layer in layers:
        kind, name = layer["type"], layer["name"]
        if kind == "conv":
            t, b, l, r = layer["pad"]
            if any(layer["pad"]):
                x = keras.layers.ZeroPadding2D(((t, b), (l, r)), name=name + "_pad")(x)
            conv = keras.layers.Conv2D(layer["kernel"].shape[3], layer["kernel"].shape[:2],
                                       strides=layer["stride"], padding="valid", name=name)
            x = conv(x)
            to_load.append((conv, layer))
        elif kind == "relu":
            x = keras.layers.ReLU(name=name)(x)
        elif kind == "lrn":
            x = LocalResponseNorm(*layer["param"], name=name)(x)
        elif kind == "pool":
            x = PaddedMaxPool(layer["window"], layer["stride"], layer["pad"], name=name)(x)
        elif kind in ("softmax", "dropout"):
            continue
        if name == region_layer:
            outputs["regions"] = keras.layers.Reshape((-1, x.shape[-1]), name="regions")(x)
        if name == global_layer:
            # At the file's input size the map is 1x1; averaging keeps larger inputs usable.
            outputs["global"] = keras.layers.GlobalAveragePooling2D(name="global")(x)
            break
    for conv, layer in to_load:
        expected = tuple(conv.kernel.shape)
        if layer["kernel"].shape != expected:
            raise DataError(f"{path}: layer {layer['name']!r} kernel {layer['kernel'].shape} "
                            f"does not fit its input (expected {expected})")
        conv.set_weights([layer["kernel"], layer["bias"]])
    if "regions" not in outputs:
        raise DataError(f"{path}: region layer {region_layer!r} comes after {global_layer!r}")
    return keras.Model(images, outputs, name="cnnf")
