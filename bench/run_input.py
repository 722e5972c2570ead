"""The input side of training: one pipeline a pass (before) against one a run (the trainer).

    python bench/run_input.py [--flagfile flags/mirflickr730.cfg] [--epochs 10] [--repeats 5]

Builds the flagfile's Task (its data, split and budget; one replica) and times the input of
--epochs epochs of its schedule (MIRFlickr-730: LabNet x3, discriminators, ImgNet, TxtNet, six
passes of steps_per_pass batches an epoch) with no training step: setting the pipelines up,
drawing every batch and deleting the iterators.
- per pass: one distributed dataset and iterator a pass (`Task.dataset`, the trainer before);
- per run: one for all the epochs (`Task.schedule_dataset`, the trainer now; the same
  batches: tests/test_training_steps.py, tests/test_data_pipeline.py).
Interleaved, median of --repeats; seconds per epoch, the ratio to per pass, and the largest
single iterator deletion seen (deleting a distributed iterator stalls at times).
"""

import argparse
import gc
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _delete(iterator):
    """Seconds to delete the iterator (its background threads are stopped)."""
    t0 = time.perf_counter()
    del iterator
    gc.collect()
    return time.perf_counter() - t0


def per_pass(task, seeds):
    deletions = []
    for seed in seeds:
        iterator = iter(task.dataset(seed))
        for _ in range(task.steps_per_pass):
            next(iterator)
        deletions.append(_delete(iterator))
    return max(deletions)


def per_run(task, seeds):
    iterator = iter(task.schedule_dataset(seeds))
    for _ in range(len(seeds) * task.steps_per_pass):
        next(iterator)
    return _delete(iterator)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--flagfile", default="flags/mirflickr730.cfg")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()

    from flags import config_from_flagfile
    from udsph_tf.config import replace
    from udsph_tf.modes.train import prepare_data
    from udsph_tf.training import schedule
    from udsph_tf.training.strategy import make_strategy
    from udsph_tf.training.task import Task

    args.flagfile = os.path.abspath(args.flagfile)
    os.chdir(ROOT)  # the flagfile's relative paths are from the repository root
    config = replace(config_from_flagfile(args.flagfile), workdir="/tmp/udsph_run_input")
    data, split, raw = prepare_data(config, None, None, None)
    task = Task(config, make_strategy(1), data, split, raw)
    passes = len(schedule.epoch_phases(config))
    seeds = [schedule.data_seed(config.seed, epoch, k)
             for epoch in range(args.epochs) for k in range(passes)]
    variants = {"per pass": per_pass, "per run": per_run}
    for fn in variants.values():  # warm-up: the first pipelines and host copies
        fn(task, seeds[:passes])
    seconds = {name: [] for name in variants}
    stalls = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            stalls[name].append(fn(task, seeds))
            seconds[name].append(time.perf_counter() - t0)

    print(f"{os.path.relpath(args.flagfile, ROOT)}: {args.epochs} epochs of {passes} passes of "
          f"{task.steps_per_pass} batches of {task.global_batch_size}, {task.n_train} training "
          f"rows; median of {args.repeats}")
    base = statistics.median(seconds["per pass"]) / args.epochs
    print("| input (set-up, batches, deletion) | s / epoch | vs per pass | longest deletion s |")
    print("|---|---:|---:|---:|")
    for name in variants:
        median = statistics.median(seconds[name]) / args.epochs
        print(f"| {name} | {median:.3f} | {median / base:.2f} | {max(stalls[name]):.2f} |")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
