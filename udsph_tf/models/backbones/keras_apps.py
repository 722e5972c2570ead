"""keras.applications VGG16 / VGG19 / ResNet50 as region backbones, weights from a local file.

No download is possible here, so the application is built with weights=None and its weights are
read with `load_weights(path)` (e.g. Keras' `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`
fetched by the user, or any `.weights.h5` saved from the same notop model).
"""

import os

import keras

from udsph_tf.errors import ConfigError, DataError, MissingFileError

_APPS = {"vgg16": keras.applications.VGG16, "vgg19": keras.applications.VGG19,
         "resnet50": keras.applications.ResNet50}
# keras.applications' "caffe" preprocessing: BGR order, ImageNet mean in BGR, no scaling.
CAFFE_PREPROCESSING = {"mean": (103.939, 116.779, 123.68), "std": (1.0, 1.0, 1.0),
                       "bgr": True, "resize": "center_crop"}


def keras_app_backbone(name, input_shape=(224, 224, 3), weights_path=""):
    """Functional model: caffe-normalised images -> {"global": GAP, "regions": conv grid}.

    The grid is the last conv stage (VGG: block5_pool, 7x7x512 at 224; ResNet50: conv5,
    7x7x2048 at 224).
    """
    if name not in _APPS:
        raise ConfigError(f"--backbone={name}: unknown keras application backbone {name!r}; "
                          f"one of {sorted(_APPS)}")
    app = _APPS[name](include_top=False, weights=None, input_shape=tuple(input_shape))
    if weights_path:
        if not os.path.isfile(weights_path):
            raise MissingFileError(f"--backbone_weights={weights_path}: {name} weights file "
                                   "not found")
        try:
            app.load_weights(weights_path)
        except Exception as err:  # Keras raises several types; name the file and the model
            raise DataError(f"{weights_path}: cannot load {os.path.basename(weights_path)} "
                            f"into {name} (include_top=False, input {tuple(input_shape)}): "
                            f"{' '.join(str(err).split())[:300]}") from err
    images = keras.Input(shape=tuple(input_shape), name="images")
    grid = app(images)
    channels = grid.shape[-1]
    regions = keras.layers.Reshape((-1, channels), name="regions")(grid)
    pooled = keras.layers.GlobalAveragePooling2D(name="global")(grid)
    return keras.Model(images, {"global": pooled, "regions": regions}, name=name), app
