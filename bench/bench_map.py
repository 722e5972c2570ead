"""Benchmark: MAP@all of udsph_tf.evaluation against the reference per-query loop, same process.

Scales: MIRFlickr (2,000 queries x 18,015 items) and NUS-WIDE (2,100 x 193,734); 16/32/64 bits;
ties "index" and "expected". Labels are the real MIRFlickr-25K labels when ../shared/data is
present (rows resampled with replacement to reach the NUS-WIDE size), else synthetic ones with
MIRFlickr-like statistics; codes are sign(L P + noise), so they correlate with the labels.
The reference is timed on every query at MIRFlickr scale and on a subset at NUS-WIDE scale
(extrapolated linearly in the number of queries; the table says so). Peak memory is measured in
a separate untimed run with tracemalloc (numpy reports its buffers to it).

    python bench/bench_map.py [--repeats 3] [--ref-queries-nus 105] [--threads N]
    python bench/bench_map.py --budgets 2 4 8 16 32  # chunk memory budget sweep (MiB), no reference
    python bench/bench_map.py --stages               # ns per (query, item) of each step
"""

import argparse
import importlib.util
import os
import pathlib
import statistics
import sys
import time
import tracemalloc

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from udsph_tf.evaluation import mean_average_precision  # noqa: E402
from udsph_tf.evaluation.ranking import (DEFAULT_MEMORY_BUDGET, PackedSet,  # noqa: E402
                                         chunk_size, default_num_threads)

SHARED = pathlib.Path(os.environ.get("UDSPH_SHARED_DATA", ROOT.parent / "shared" / "data"))
REFMAP = SHARED.parent / "reference" / "refmap.py"


def load_reference():
    if not REFMAP.exists():
        sys.exit(f"reference implementation not found at {REFMAP}")
    spec = importlib.util.spec_from_file_location("refmap", REFMAP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def label_pool(rng):
    path = SHARED / "mirflickr25k" / "mirflickr25k-lall.mat"
    if path.exists():
        from scipy.io import loadmat
        return loadmat(str(path))["LAll"].astype(np.uint8), "real MIRFlickr-25K labels"
    # 24 classes, ~3.8 labels per row as in MIRFlickr, none empty.
    freq = np.clip(rng.gamma(1.0, 0.16, 24), 0.02, 0.6)
    labels = (rng.random((20015, 24)) < freq).astype(np.uint8)
    labels[labels.sum(1) == 0, rng.integers(0, 24)] = 1
    return labels, "synthetic labels (MIRFlickr-like rates)"


def make_case(rng, pool, nq, nd, bits, noise=1.5):
    if nq + nd <= len(pool):
        idx = rng.permutation(len(pool))[:nq + nd]
    else:
        idx = rng.integers(0, len(pool), nq + nd)
    labels = pool[idx].astype(np.float32)
    proj = rng.standard_normal((labels.shape[1], bits)).astype(np.float32)
    codes = np.where(labels @ proj + noise * rng.standard_normal((nq + nd, bits)) >= 0,
                     1, -1).astype(np.int8)
    return codes[:nq], codes[nq:], labels[:nq], labels[nq:]


def timed(fn, repeats):
    """Median wall seconds, median CPU seconds (all threads of this process), last value.
    CPU time is reported beside wall time because the machine is shared: under load the wall
    time of both sides stretches with the other processes, their CPU time much less."""
    walls, cpus, value = [], [], None
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        value = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), value


