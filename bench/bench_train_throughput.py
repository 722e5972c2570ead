"""Training throughput (pairs/s per network step) at MIRFlickr scale, one vs two replicas.

    python bench/bench_train_throughput.py [--repeats 3] [--steps 4]

10,000 training pairs, 4,096-d image features, 1,386-d tags, 24 labels, batch 128, SSAH widths
(4,096 hidden), 32 bits, UDSPH (attention on). The CPU is split into two logical devices before
TensorFlow starts; "1 replica" runs on the first of them, "2 replicas" on both, in this process.
Each figure: median over repeats of (global batch x steps / seconds), after a warm-up step.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

from udsph_tf.config import Config  # noqa: E402
from udsph_tf.data.types import CrossModalData, Split  # noqa: E402
from udsph_tf.training import schedule  # noqa: E402
from udsph_tf.training.task import Task  # noqa: E402

N_TRAIN, IMAGE_DIM, TAG_DIM, LABELS, BATCH = 10_000, 4096, 1386, 24, 128


def mirflickr_scale_data(seed=0):
    rng = np.random.default_rng(seed)
    n = N_TRAIN + 200
    labels = (rng.random((n, LABELS)) < 0.16).astype(np.float32)
    labels[labels.sum(1) == 0, 0] = 1
    images = rng.random((n, IMAGE_DIM), dtype=np.float32)
    tags = (rng.random((n, TAG_DIM)) < 0.005).astype(np.float32)
    data = CrossModalData("bench", images, tags, labels, np.arange(n))
    split = Split(query_idx=np.arange(100), database_idx=np.arange(100, n),
                  train_idx=np.arange(200, n), val_idx=np.arange(100, 200), seed=0)
    return data, split


def measure(replicas, data, split, repeats, steps):
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:replicas]
    strategy = tf.distribute.MirroredStrategy(devices)
    config = Config(workdir=tempfile.mkdtemp(), batch_size=BATCH, bits=32, progress=False)
    task = Task(config, strategy, data, split)
    task.fill_buffers()
    rates = {}
    for net in schedule.active_networks(config):
        step = task.steps.step(net)
        iterator = iter(task.dataset(seed=0))
        float(step(next(iterator))["total"])  # trace + warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(steps):
                logs = step(next(iterator))
            float(logs["total"])  # wait for the last step
            times.append(time.perf_counter() - t0)
        rates[net] = BATCH * steps / statistics.median(times)
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    data, split = mirflickr_scale_data()
    one = measure(1, data, split, args.repeats, args.steps)
    two = measure(2, data, split, args.repeats, args.steps)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'network step':<14}{'1 replica pairs/s':>20}{'2 replicas pairs/s':>20}{'ratio':>8}")
    for net in one:
        print(f"{net:<14}{one[net]:>20.1f}{two[net]:>20.1f}{two[net] / one[net]:>8.2f}")


if __name__ == "__main__":
    main()
