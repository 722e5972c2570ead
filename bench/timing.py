"""The timing helper the bench scripts share (run them as `python bench/<script>.py`, which puts
this folder on sys.path)."""

import statistics
import time


def median_seconds(fn, repeats, warmup=False):
    """Median wall seconds of `repeats` calls of fn(); warmup=True makes one untimed call first
    (tracing, first-call allocations)."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
