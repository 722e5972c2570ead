"""Cost of the cross-modal attention in real training steps: time and peak memory vs regions R.

    python bench/attention_cost.py [--repeats 3] [--batches 32 128] [--regions 1 4 9 49]

For each batch size and R (the --region_grid layouts: R = g*g cells plus the global row), one
Task at the default widths (SSAH's 4,096 hidden, default bits, max_tokens=32 word tokens) on
generated MIRFlickr-730-like rows (1,280-d cells, 1,386 tags with 1-12 present per text, 24
labels) times the ImgNet and TxtNet training steps (the real TrainSteps: forward, every loss
term, backward, Adam), median of --repeats after a tracing step. Ratios are to the first
--regions value (R=1 by default) at the same batch, in this process. `SSAH` rows are the same
steps with --attention=none, so step - SSAH is what the attention costs. Peak memory: the peak
bytes of TensorFlow's CPU allocator during the timed steps above what was allocated before
them (tf.config.experimental.get_memory_info, reset before each network's steps; the larger
of the two networks): tensors only, not the Python heap or oneDNN's scratch. The attention's
largest tensors are (B, B, R, M).
"""

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Run from a checkout without installing the package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from udsph_tf.config import Config  # noqa: E402
from udsph_tf.data.types import CrossModalData, Split  # noqa: E402
from udsph_tf.training.strategy import make_strategy  # noqa: E402
from udsph_tf.training.task import Task  # noqa: E402

DIM, TAG_DIM, LABELS, N_TRAIN = 1280, 1386, 24, 256


def region_data(grid, seed=0):
    """Rows laid out as --region_grid gives them: (n, grid*grid + 1, 1280), global row last."""
    rng = np.random.default_rng(seed)
    n = N_TRAIN + 32
    labels = (rng.random((n, LABELS)) < 0.16).astype(np.float32)
    labels[labels.sum(1) == 0, 0] = 1
    cells = rng.random((n, grid * grid, DIM), dtype=np.float32)
    images = np.concatenate([cells, cells.mean(1, keepdims=True)], axis=1)
    tags = np.zeros((n, TAG_DIM), np.float32)
    for i, k in enumerate(rng.integers(1, 13, size=n)):  # MIRFlickr texts: a few tags each
        tags[i, rng.choice(TAG_DIM, k, replace=False)] = 1.0
    data = CrossModalData("bench", images, tags, labels, np.arange(n))
    split = Split(query_idx=np.arange(16), database_idx=np.arange(16, n),
                  train_idx=np.arange(32, n), val_idx=np.arange(16, 32), seed=0)
    return data, split


def measure(batch, regions, attention, repeats, strategy):
    """{"img": ms, "txt": ms, "peak_mb": MB} of one cell."""
    grid = int(round(regions ** 0.5))
    data, split = region_data(grid)
    with tempfile.TemporaryDirectory(prefix="attcost") as workdir:  # a Task writes nothing
        config = Config(workdir=workdir, batch_size=batch, region_grid=grid,
                        attention=attention, progress=False)
        task = Task(config, strategy, data, split)
    task.fill_buffers()
    out, peak = {}, 0
    for net, key in (("imgnet", "img"), ("txtnet", "txt")):
        step = task.steps.step(net)
        batches = iter(task.dataset(seed=0))
        float(step(next(batches))["total"])  # trace + warm-up
        tf.config.experimental.reset_memory_stats("CPU:0")
        before = tf.config.experimental.get_memory_info("CPU:0")["current"]
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            float(step(next(batches))["total"])  # waits for the step
            times.append(time.perf_counter() - start)
        peak = max(peak, tf.config.experimental.get_memory_info("CPU:0")["peak"] - before)
        out[key] = 1e3 * statistics.median(times)
    out["peak_mb"] = peak / 2**20
    del task
    keras.backend.clear_session()  # the next cell's networks replace this one's
    gc.collect()
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--regions", type=int, nargs="+", default=[1, 4, 9, 49],
                        help="squares 1..49 (a g x g grid of the 7x7 map)")
    args = parser.parse_args()
    bad = [r for r in args.regions if round(r ** 0.5) ** 2 != r or not 1 <= r <= 49]
    if bad:
        parser.error(f"--regions must be squares in 1..49 (g x g grids), got {bad}")
    tf.get_logger().setLevel("ERROR")  # one Task per cell retraces by design
    strategy = make_strategy(1)
    started = time.time()
    print(f"{'batch':>5} {'R':>4} {'model':>6} {'ImgNet step ms':>15} {'ratio':>6} "
          f"{'TxtNet step ms':>15} {'ratio':>6} {'peak MB':>8}", flush=True)
    for batch in args.batches:
        ssah = measure(batch, 1, "none", args.repeats, strategy)
        print(f"{batch:>5} {1:>4} {'SSAH':>6} {ssah['img']:>15.1f} {'':>6} {ssah['txt']:>15.1f} "
              f"{'':>6} {ssah['peak_mb']:>8.0f}", flush=True)
        base = None
        for regions in args.regions:
            cell = measure(batch, regions, "scan", args.repeats, strategy)
            base = base or cell
            print(f"{batch:>5} {regions:>4} {'UDSPH':>6} {cell['img']:>15.1f} "
                  f"{cell['img'] / base['img']:>6.2f} {cell['txt']:>15.1f} "
                  f"{cell['txt'] / base['txt']:>6.2f} {cell['peak_mb']:>8.0f}", flush=True)
    print(f"{args.repeats} repeats; TF {tf.__version__}; {os.cpu_count()} CPUs; load average "
          f"{os.getloadavg()[0]:.1f} at the end; {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
