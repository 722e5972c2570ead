"""The linear floor's cost at MIRFlickr scale: scikit-learn's RidgeCV against ridge_loo.

    python bench/floor_cost.py [--repeats 3]

Data as bench/mirflickr_scale.py: the real labels (24) and tags (1,386-d) of the 20,015
MIRFlickr-25K pairs with its generated 4,096-d image features (cached once), the standard
split (2,000 queries, 18,015 database, 9,500 training rows after the 500 validation ones);
without ../shared/data/mirflickr25k, generated labels and tags of the same shapes. Each repeat
runs the whole floor (evaluation/floor.linear_floor_codes: standardise, fit, predict, hash)
with each ridge in turn (interleaved, in this process, so other jobs' load falls on both);
printed: the median seconds of each modality's ridge fit and of the whole floor, the ratio
(new / old, < 1 = faster), the alphas chosen and whether the codes are identical.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from mirflickr_scale import N_ITEMS, load_arrays, shared_mirflickr_dir  # noqa: E402
from udsph_tf.data import make_split  # noqa: E402
from udsph_tf.evaluation import floor  # noqa: E402

def sklearn_ridge(x, y):
    """The floor's ridge before ridge_loo (what every run used until issue 13)."""
    from sklearn.linear_model import RidgeCV
    model = RidgeCV(alphas=floor._ALPHAS).fit(x, y)
    return model.alpha_, model.coef_.T, model.intercept_


def timed(ridge, seconds):
    """ridge, recording each call's seconds (one call per modality: images, then tags)."""
    def fit(x, y):
        start = time.perf_counter()
        out = ridge(x, y)
        seconds.append(time.perf_counter() - start)
        alphas.append(out[0])
        return out
    alphas = []
    fit.alphas = alphas
    return fit


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bits", type=int, default=32)
    parser.add_argument("--data_dir", default=shared_mirflickr_dir())
    parser.add_argument("--cache_dir", default=os.path.expanduser("~/.cache/udsph_tf/bench"))
    args = parser.parse_args()
    images, tags, labels, source = load_arrays(args.data_dir, args.cache_dir)
    split = make_split(N_ITEMS, "mirflickr", 0)

    def part(rows):
        return {"images": np.asarray(images[rows]), "tags": tags[rows], "labels": labels[rows]}
    train, query, database = (part(split.train_idx), part(split.query_idx),
                              part(split.database_idx))
    paths = {"RidgeCV (old)": sklearn_ridge, "ridge_loo (new)": floor.ridge_loo}
    rows = {name: {"images": [], "tags": [], "floor": []} for name in paths}
    codes, alphas = {}, {}
    for repeat in range(args.repeats):
        for name, ridge in paths.items():
            fits = []
            fit = timed(ridge, fits)
            start = time.perf_counter()
            codes[name] = floor.linear_floor_codes(train, query, database, args.bits, ridge=fit)
            rows[name]["floor"].append(time.perf_counter() - start)
            rows[name]["images"].append(fits[0])
            rows[name]["tags"].append(fits[1])
            alphas[name] = fit.alphas
            print(f"repeat {repeat + 1}: {name} floor {rows[name]['floor'][-1]:.1f} s "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
    old, new = paths
    same = all(np.array_equal(a, b) for a, b in zip(codes[old], codes[new]))
    print(f"\n{source}; training rows: images {train['images'].shape}, tags "
          f"{train['tags'].shape}, {labels.shape[1]} labels; floor codes for "
          f"{len(split.query_idx)} queries + {len(split.database_idx)} database, "
          f"{args.bits} bits; median of {args.repeats} repeats, load average at the end "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"| {'part':<34} | {old:>13} | {new:>15} | {'new / old':>9} |")
    print(f"|{'-' * 36}|{'-' * 15}|{'-' * 17}|{'-' * 11}|")
    names = {"images": "ridge fit, images (alpha by LOO)", "tags": "ridge fit, tags (alpha by LOO)",
             "floor": "whole floor (fit, predict, hash)"}
    for key, label in names.items():
        a, b = statistics.median(rows[old][key]), statistics.median(rows[new][key])
        print(f"| {label:<34} | {a:>11.1f} s | {b:>13.1f} s | {b / a:>9.3f} |")
    print(f"alphas chosen (images, tags): old {alphas[old]}, new {alphas[new]}; "
          f"codes identical: {same}")


if __name__ == "__main__":
    main()
