"""Throughput of the raw-image path: tf.data decode+resize, and EfficientNet-Lite0 forward passes.

    python bench/backbones.py [--images=64] [--batch=32] [--repeats=3]

Reads the real MIRFlickr photos of ../shared/data (generated JPEGs where absent). Prints the
median of the repeats and the ratio of each row to the eager forward pass (the baseline), all
measured in this process. Figures depend on the machine and its load; rerun to compare.
"""

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import tensorflow as tf  # noqa: E402

from udsph_tf.data import images as im  # noqa: E402
from udsph_tf.models.backbones import build_backbone  # noqa: E402
from timing import median_seconds  # noqa: E402  (bench/timing.py)

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..",
                    "shared", "data", "mirflickr25k", "images")


def _image_paths(n):
    if os.path.isdir(DATA):
        names = sorted(os.listdir(DATA), key=im._natural_key)[:n]
        return [os.path.join(DATA, x) for x in names], "real MIRFlickr photos"
    from PIL import Image
    folder = tempfile.mkdtemp()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = os.path.join(folder, f"im{i}.jpg")
        Image.fromarray(rng.integers(0, 256, (256, 341, 3), np.uint8)).save(path)
        paths.append(path)
    return paths, "generated 256x341 JPEGs"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    paths, source = _image_paths(args.images)
    backbone = build_backbone("efficientnet_lite0")
    spec = im.ImageSpec(**backbone.preprocessing)
    ds = im.image_dataset(paths, spec, args.batch)
    batches = [b["image"] for b in ds]  # decoded once for the model-only rows
    graph = tf.function(lambda x: backbone.model(x, training=False), input_signature=[
        tf.TensorSpec((None,) + backbone.input_shape, tf.float32)])
    graph(batches[0])  # trace outside the timing
    backbone.model(batches[0], training=False)  # warm the eager path as well

    rows = [
        ("forward, eager (baseline)",
         lambda: [backbone.model(b, training=False) for b in batches]),
        ("forward, tf.function", lambda: [graph(b) for b in batches]),
        ("tf.data decode+resize only", lambda: [None for _ in ds]),
        ("tf.data + tf.function forward", lambda: [graph(b["image"]) for b in ds]),
    ]
    results = [(name, median_seconds(fn, args.repeats)) for name, fn in rows]
    base = results[0][1]
    print(f"{len(paths)} {source}, batch {args.batch}, median of {args.repeats}, "
          f"{os.cpu_count()} CPUs")
    print(f"{'path':34s} {'seconds':>8s} {'images/s':>9s} {'vs eager':>9s}")
    for name, seconds in results:
        print(f"{name:34s} {seconds:8.3f} {len(paths) / seconds:9.1f} {base / seconds:8.2f}x")


if __name__ == "__main__":
    main()
