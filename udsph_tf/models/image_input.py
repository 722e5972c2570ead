"""The image-input interface of ImgNet: any image input becomes regions (n, R, d) + a pooled vector.

Interface (what ImgNet relies on, and what a raw-image backbone under `models/backbones/` must
offer to be plugged in): a `keras.layers.Layer` whose `call(images, training=False)` returns
`(regions, pooled)` with regions (n, R, d) for the attention and pooled (n, D) for ImgNet's
hidden layer (D may differ from d, e.g. a CNN's pooled head), and which has the attributes
`region_dim` (d) and `num_regions` (R, or None when it depends on the input).
"""

import keras
import tensorflow as tf


class FeatureInput(keras.layers.Layer):
    """Precomputed features: a global vector (n, D) or region features (n, R, d).

    A global vector is treated as a single region, so the attention works the same on both.
    With `regions` > 0 a flat (n, R*d) vector is read as R regions of d (the layout of a
    flattened region-feature file); `regions` 0 keeps a rank-2 input as one region.
    The pooled vector of several regions is their mean (the global-average pool of a conv map).
    global_last: an (R+1, d) input holds R regions and, in its last row, the global vector,
    which is then the pooled vector (--region_grid: the hash path sees the same global feature
    as without regions, and only the attention sees the regions).
    """

    def __init__(self, feature_shape, regions=0, global_last=False, **kwargs):
        super().__init__(**kwargs)
        feature_shape = tuple(int(s) for s in feature_shape)
        self.global_last = bool(global_last)
        if self.global_last and (len(feature_shape) != 2 or feature_shape[0] < 2 or regions):
            raise ValueError(f"a global vector after the regions needs (R+1, d) features with "
                             f"R >= 1 and no image_regions, got shape {feature_shape}")
        if len(feature_shape) == 1:
            (dim,) = feature_shape
            if regions and regions > 1:
                if dim % regions:
                    raise ValueError(f"image feature width {dim} is not divisible by "
                                     f"image_regions={regions}")
                self._reshape = (regions, dim // regions)
            else:
                self._reshape = (1, dim)
        elif len(feature_shape) == 2:
            if regions and regions != feature_shape[0]:
                raise ValueError(f"image features have {feature_shape[0]} regions but "
                                 f"image_regions={regions}")
            self._reshape = None
        else:
            raise ValueError(f"feature input must be (D,) or (R, d) per item, got shape "
                             f"{feature_shape}; raw images need a backbone (--backbone)")
        self.feature_shape = feature_shape
        self.num_regions = (self._reshape[0] if self._reshape
                            else feature_shape[0] - int(self.global_last))
        self.region_dim = self._reshape[1] if self._reshape else feature_shape[1]

    def call(self, images, training=False):
        x = tf.convert_to_tensor(images)
        x = tf.cast(x, self.compute_dtype)
        if x.shape.rank != len(self.feature_shape) + 1:
            raise ValueError(f"expected image features of shape (n, {self.feature_shape}), "
                             f"got {x.shape}")
        if self._reshape is not None:
            x = tf.reshape(x, [-1, *self._reshape])
        if self.global_last:
            return x[:, :-1], x[:, -1]
        return x, tf.reduce_mean(x, axis=1)


def make_image_input(config, image_shape):
    """The image input for `config.backbone`: FeatureInput, or a raw-image backbone."""
    if config.backbone == "features":
        return FeatureInput(image_shape, regions=config.image_regions,
                            global_last=config.region_grid > 0, name="image_input")
    try:
        from udsph_tf.models.backbones import build_image_input
    except ImportError as err:
        raise ValueError(f"--backbone={config.backbone} needs "
                         "udsph_tf.models.backbones.build_image_input, which is not "
                         f"available ({err})") from err
    return build_image_input(config, image_shape)
