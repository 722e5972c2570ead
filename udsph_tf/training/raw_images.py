"""Raw-image training input: photos decoded once into memory; a frozen backbone's outputs cached."""

# The trainer's pipeline, buffers and evaluation index in-memory arrays by row. Pixels are kept
# as uint8 and normalised per batch, so models keep taking normalised images (as export and
# extract feed them); a frozen backbone would give the same outputs every step, so without
# augmentation they are computed once.

import dataclasses
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from udsph_tf.data import images as image_io
from udsph_tf.errors import DataError, MissingFileError

# Memory bound of the in-memory copies (pixels or cached backbone outputs). 730 photos at
# 224x224 are 110 MB of pixels; 20,015 are 3 GB, above it: extract features instead.
MAX_CACHE_BYTES = 2 * 1024 ** 3
DECODE_BATCH = 32
BACKBONE_BATCH = 32
# Backbones whose global vector is the mean of its regions (cnnf's is fc7): the cache keeps both.
_MEAN_POOLED = ("efficientnet_lite0", "vgg16", "vgg19", "resnet50")


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def _raw_spec(spec):
    """The spec without normalisation: 0..255 pixels in RGB, to store as uint8."""
    return dataclasses.replace(spec, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), bgr=False)


def check_image_files(paths, skip_bad=False):
    """Indices of the usable paths; missing/undecodable files raise naming them, or are skipped."""
    missing = [i for i, p in enumerate(paths) if not tf.io.gfile.exists(p)]
    present = [i for i in range(len(paths)) if i not in set(missing)]
    bad = [(present[j], msg) for j, msg in image_io.find_unreadable([paths[i] for i in present])]
    if (missing or bad) and not skip_bad:
        shown = "; ".join([f"{paths[i]}: missing" for i in missing[:3]]
                          + [f"{paths[i]}: {msg}" for i, msg in bad[:3]])
        raise (MissingFileError if missing else DataError)(
            f"--image_dir: {len(missing)} image file(s) missing and {len(bad)} cannot be "
            f"decoded: {shown} (use --skip_bad_images to skip them)")
    drop = set(missing) | {i for i, _ in bad}
    if drop:
        _log(f"skipping {len(missing)} missing and {len(bad)} unreadable image(s), e.g. "
             f"{paths[sorted(drop)[0]]}")
    return np.array([i for i in range(len(paths)) if i not in drop], np.int64)


def decode_pixels(paths, spec, progress=True):
    """(n, H, W, 3) uint8 pixels of `paths`, resized as `spec` says (not normalised)."""
    n, h, w = len(paths), spec.height, spec.width
    need = n * h * w * 3
    if need > MAX_CACHE_BYTES:
        raise ValueError(f"{n} photos at {h}x{w} need {need / 2**30:.1f} GiB in memory, above "
                         f"the {MAX_CACHE_BYTES / 2**30:.0f} GiB limit of raw-image training; "
                         "extract features first (--mode=extract, then --image_file)")
    out = np.empty((n, h, w, 3), np.uint8)
    ds = image_io.image_dataset(list(paths), _raw_spec(spec), DECODE_BATCH)
    start, done = time.time(), 0
    for batch in ds:
        x = batch["image"].numpy()
        out[done:done + len(x)] = np.clip(np.round(x), 0, 255).astype(np.uint8)
        done += len(x)
        if progress:
            print(f"\rdecoding images {done}/{n} ({time.time() - start:.1f} s)", end="",
                  file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr, flush=True)
    return out


def normalizer(spec):
    """uint8/float pixels (n, H, W, 3) -> the normalised float32 images the backbone expects."""
    mean = tf.constant(spec.mean, tf.float32)
    std = tf.constant(spec.std, tf.float32)

    def normalise(pixels):
        x = tf.cast(pixels, tf.float32)
        if spec.bgr:
            x = x[..., ::-1]
        return (x - mean) / std
    return normalise


def augmenter(spec):
    """Random crop (of the image upscaled by 1/0.875) + horizontal flip, stateless per item."""
    big = [int(round(spec.height / 0.875)), int(round(spec.width / 0.875))]

    def augment(pixels, seeds):
        def one(args):
            image, seed = args
            image = tf.image.resize(tf.cast(image, tf.float32), big, method="bilinear",
                                    antialias=True)
            image = tf.image.stateless_random_crop(image, [spec.height, spec.width, 3], seed=seed)
            return tf.image.stateless_random_flip_left_right(image, seed=seed + 1)
        return tf.map_fn(one, (pixels, seeds), fn_output_signature=tf.float32)
    return augment


class CachedBackboneInput(keras.layers.Layer):
    """ImgNet's image input on cached frozen-backbone outputs (n, R+1, d): the R regions and
    the global vector in the last row, returned as BackboneInput returns them."""

    def __init__(self, num_regions, region_dim, **kwargs):
        super().__init__(**kwargs)
        self.num_regions, self.region_dim = int(num_regions), int(region_dim)

    def call(self, images, training=False):
        x = tf.cast(images, self.compute_dtype)
        return x[:, :self.num_regions], x[:, self.num_regions]


