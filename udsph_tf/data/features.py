"""Backbone features of image files: run a (given) backbone over them, write the .npz.

The .npz it writes is read by feature-mode training (`--image_file=out.npz
--image_key=features`, or `--image_key=regions` for region input): `features` (n, C) float32,
`regions` (n, R, c) float16 (halves a file that is 2.5 GB even so for 20,015 images at 49 x 1280),
`ids` (the id-list entries), `row_in_<N>` (row of each image in the N-line id list, i.e. in the
dataset's .mat files), `image_id` (the number in `im<N>.jpg`, -1 if none), plus what was skipped.
"""

import os
import re

import numpy as np
import tensorflow as tf

from udsph_tf.data import images as image_data
from udsph_tf.files import atomic_open
from udsph_tf.progress import Progress


def image_number(image_id):
    """The number in `im<N>.jpg`, -1 if none."""
    match = re.search(r"(\d+)\.[A-Za-z]+$", image_id)
    return int(match.group(1)) if match else -1


def extract(backbone, files, batch_size=64, progress=True, regions_dtype=np.float16):
    """Run `backbone` (models.backbones.Backbone) over `files` (an ImageFiles); returns
    (features, regions) numpy arrays."""
    spec = image_data.ImageSpec(**backbone.preprocessing)
    ds = image_data.image_dataset(files, spec, batch_size)
    n = len(files)
    features = np.zeros((n, backbone.global_dim), np.float32)
    regions = np.zeros((n, backbone.num_regions, backbone.region_dim), regions_dtype)
    bar = Progress(n, "extract", enabled=progress)
    # One traced graph for every batch size (the last batch is smaller): ~6x faster than eager.
    run = tf.function(lambda x: backbone.model(x, training=False), input_signature=[
        tf.TensorSpec((None,) + backbone.input_shape, tf.float32)])
    done = 0
    for batch in ds:
        out = run(batch["image"])
        index = batch["index"].numpy()
        features[index] = out["global"].numpy()
        regions[index] = out["regions"].numpy().astype(regions_dtype)
        done += len(index)
        bar.update(len(index))
    bar.close()
    if done != n:
        raise RuntimeError(f"extracted {done} images, expected {n}")
    return features, regions


def save_features(path, backbone, files, features, regions, seconds):
    """Write the .npz atomically (a crash leaves no half-written feature file)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    arrays = {
        "features": features, "regions": regions,
        "ids": np.asarray(files.ids, dtype=str),
        f"row_in_{files.num_listed}": np.asarray(files.rows, np.int64),
        "image_id": np.asarray([image_number(i) for i in files.ids], np.int64),
        "skipped_missing": np.asarray([p for _, p in files.missing], dtype=str),
        "skipped_unreadable": np.asarray([p for _, p in files.unreadable], dtype=str),
        "backbone": np.asarray(backbone.name),
        "weights": np.asarray(os.path.basename(backbone.weights_path)),
        "seconds": np.asarray(seconds, np.float64),
    }
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)
    return path
