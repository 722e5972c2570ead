"""Training-recipe candidates scored on VALIDATION MAP over several data sets (never query MAP).

    python bench/recipe_sweep.py --recipes ssah_paper new --datasets mirflickr730 synthetic_single
    python bench/recipe_sweep.py --list

Each (recipe, dataset, seed) trains from scratch with the dataset's budget (its flagfile's
epochs/batch; the generated families use the defaults) and records the selected checkpoint's
validation score (mean of val MAP I->T and T->I), the test MAP, the linear floor and the
distinct database codes. The table ranks recipes by their mean validation score over the data
sets; test MAP is printed for reference only and plays no part in the ranking.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SHARED = os.path.join(ROOT, "..", "shared", "data", "mirflickr25k")

# Data sets and their budgets (flags/*.cfg for the real one; defaults for the generated ones).
DATASETS = {
    # region_grid as flags/mirflickr730.cfg since issue 11 (earlier sweeps: the global vector).
    # fused_adam as the flagfile since this session (earlier sweeps: Keras Adam).
    "mirflickr730": {"dataset": "mirflickr730", "data_dir": SHARED, "batch_size": 32,
                     "epochs": 10, "region_grid": 3, "min_pass_steps": 40, "patience": 0,
                     "fused_adam": True},
    "mirflickr730_glove": {"dataset": "mirflickr730", "data_dir": SHARED, "batch_size": 32,
                           "epochs": 10, "text_features": "glove", "min_pass_steps": 40,
                           "patience": 0},
    "synthetic_single": {"dataset": "synthetic_single"},
    "synthetic_dense": {"dataset": "synthetic_dense"},
    "default": {"dataset": "default"},
}
# The single-label family drawn again with other seeds and strengths (so a default is not
# chosen for one draw): written once as --dataset=custom files under --cache, the family's
# split sizes (693 queries, the other 2,173 items train and are the database).
SINGLE_LABEL_DRAWS = {
    "single_s1": {"seed": 1},
    "single_weak": {"seed": 2, "image_signal": 0.02, "words_per_image": 60},
    "single_t06": {"seed": 3, "text_signal": 0.6, "modes_per_class": 2, "image_signal": 0.04},
    # Unequal class sizes (chance 0.13 / 0.11), denser histograms (200-400 visual words an
    # image) with a weaker class signal: linear floors 0.22 / 0.22 and 0.15 / 0.16 at 32 bits.
    "single_imb": {"seed": 4, "class_concentration": 5, "words_per_image": 400,
                   "image_signal": 0.004},
    "single_imb_weak": {"seed": 5, "class_concentration": 5, "words_per_image": 200,
                        "image_signal": 0.006, "text_signal": 0.6, "text_concentration": 1.0},
}
for _name in SINGLE_LABEL_DRAWS:
    DATASETS[_name] = {"dataset": "custom", "num_query": 693, "num_train": 2173}


def dataset_fields(name, cache):
    """Config fields of a data set; a single-label draw is generated into `cache` once."""
    fields = dict(DATASETS[name])
    if name in SINGLE_LABEL_DRAWS:
        import numpy as np
        from udsph_tf.data.synthetic import generate_single_label
        path = os.path.join(cache, f"{name}.npz")
        if not os.path.exists(path):
            os.makedirs(cache, exist_ok=True)
            d = generate_single_label(**SINGLE_LABEL_DRAWS[name])
            np.savez(path + ".tmp.npz", IAll=d.images, YAll=d.tags, LAll=d.labels)
            os.replace(path + ".tmp.npz", path)
        fields.update(image_file=path, tag_file=path, label_file=path)
    return fields
# Recipes: every field the recipe study varied, set explicitly, so each name means the same
# run whatever the current defaults are. "before" is the recipe of the code before issue 10
# (raw inputs, SSAH paper's joint B, one pass an epoch, LabNet 1e-3, ImgNet 1e-4, fusion on);
# its text front-end follows --text_encoder=auto, since the old code refused dense text.
_BEFORE = {"image_norm": "none", "text_norm": "none", "code_target": "joint",
           "min_pass_steps": 0, "lr_lab": 1e-3, "lr_img": 1e-4, "txt_scales": "50,30,15,10,5",
           "balance": 0.0, "cross_pair": 0.0, "batch_norm": False, "dropout": 0.0,
           "lab_passes": 1, "delta": 1.0, "epochs_scale": 1}
_INPUTS = {**_BEFORE, "image_norm": "auto", "text_norm": "auto"}
_LABEL = {**_INPUTS, "lr_lab": 3e-4, "code_target": "label"}
_STEPS = {**_LABEL, "min_pass_steps": 40, "lr_img": 1e-3}
_NO_FUSION = {**_STEPS, "txt_scales": ""}
_DELTA01 = {**_NO_FUSION, "balance": 1.0, "lab_passes": 3, "delta": 0.1}
RECIPES = {
    "before": _BEFORE,
    "ssah_paper": _BEFORE,  # the name of the first sweeps
    "inputs": _INPUTS,                                        # + normalised inputs
    "label": _LABEL,                                          # + LabNet 3e-4, label target
    "label_lr_img": {**_LABEL, "lr_img": 1e-3},
    "label_steps": {**_LABEL, "min_pass_steps": 40},
    "label_steps_lr_img": _STEPS,
    "own_target": {**_STEPS, "code_target": "own"},
    "no_fusion": _NO_FUSION,
    "no_fusion_one_pass": {**_NO_FUSION, "min_pass_steps": 0},
    "no_fusion_balance": {**_NO_FUSION, "balance": 1.0},
    "no_fusion_cross": {**_NO_FUSION, "cross_pair": 10.0},
    "no_fusion_batch_norm": {**_NO_FUSION, "batch_norm": True},
    "no_fusion_dropout": {**_NO_FUSION, "dropout": 0.5},
    # After the grid showed the DCMH-like ablation ahead on MIRFlickr-730:
    "dcmh_like": {**_NO_FUSION, "balance": 1.0, "label_net": False, "adversarial": False,
                  "attention": "none"},
    "cross30": {**_NO_FUSION, "balance": 1.0, "cross_pair": 30.0},
    "lab_passes3": {**_NO_FUSION, "balance": 1.0, "lab_passes": 3},  # = the defaults
    "lab_passes5": {**_NO_FUSION, "balance": 1.0, "lab_passes": 5},
    # The adversary's weight (after the 3-seed grid: UDSPH without the adversary ahead on
    # MIRFlickr-730 test), chosen on validation over four data sets: delta01 = the defaults.
    "delta03": {**_NO_FUSION, "balance": 1.0, "lab_passes": 3, "delta": 0.3},
    "delta01": {**_NO_FUSION, "balance": 1.0, "lab_passes": 3, "delta": 0.1},
    "noadv": {**_NO_FUSION, "balance": 1.0, "lab_passes": 3, "adversarial": False},
    # The discriminators also stepped on every ImgNet/TxtNet batch (never a frozen one).
    "dstep": {**_NO_FUSION, "balance": 1.0, "lab_passes": 3, "disc_schedule": "step"},
    # Twice the data set's epochs (its best epoch was the last on the single-label family).
    "e12": {**_NO_FUSION, "balance": 1.0, "lab_passes": 3, "epochs_scale": 2},
    "e12d01": {**_NO_FUSION, "balance": 1.0, "lab_passes": 3, "delta": 0.1, "epochs_scale": 2},
    # After bench/code_oracles.py showed the text side bounding MIRFlickr-730's I->T (each on
    # top of delta01, the defaults): a direct image<->text term, more ImgNet steps, graded
    # pair targets, held unseen input columns, a heavier quantisation term, a slower TxtNet,
    # a heavier label-prediction term. None was ahead on validation.
    "cx3": {**_DELTA01, "cross_pair": 3.0},
    "ip2": {**_DELTA01, "img_passes": 2},
    "cosine": {**_DELTA01, "similarity": "cosine"},
    "hold": {**_DELTA01, "hold_constant_columns": True},
    "beta10": {**_DELTA01, "beta": 10.0},
    "beta30": {**_DELTA01, "beta": 30.0},
    "lr_txt3e4": {**_DELTA01, "lr_txt": 3e-4},
    "eta10": {**_DELTA01, "eta": 10.0},
    # This session (issue 10, after the region merge): tag dropout in TxtNet's steps (unseen
    # rows meet partial tag sets), a lighter quantisation term, each network its own sign,
    # heavier image<->text terms.
    "td02": {**_DELTA01, "tag_dropout": 0.2},
    "td04": {**_DELTA01, "tag_dropout": 0.4},
    "td06": {**_DELTA01, "tag_dropout": 0.6},
    "beta03": {**_DELTA01, "beta": 0.3},
    "own": {**_DELTA01, "code_target": "own"},
    "cx10": {**_DELTA01, "cross_pair": 10.0},
    "cx30": {**_DELTA01, "cross_pair": 30.0},
    "td04cx10": {**_DELTA01, "tag_dropout": 0.4, "cross_pair": 10.0},
    # Weaker pulls towards LabNet (its feature term off; its code term lighter than the
    # image<->text term, with or without its code as the quantisation target), and UDSPH
    # without the label network (and so without the adversary), attention kept.
    "a0": {**_DELTA01, "alpha": 0.0},
    "g10cx30": {**_DELTA01, "gamma": 10.0, "cross_pair": 30.0},
    "g10cx30own": {**_DELTA01, "gamma": 10.0, "cross_pair": 30.0, "code_target": "own"},
    "nolab": {**_DELTA01, "label_net": False, "adversarial": False},
}


def nested_split(config):
    """(data, split) of the nested protocol: the split's validation rows become the queries,
    the database loses them, and validation is carved again from the training rows. Its
    "test" MAP is a validation figure: the real queries are never encoded."""
    import numpy as np
    from udsph_tf.data.splits import carve_validation, data_and_split
    from udsph_tf.data.types import Split
    data, split = data_and_split(config)
    train, val = carve_validation(split.train_idx, -1, split.seed)
    return data, Split(query_idx=np.sort(split.val_idx),
                       database_idx=np.setdiff1d(split.database_idx, split.val_idx),
                       train_idx=train, val_idx=val, seed=split.seed,
                       source=split.source).check(data.num_items)


def _mean_std(values):
    """"0.812 ± 0.006": mean and sample standard deviation."""
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def parse_recipe(text):
    """NAME or NAME:key=value,key=value (an ad-hoc recipe on top of the defaults)."""
    name, _, body = text.partition(":")
    if not body:
        if name not in RECIPES and name != "defaults":
            raise SystemExit(f"unknown recipe {name!r}; known: defaults, {sorted(RECIPES)}")
        return name, dict(RECIPES.get(name, {}))
    fields = {}
    for item in body.split(","):
        key, _, value = item.partition("=")
        fields[key] = value
    return name, fields


def typed(base, fields):
    out = {}
    for key, value in fields.items():
        current = getattr(base, key)
        if isinstance(current, bool):
            out[key] = (value if isinstance(value, bool)
                        else str(value).lower() in ("1", "true", "yes"))
        else:
            out[key] = type(current)(value)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipes", nargs="+", default=["defaults", "ssah_paper"])
    p.add_argument("--datasets", nargs="+", default=["mirflickr730", "synthetic_single",
                                                     "synthetic_dense", "default"])
    p.add_argument("--bits", type=int, default=32)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--variant", default="", help="extra fields for every run, key=value,...")
    p.add_argument("--root", default="/tmp/udsph_sweep")
    p.add_argument("--cache", default=os.path.expanduser("~/.cache/udsph_tf/recipe_sweep"),
                   help="where the single-label draws (single_s1, ...) are generated once")
    p.add_argument("--jsonl", default="", help="append one JSON line per run here; runs "
                   "already in the file are reused")
    p.add_argument("--protocol", choices=["test", "nested"], default="test",
                   help="nested: the real queries are never used; the split's validation rows "
                   "are the queries, the database loses them, and a validation set is carved "
                   "again from the training rows (to choose what validation cannot select "
                   "inside one run, such as --refit)")
    p.add_argument("--list", action="store_true")
    args = p.parse_args()
    if args.list:
        print(json.dumps({"datasets": DATASETS, "recipes": RECIPES}, indent=1))
        return

    import tensorflow as tf
    from udsph_tf.config import Config, replace
    from udsph_tf.modes.train import train_and_evaluate

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    done = {}
    if args.jsonl and os.path.exists(args.jsonl):
        with open(args.jsonl) as f:
            for line in f:
                r = json.loads(line)
                done[(r["recipe"], r["dataset"], r["bits"], r["seed"],
                      r.get("protocol", "test"))] = r
    extra = parse_recipe("x:" + args.variant)[1] if args.variant else {}
    recipes = [parse_recipe(r) for r in args.recipes]
    runs = []
    for seed in args.seeds:
        for ds in args.datasets:
            for name, fields in recipes:
                key = (name, ds, args.bits, seed, args.protocol)
                if key in done:
                    runs.append(done[key])
                    continue
                workdir = os.path.join(args.root,
                                       f"{name}_{ds}_{args.bits}_{seed}_{args.protocol}")
                shutil.rmtree(workdir, ignore_errors=True)
                base = replace(Config(), progress=False, keep_checkpoints=1, bits=args.bits,
                               seed=seed, workdir=workdir,
                               **typed(Config(), dataset_fields(ds, args.cache)))
                changes = {**fields, **extra}
                scale = int(changes.pop("epochs_scale", 1))  # a multiple of the budget
                config = replace(base, **typed(base, changes))
                config = replace(config, epochs=config.epochs * scale)
                t0 = time.time()
                data, split = (nested_split(config) if args.protocol == "nested"
                               else (None, None))
                m = train_and_evaluate(config, strategy=strategy, data=data, split=split)
                refit = m.get("refit") or {}
                floor = m.get("linear_floor") or {}
                r = {"recipe": name, "dataset": ds, "bits": args.bits, "seed": seed,
                     "val": m["selection"]["best_val_score"],
                     "best_epoch": m["selection"]["best_epoch"],
                     "map_i2t": m["test"]["map_i2t"], "map_t2i": m["test"]["map_t2i"],
                     "floor_i2t": floor.get("map_i2t"), "floor_t2i": floor.get("map_t2i"),
                     "chance": m["chance"]["map_random_codes_i2t"],
                     "codes": m["test"]["distinct_codes"], "seconds": round(time.time() - t0, 1),
                     # The run directory is removed below: keep the validation curve, so a
                     # longer budget or a --patience can be read off one long run.
                     "val_curve": [[h["epoch"], round(h["val"]["score"], 4)]
                                   for h in m["history"] if "val" in h],
                     "stopped_early_at": m["selection"].get("stopped_early_at"),
                     "protocol": args.protocol,
                     # --refit: the selected model's figures beside the refit's (map_*).
                     "selected_i2t": refit.get("selected_model_test", {}).get("map_i2t"),
                     "selected_t2i": refit.get("selected_model_test", {}).get("map_t2i"),
                     "fields": {**fields, **extra}}
                runs.append(r)
                print(json.dumps(r), flush=True)
                if args.jsonl:
                    with open(args.jsonl, "a") as f:
                        f.write(json.dumps(r) + "\n")
                shutil.rmtree(workdir, ignore_errors=True)

    what = "validation (nested)" if args.protocol == "nested" else "test"
    print(f"\n{args.bits} bits, seeds {args.seeds}; cells: validation score ({what} I->T / "
          "T->I)")
    print("| recipe | mean val | " + " | ".join(args.datasets) + " |")
    print("|---|---|" + "---|" * len(args.datasets))
    rows = []
    for name, _ in recipes:
        cells, vals = [], []
        for ds in args.datasets:
            sel = [r for r in runs if r["recipe"] == name and r["dataset"] == ds]
            if not sel:
                cells.append("-")
                continue
            v = statistics.mean(r["val"] for r in sel)
            vals.append(v)
            cells.append(f"{v:.4f} ({statistics.mean(r['map_i2t'] for r in sel):.3f} / "
                         f"{statistics.mean(r['map_t2i'] for r in sel):.3f})")
        rows.append((statistics.mean(vals) if vals else 0.0, name, cells))
    for mean_val, name, cells in sorted(rows, reverse=True):
        print(f"| {name} | {mean_val:.4f} | " + " | ".join(cells) + " |")
    refits = [r for r in runs if r.get("selected_i2t") is not None]
    if refits:
        print(f"\n--refit, {what} MAP I->T / T->I: the selected model and the refit of the "
              "same run")
        print("| recipe | dataset | seed | selected model | refit | change |")
        print("|---|---|---|---|---|---|")
        for r in refits:
            print(f"| {r['recipe']} | {r['dataset']} | {r['seed']} | {r['selected_i2t']:.3f} / "
                  f"{r['selected_t2i']:.3f} | {r['map_i2t']:.3f} / {r['map_t2i']:.3f} | "
                  f"{r['map_i2t'] - r['selected_i2t']:+.3f} / "
                  f"{r['map_t2i'] - r['selected_t2i']:+.3f} |")
        for name, _ in recipes:
            for ds in args.datasets:
                sel = [r for r in refits if r["recipe"] == name and r["dataset"] == ds]
                if len(sel) > 1:
                    cells = [" / ".join(_mean_std([r[k] for r in sel]) for k in keys)
                             for keys in (("selected_i2t", "selected_t2i"),
                                          ("map_i2t", "map_t2i"), ("floor_i2t", "floor_t2i"))]
                    print(f"| {name} | {ds} | mean ± std of {len(sel)} | {cells[0]} | "
                          f"{cells[1]} | floor {cells[2]} |")
    floors = {ds: next((r for r in runs if r["dataset"] == ds), None) for ds in args.datasets}
    print(f"| linear floor ({what}) | | " + " | ".join(
        f"({r['floor_i2t']:.3f} / {r['floor_t2i']:.3f})" if r and r["floor_i2t"] is not None
        else "-" for r in floors.values()) + " |")
    print(f"| chance ({what}) | | " + " | ".join(
        f"({r['chance']:.3f})" if r else "-" for r in floors.values()) + " |")


if __name__ == "__main__":
    main()