@dataclasses.dataclass
class RawImageInput:
    """What the trainer needs in raw-image mode.

    images: the in-memory array the trainer indexes by row (uint8 pixels, or cached backbone
    outputs (n, R+1, d): the R regions then the global vector); cached: which of the two;
    kept: rows of the original data that were kept (bad files skipped).
    """
    images: np.ndarray
    cached: bool
    kept: np.ndarray
    spec: object

    def transform(self, augment=False):
        """images batch (+ per-item int64 (b, 2) seeds) -> model input batch."""
        if self.cached:
            return lambda x, seeds=None: tf.convert_to_tensor(x, tf.float32)
        norm, aug = normalizer(self.spec), augmenter(self.spec)
        if not augment:
            return lambda x, seeds=None: norm(x)
        return lambda x, seeds: norm(aug(x, seeds))


def remap_split(split, kept, num_rows):
    """The split over the kept rows only (rows of skipped files leave every part)."""
    new_index = np.full(num_rows, -1, np.int64)
    new_index[kept] = np.arange(len(kept))

    def sub(idx):
        idx = new_index[np.asarray(idx, np.int64)]
        return idx[idx >= 0]
    return dataclasses.replace(split, query_idx=sub(split.query_idx),
                               database_idx=sub(split.database_idx),
                               train_idx=sub(split.train_idx), val_idx=sub(split.val_idx))


def can_cache(config):
    """A frozen backbone without augmentation whose global vector is as wide as its regions."""
    return (not config.fine_tune and not config.augment and config.backbone in _MEAN_POOLED)


def backbone_outputs(backbone, pixels, spec, progress=True):
    """(n, R+1, d) float32: the frozen backbone's regions then its global vector, per photo."""
    n, r, d = len(pixels), backbone.num_regions, backbone.region_dim
    need = n * (r + 1) * d * 4
    if need > MAX_CACHE_BYTES:
        raise ValueError(f"caching the frozen {backbone.name} outputs of {n} photos needs "
                         f"{need / 2**30:.1f} GiB, above the {MAX_CACHE_BYTES / 2**30:.0f} GiB "
                         "limit; extract features first (--mode=extract, then --image_file)")
    norm = normalizer(spec)

    @tf.function(reduce_retracing=True)
    def run(x):
        out = backbone.model(norm(x), training=False)
        return tf.concat([out["regions"], out["global"][:, None, :]], axis=1)
    out = np.empty((n, r + 1, d), np.float32)
    start = time.time()
    for i in range(0, n, BACKBONE_BATCH):
        out[i:i + BACKBONE_BATCH] = run(tf.constant(pixels[i:i + BACKBONE_BATCH])).numpy()
        if progress:
            print(f"\rfrozen {backbone.name} on {min(i + BACKBONE_BATCH, n)}/{n} photos "
                  f"({time.time() - start:.1f} s)", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr, flush=True)
    return out


def prepare_raw_images(config, data, split, image_size=None, progress=True):
    """Raw-image mode: (data with in-memory images, split over the kept rows, RawImageInput).

    image_size: (H, W) of the backbone input; None = 224x224 (tests use smaller photos).
    """
    from udsph_tf.models.backbones import build_backbone
    if not data.image_paths:
        raise ValueError(f"{data.name}: raw-image mode needs data.image_paths (--image_dir)")
    if config.backbone == "features":
        raise ValueError(f"{data.name}: the data has raw images (--image_dir) but "
                         "--backbone=features; choose a CNN, e.g. --backbone=efficientnet_lite0")
    kept = check_image_files(data.image_paths, skip_bad=config.skip_bad_images)
    if len(kept) < len(data.image_paths):
        split = remap_split(split, kept, len(data.image_paths))
        data = data.subset(kept)
    size = tuple(image_size or (224, 224))
    backbone = build_backbone(config.backbone, config.backbone_weights, (*size, 3),
                              trainable=False)
    spec = image_io.ImageSpec(**backbone.preprocessing)
    pixels = decode_pixels(data.image_paths, spec, progress=progress)
    cached = can_cache(config)
    images = backbone_outputs(backbone, pixels, spec, progress) if cached else pixels
    data = dataclasses.replace(data, images=images)
    return data, split, RawImageInput(images=images, cached=cached, kept=kept, spec=spec)


def build_cached_models(config, raw, tag_dim, num_labels, input_spec=None):
    """build_models for cached backbone outputs: ImgNet takes (R+1, d) through a
    CachedBackboneInput, so it computes what it computes with the frozen backbone inside."""
    from udsph_tf.models import build_models
    r = raw.images.shape[1] - 1
    models = build_models(dataclasses.replace(config, backbone="features", image_regions=0),
                          raw.images.shape[1:], tag_dim, num_labels, input_spec)
    # The FeatureInput build_models made has no weights; replacing it changes no variable.
    # Keras locks a built layer's attributes; the lock guards new state, and this adds none.
    imgnet = models["imgnet"]
    imgnet._tracker.unlock()
    try:
        imgnet.image_input = CachedBackboneInput(r, raw.images.shape[2], name="image_input")
    finally:
        imgnet._tracker.lock()
    return models