def peak_mib(fn):
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--ref-queries-nus", type=int, default=105,
                   help="queries of the reference loop timed at NUS-WIDE scale (extrapolated)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--scales", nargs="+", default=["mirflickr", "nuswide"])
    p.add_argument("--budgets", type=float, nargs="+", default=None,
                   help="instead of the table: time ties='index' at 32 bits per budget (MiB)")
    p.add_argument("--stages", action="store_true",
                   help="instead of the table: time per step of the ties='index' path")
    a = p.parse_args()
    ref = load_reference()
    rng = np.random.default_rng(0)
    pool, source = label_pool(rng)
    threads = a.threads or default_num_threads()
    scales = {"mirflickr": (2000, 18015), "nuswide": (2100, 193734)}
    print(f"labels: {source}; threads: {threads}; memory budget "
          f"{DEFAULT_MEMORY_BUDGET / 2**20:.0f} MiB; repeats: {a.repeats} (median); "
          f"os.cpu_count()={os.cpu_count()}; load average {os.getloadavg()[0]:.1f}")
    if a.budgets:
        return budget_sweep(a, pool, rng, threads, scales)
    if a.stages:
        return stage_profile(a, pool, rng, scales)
    header = (f"{'scale':9} {'bits':>4} {'ties':8} {'ours s':>7} {'ref s':>7} {'speedup':>8} "
              f"{'ours cpu':>8} {'ref cpu':>8} {'cpu x':>6} {'ref queries':>14} {'peak MiB':>8} "
              f"{'chunk':>5} {'MAP':>7} {'|ours-ref|':>10}")
    print(header)
    print("-" * len(header))
    for scale in a.scales:
        nq, nd = scales[scale]
        for bits in a.bits:
            q, d, ql, dl = make_case(rng, pool, nq, nd, bits)
            rows = chunk_size(PackedSet(d, dl), DEFAULT_MEMORY_BUDGET / threads)
            for ties in ("index", "expected"):
                def ours(qq=q, qql=ql):
                    return mean_average_precision(qq, d, qql, dl, ties=ties,
                                                  num_threads=threads)
                t_ours, c_ours, value = timed(ours, a.repeats)
                peak = peak_mib(ours)
                n_ref = nq if scale == "mirflickr" else min(nq, a.ref_queries_nus)
                t_ref, c_ref, ref_value = timed(lambda: ref.mean_average_precision(
                    q[:n_ref], d, ql[:n_ref], dl, ties=ties), 1)
                t_ref, c_ref = t_ref * nq / n_ref, c_ref * nq / n_ref
                ours_sub = (value if n_ref == nq else
                            mean_average_precision(q[:n_ref], d, ql[:n_ref], dl, ties=ties))
                note = "all" if n_ref == nq else f"{n_ref} (extrap.)"
                print(f"{scale:9} {bits:4d} {ties:8} {t_ours:7.3f} {t_ref:7.2f} "
                      f"{t_ref / t_ours:7.1f}x {c_ours:8.3f} {c_ref:8.2f} {c_ref / c_ours:5.1f}x "
                      f"{note:>14} {peak:8.1f} {rows:5d} {value:7.4f} "
                      f"{abs(ours_sub - ref_value):10.1e}", flush=True)


def budget_sweep(a, pool, rng, threads, scales):
    print(f"{'scale':9} {'MiB':>6} {'chunk':>5} {'wall s':>7} {'cpu s':>7}")
    for scale in a.scales:
        nq, nd = scales[scale]
        q, d, ql, dl = make_case(rng, pool, nq, nd, 32)
        for mib in a.budgets:
            budget = mib * 2**20
            rows = chunk_size(PackedSet(d, dl), budget / threads)
            wall, cpu, _ = timed(lambda: mean_average_precision(
                q, d, ql, dl, memory_budget=budget, num_threads=threads), a.repeats)
            print(f"{scale:9} {mib:6.0f} {rows:5d} {wall:7.3f} {cpu:7.3f}", flush=True)


def stage_profile(a, pool, rng, scales):
    """The steps of ranking._work (ties='index'), re-run one by one on one thread with
    perf_counter around each step, to show where the time goes (ns per query x item)."""
    from udsph_tf.evaluation.ranking import ChunkBuffers, counting_sort, _fill_chunk
    clock = time.perf_counter
    names = ["fill (xor/popcount/and/group)", "counting sort (C, one per chunk)",
             "flatnonzero", "histograms", "AP sums (per query)"]
    for scale in a.scales:
        nq, nd = scales[scale]
        for bits in a.bits:
            q, d, ql, dl = make_case(rng, pool, nq, nd, bits)
            qs, db = PackedSet(q, ql), PackedSet(d, dl)
            rows, nb = chunk_size(db, DEFAULT_MEMORY_BUDGET / default_num_threads()), bits + 1
            buf = ChunkBuffers(rows, db)
            so_far, ranks = np.arange(1, nd + 1, dtype=np.float64), np.empty(nd)
            spent = np.zeros(len(names))
            for i0 in range(0, nq, rows):
                i1 = min(nq, i0 + rows)
                c = i1 - i0
                t = [clock()]
                group, rel = _fill_chunk(qs, db, i0, i1, buf)
                t.append(clock())
                starts, ranked = counting_sort(group, rel, c * nb, buf)
                t.append(clock())
                hits = np.flatnonzero(ranked)
                t.append(clock())
                rel_starts = np.searchsorted(hits, starts)
                np.diff(starts), np.diff(rel_starts)
                t.append(clock())
                for r in range(c):
                    lo, hi = rel_starts[r * nb], rel_starts[(r + 1) * nb]
                    rk = np.subtract(hits[lo:hi], r * nd - 1, out=ranks[:hi - lo])
                    np.divide(so_far[:hi - lo], rk).sum()
                t.append(clock())
                spent += np.diff(t)
            per_cell = spent / (nq * nd) * 1e9
            print(f"{scale} {bits} bits, chunk {rows}: ns per (query, item), one thread")
            for name, ns in zip(names, per_cell):
                print(f"  {name:34} {ns:6.2f}")
            print(f"  {'total':34} {per_cell.sum():6.2f}", flush=True)


if __name__ == "__main__":
    main()
