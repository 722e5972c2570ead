"""The results grid: UDSPH vs SSAH (no attention) vs DCMH-like, at 16/32/64 bits over seeds.

    python bench/run_results.py --flagfile=flags/mirflickr730.cfg [--seeds 0 1 2]
    python bench/run_results.py --dataset=default --epochs=E

A --flagfile gives the data set and its budget as main.py reads them (--epochs and --set
override it); without one, --dataset and --epochs do.

Each run trains from scratch in its own workdir (under --root), selects its checkpoint on the
validation split and reports the test MAP on the query set (index-ordered ties). The split is the
dataset's fixed/default one (split seed 0); --seeds vary the model initialisation and data order.
Prints a markdown table: mean +- sample std over seeds, and the mean wall time of one run.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # recipe_sweep, also on import
from recipe_sweep import typed  # noqa: E402  (a Config field from its text, one rule)

VARIANTS = {
    "UDSPH": {},
    "SSAH (--attention=none)": {"attention": "none"},
    "DCMH-like (--nolabel_net --noadversarial --attention=none)":
        {"label_net": False, "adversarial": False, "attention": "none"},
    "UDSPH without the adversary (--noadversarial)": {"adversarial": False},
}
# Peers on the same 730-row split, features and tie rule, measured OUTSIDE this repository
# (issue 10; DADH: PyTorch, 30 epochs, last epoch; SSAH: the official code): (I->T, T->I).
PEERS_MIRFLICKR730 = {
    "DADH (measured elsewhere)": {16: (0.789, 0.698), 32: (0.812, 0.719), 64: (0.826, 0.738)},
    "SSAH official code (measured elsewhere)": {16: (0.810, 0.704), 32: (0.804, 0.705),
                                                64: (0.776, 0.662)},
}
SHARED_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..",
                           "shared", "data", "mirflickr25k")


def config_from_flagfile(path):
    """The Config main.py would build from `--flagfile=path`."""
    from flags import config_from_flagfile as from_flagfile
    if not os.path.isfile(path):
        raise SystemExit(f"error: --flagfile={path}: no such file")
    return from_flagfile(path)


def _parse_set(items):
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mirflickr730")
    p.add_argument("--data_dir", default=SHARED_DATA)
    p.add_argument("--flagfile", default="", help="a main.py flagfile (e.g. "
                   "flags/mirflickr730.cfg): the data set and its budget, as main.py reads them")
    p.add_argument("--epochs", type=int, default=0, help="epochs (required without --flagfile)")
    p.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=[0, 1, 2], type=int,
                   help="indices into VARIANTS (3: UDSPH without the adversary)")
    p.add_argument("--root", default="/tmp/udsph_results")
    p.add_argument("--json", default="", help="also write every run's figures here")
    p.add_argument("--set", nargs="*", default=[], help="extra Config fields, key=value")
    p.add_argument("--previous", default="", help="a log of an interrupted grid: its JSON "
                   "lines (one finished run each) are reused, the missing runs are trained")
    p.add_argument("--keep_checkpoints_on_disk", action="store_true",
                   help="keep each run's checkpoints (about 1 GB per checkpoint at SSAH widths)")
    args = p.parse_args()

    import tensorflow as tf
    from udsph_tf.config import Config, replace
    from udsph_tf.modes.train import train_and_evaluate

    # One single-device strategy for every run of the process.
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    extra = _parse_set(args.set)
    if args.flagfile:
        base = replace(config_from_flagfile(args.flagfile), progress=False)
        if args.epochs:
            base = replace(base, epochs=args.epochs)
        args.dataset = base.dataset
    elif not args.epochs:
        p.error("--epochs is required without --flagfile")
    else:
        base = Config(dataset=args.dataset, data_dir=args.data_dir if args.dataset != "default"
                      else "", epochs=args.epochs, progress=False)
    base = replace(base, **typed(base, extra))
    runs = []
    names = list(VARIANTS)
    done = {}
    if args.previous:
        with open(args.previous) as f:
            for line in f:
                if line.startswith("{"):
                    r = json.loads(line)
                    done[(r["variant"], r["bits"], r["seed"])] = r
    # Seeds outermost: an interrupted grid still has every cell for the seeds it finished.
    for seed in args.seeds:
        for vi in args.variants:
            name = names[vi]
            for bits in args.bits:
                if (name, bits, seed) in done:
                    runs.append(done[(name, bits, seed)])
                    print(json.dumps(runs[-1]), flush=True)
                    continue
                workdir = os.path.join(args.root, args.dataset, f"v{vi}_b{bits}_s{seed}")
                shutil.rmtree(workdir, ignore_errors=True)
                config = replace(base, workdir=workdir, bits=bits, seed=seed, **VARIANTS[name])
                t0 = time.time()
                m = train_and_evaluate(config, strategy=strategy)
                floor = m.get("linear_floor") or {}
                runs.append({"variant": name, "bits": bits, "seed": seed,
                             "map_i2t": m["test"]["map_i2t"], "map_t2i": m["test"]["map_t2i"],
                             "val": m["selection"]["best_val_score"],
                             "floor_i2t": floor.get("map_i2t"), "floor_t2i": floor.get("map_t2i"),
                             "seconds": time.time() - t0,
                             "distinct_db_codes": m["test"]["distinct_codes"],
                             "chance_base_rate": m["chance"]["label_base_rate"],
                             "chance_random_codes": m["chance"]["map_random_codes_i2t"]})
                print(json.dumps(runs[-1]), flush=True)
                if not args.keep_checkpoints_on_disk:
                    for sub in ("ckpt", "best"):
                        shutil.rmtree(os.path.join(workdir, sub), ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "runs": runs}, f, indent=1)

    def stat(values):
        mean = statistics.mean(values)
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{mean:.4f} ± {sd:.4f}"

    print(f"\n{args.dataset}, {args.epochs} epochs, seeds {args.seeds}, "
          f"extra {extra or 'none'}; chance (label base rate) "
          f"{runs[0]['chance_base_rate']:.4f}")
    print("| method | bits | MAP I->T | MAP T->I | val score | wall s / run |")
    print("|---|---|---|---|---|---|")
    for vi in args.variants:
        for bits in args.bits:
            sel = [r for r in runs if r["variant"] == names[vi] and r["bits"] == bits]
            if not sel:
                continue
            vals = [r["val"] for r in sel if r.get("val") is not None]
            print(f"| {names[vi]} | {bits} | {stat([r['map_i2t'] for r in sel])} | "
                  f"{stat([r['map_t2i'] for r in sel])} | "
                  f"{stat(vals) if vals else '-'} | "
                  f"{statistics.mean(r['seconds'] for r in sel):.1f} |")
    for bits in args.bits:
        sel = [r for r in runs if r["bits"] == bits and r.get("floor_i2t") is not None]
        if sel:
            print(f"| linear floor (ridge + LSH, same rows) | {bits} | "
                  f"{stat([r['floor_i2t'] for r in sel])} | "
                  f"{stat([r['floor_t2i'] for r in sel])} | | |")
    if args.dataset == "mirflickr730":
        for peer, figures in PEERS_MIRFLICKR730.items():
            for bits in args.bits:
                if bits in figures:
                    print(f"| {peer} | {bits} | {figures[bits][0]:.3f} | "
                          f"{figures[bits][1]:.3f} | | |")


if __name__ == "__main__":
    main()
