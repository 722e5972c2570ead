"""A frozen backbone's outputs computed once (raw-image training without augmentation) and the
ImgNet image input that reads them, so ImgNet computes what it computes with the backbone inside."""

import keras
import numpy as np
import tensorflow as tf

from udsph_tf.progress import Progress

# Memory bound of the cached outputs, as of the decoded pixels (data/raw_images.py).
MAX_CACHE_BYTES = 2 * 1024 ** 3
BACKBONE_BATCH = 32
# Backbones whose global vector is the mean of its regions (cnnf's is fc7): the cache keeps both.
_MEAN_POOLED = ("efficientnet_lite0", "vgg16", "vgg19", "resnet50")


def can_cache(config):
    """A frozen backbone without augmentation whose global vector is as wide as its regions."""
    return (not config.fine_tune and not config.augment and config.backbone in _MEAN_POOLED)


def backbone_outputs(backbone, pixels, normalise, progress=True):
    """(n, R+1, d) float32: the frozen backbone's regions then its global vector, per photo.

    pixels: (n, H, W, 3) in memory; normalise: pixels -> the backbone's input
    (udsph_tf.data.images.normalizer of its preprocessing)."""
    n, r, d = len(pixels), backbone.num_regions, backbone.region_dim
    need = n * (r + 1) * d * 4
    if need > MAX_CACHE_BYTES:
        raise ValueError(f"caching the frozen {backbone.name} outputs of {n} photos needs "
                         f"{need / 2**30:.1f} GiB, above the {MAX_CACHE_BYTES / 2**30:.0f} GiB "
                         "limit; extract features first (--mode=extract, then --image_file)")

    @tf.function(reduce_retracing=True)
    def run(x):
        out = backbone.model(normalise(x), training=False)
        return tf.concat([out["regions"], out["global"][:, None, :]], axis=1)
    out = np.empty((n, r + 1, d), np.float32)
    bar = Progress(n, f"frozen {backbone.name}", enabled=progress)
    for i in range(0, n, BACKBONE_BATCH):
        out[i:i + BACKBONE_BATCH] = run(tf.constant(pixels[i:i + BACKBONE_BATCH])).numpy()
        bar.update(len(pixels[i:i + BACKBONE_BATCH]))
    bar.close()
    return out


class CachedBackboneInput(keras.layers.Layer):
    """ImgNet's image input on cached frozen-backbone outputs (n, R+1, d): the R regions and
    the global vector in the last row, returned as BackboneInput returns them."""

    def __init__(self, num_regions, region_dim, **kwargs):
        super().__init__(**kwargs)
        self.num_regions, self.region_dim = int(num_regions), int(region_dim)

    def call(self, images, training=False):
        x = tf.cast(images, self.compute_dtype)
        return x[:, :self.num_regions], x[:, self.num_regions]
