"""Raw-image training input: photos checked and decoded once into memory (uint8 pixels).

The trainer's pipeline, buffers and evaluation index in-memory arrays by row. Pixels are kept
as uint8 and normalised per batch (data/images.py's normalisation and augmentation), so models
keep taking normalised images (as export and extract feed them). A frozen backbone's outputs
are cached instead by models/backbones/cached.py (modes/train.py decides).
"""

import dataclasses
import sys

import numpy as np
import tensorflow as tf

from udsph_tf.data import images as image_io
from udsph_tf.errors import DataError, MissingFileError
from udsph_tf.progress import Progress

# Memory bound of the in-memory copies (pixels or cached backbone outputs). 730 photos at
# 224x224 are 110 MB of pixels; 20,015 are 3 GB, above it: extract features instead.
MAX_CACHE_BYTES = 2 * 1024 ** 3
DECODE_BATCH = 32


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
    bar, done = Progress(n, "decoding images", enabled=progress), 0
    for batch in ds:
        x = batch["image"].numpy()
        out[done:done + len(x)] = np.clip(np.round(x), 0, 255).astype(np.uint8)
        done += len(x)
        bar.update(len(x))
    bar.close()
    return out


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
        norm, aug = image_io.normalizer(self.spec), image_io.augmenter(self.spec)
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
