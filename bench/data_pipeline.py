"""Input pipeline throughput: make_dataset_fn (both gather modes) against a naive tf.data pipeline.

    python bench/data_pipeline.py [--rows 10000] [--image_dim 4096] [--batch 128] [--repeats 3]

One pass over MIRFlickr-sized training arrays (10,000 rows of 4096-d features, 1386-d tags,
24 labels); prints the median seconds per pass and the ratio to the baseline run in this process.
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from udsph_tf.data import pipeline  # noqa: E402
from udsph_tf.data.pipeline import make_dataset_fn  # noqa: E402


def naive_dataset(arrays, batch, seed):
    """What one writes first: every row in the shuffle buffer (rows, not indices)."""
    n = len(next(iter(arrays.values())))
    ds = tf.data.Dataset.from_tensor_slices({**arrays, "index": np.arange(n)})
    return ds.shuffle(n, seed=seed).batch(batch).prefetch(tf.data.AUTOTUNE)


def numpy_autotune(arrays, batch):
    """The numpy gather with AUTOTUNE map parallelism instead of NUMPY_PARALLEL_CALLS."""
    saved = pipeline.NUMPY_PARALLEL_CALLS
    pipeline.NUMPY_PARALLEL_CALLS = tf.data.AUTOTUNE
    try:
        return make_dataset_fn(arrays, batch, seed=0, gather="numpy")(None)
    finally:
        pipeline.NUMPY_PARALLEL_CALLS = saved


def one_pass(ds):
    start, rows = time.perf_counter(), 0
    for batch in ds:
        rows += int(batch["index"].shape[0])
    return time.perf_counter() - start, rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--image_dim", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    arrays = {"images": rng.standard_normal((args.rows, args.image_dim), dtype=np.float32),
              "tags": (rng.random((args.rows, 1386)) < 0.004).astype(np.float32),
              "labels": (rng.random((args.rows, 24)) < 0.15).astype(np.float32)}
    mb = sum(a.nbytes for a in arrays.values()) / 2 ** 20
    variants = {
        "naive from_tensor_slices(rows).shuffle (baseline)":
            lambda: naive_dataset(arrays, args.batch, 0),
        "make_dataset_fn gather=tensor": lambda: make_dataset_fn(
            arrays, args.batch, seed=0, gather="tensor")(None),
        "make_dataset_fn gather=numpy": lambda: make_dataset_fn(
            arrays, args.batch, seed=0, gather="numpy")(None),
        "make_dataset_fn gather=numpy, map parallel AUTOTUNE": lambda: numpy_autotune(
            arrays, args.batch),
    }
    print(f"{args.rows} rows, {mb:.0f} MB of arrays, batch {args.batch}, "
          f"median of {args.repeats} passes (after one warm-up pass)")
    print(f"{'pipeline':54s} {'s/pass':>8s} {'rows/s':>10s} {'vs baseline':>12s}")
    baseline = None
    for name, build in variants.items():
        ds = build()
        one_pass(ds)  # warm-up: graph tracing and the first fill of the shuffle buffer
        times = []
        for _ in range(args.repeats):
            seconds, rows = one_pass(ds)
            assert rows == args.rows
            times.append(seconds)
        med = statistics.median(times)
        baseline = baseline or med
        print(f"{name:54s} {med:8.3f} {args.rows / med:10.0f} {baseline / med:11.2f}x")


if __name__ == "__main__":
    main()
