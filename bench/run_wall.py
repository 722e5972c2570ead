"""Wall time of whole `python main.py` runs (selection and refit) under variants of a flagfile.

    python bench/run_wall.py --flagfile flags/mirflickr730.cfg --bits 16 --seed 1 \
        --variants keras:--nofused_adam fused:--fused_adam --repeats 2

Each variant is NAME:FLAGS (main.py flags, space-separated; "NAME:" adds none); the first is
the baseline. NAME@CHECKOUT:FLAGS runs another checkout's main.py (another commit: `git
worktree add ../udsph-before REV`), from its folder, so the flagfile's relative paths must
reach the data from there too (a sibling of this checkout does):

    python bench/run_wall.py --variants before@../udsph-before: after: --repeats 2
 The variants' runs alternate (repeat 1 of each, then repeat 2, ...), so a load
change on the machine falls on all of them. Each run is a subprocess of main.py in a fresh
workdir; measured: wall seconds, user + system CPU and peak RSS (wait4 of the child), the
seconds the networks' steps and their input took over both phases (the history.json files of
the run and its refit) and the test MAP. Prints one row a variant: medians over its repeats,
and the ratio of its median wall time to the baseline's.
"""

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_variant(text):
    """NAME[@CHECKOUT]:FLAGS -> (name, [flag, ...], checkout or None)."""
    head, sep, flags = text.partition(":")
    name, _, checkout = head.partition("@")
    if not name or not sep:
        raise SystemExit(f"a variant is NAME[@CHECKOUT]:FLAGS (e.g. fused:--fused_adam), "
                         f"got {text!r}")
    if checkout and not os.path.isfile(os.path.join(checkout, "main.py")):
        raise SystemExit(f"variant {name}: no main.py in {checkout!r}")
    return name, shlex.split(flags), checkout or None


def step_seconds(workdir):
    """Seconds of the networks' steps and their input's set-up, summed over the run's epochs
    and its refit's (input_seconds: the session's one pipeline, timed apart; before, each
    pass's set-up fell inside its network's step_seconds)."""
    total = 0.0
    for sub in ("", "refit"):
        path = os.path.join(workdir, sub, "history.json")
        if os.path.exists(path):
            with open(path) as f:
                for epoch in json.load(f):
                    total += (sum(epoch.get("step_seconds", {}).values())
                              + epoch.get("input_seconds", 0.0))
    return total


def run_once(cmd, workdir, log, cwd=ROOT):
    """One main.py run; returns wall/CPU seconds, peak RSS (MB), step seconds and test MAP."""
    shutil.rmtree(workdir, ignore_errors=True)
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd + [f"--workdir={workdir}"], stdout=out,
                                stderr=subprocess.STDOUT, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        with open(log) as f:
            sys.stdout.write(f.read()[-3000:])
        raise SystemExit(f"main.py failed (log {log})")
    with open(os.path.join(workdir, "metrics.json")) as f:
        test = json.load(f)["test"]
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024, "steps": step_seconds(workdir),
            "i2t": test["map_i2t"], "t2i": test["map_t2i"]}


def summary_rows(results, baseline):
    """(name, medians..., wall ratio to the baseline's median) a variant, in input order."""
    base = statistics.median(r["wall"] for r in results[baseline])
    rows = []
    for name, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        rows.append((name, len(runs), med, med["wall"] / base))
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--flagfile", default="flags/mirflickr730.cfg")
    p.add_argument("--bits", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", nargs="+", default=["keras:--nofused_adam", "fused:--fused_adam"])
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--root", default="/tmp/udsph_run_wall")
    args = p.parse_args()
    variants = [parse_variant(v) for v in args.variants]
    if len({n for n, _, _ in variants}) != len(variants):
        raise SystemExit("variant names must differ")
    flagfile = os.path.abspath(args.flagfile)
    if not os.path.exists(flagfile):
        raise SystemExit(f"no such flagfile: {args.flagfile}")
    os.makedirs(args.root, exist_ok=True)
    results = {name: [] for name, _, _ in variants}
    for repeat in range(args.repeats):
        for name, flags, checkout in variants:
            code = os.path.abspath(checkout or ROOT)
            cmd = [sys.executable, os.path.join(code, "main.py"), f"--flagfile={flagfile}",
                   f"--bits={args.bits}", f"--seed={args.seed}", "--noprogress", *flags]
            workdir = os.path.join(args.root, f"{name}_{repeat}")
            print("$ " + " ".join(cmd), flush=True)
            r = run_once(cmd, workdir, workdir + ".log", cwd=code)
            print(f"  {name} repeat {repeat + 1}: wall {r['wall']:.1f} s, steps "
                  f"{r['steps']:.1f} s, test MAP {r['i2t']:.4f} / {r['t2i']:.4f}", flush=True)
            results[name].append(r)
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n{os.path.relpath(flagfile, ROOT)}, {args.bits} bits, seed {args.seed}; medians "
          f"of {args.repeats} run(s) a variant, baseline {variants[0][0]}")
    print(f"{'variant':<10} {'runs':>4} {'wall s':>7} {'vs base':>7} {'CPU s':>7} "
          f"{'steps s':>7} {'RSS MB':>7} {'I->T':>7} {'T->I':>7}")
    for name, n, med, ratio in summary_rows(results, variants[0][0]):
        print(f"{name:<10} {n:>4} {med['wall']:>7.1f} {ratio:>7.2f} {med['cpu']:>7.1f} "
              f"{med['steps']:>7.1f} {med['rss_mb']:>7.0f} {med['i2t']:>7.4f} {med['t2i']:>7.4f}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
