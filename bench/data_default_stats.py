"""Statistics of the generated default dataset beside the real MIRFlickr labels/tags, and probes.

    python bench/data_default_stats.py [--data_dir ../shared/data/mirflickr25k]

Ridge probes (3,000 train / 1,000 test rows) show the default data is learnable but not trivial:
macro average precision of label prediction from image features or from tags, against chance
(the AP of a random ranking is the label's frequency).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
from sklearn.linear_model import Ridge  # noqa: E402
from sklearn.metrics import average_precision_score  # noqa: E402

from udsph_tf.data import generate_default, read_array  # noqa: E402


def stats(labels, tags):
    freq = labels.mean(0)
    return {"rows": len(labels), "labels/row": labels.sum(1).mean(),
            "empty label rows": int((labels.sum(1) == 0).sum()),
            "label freq max": freq.max(), "label freq min": freq.min(),
            "labels with freq < 0.15": int((freq < 0.15).sum()),
            "tags/row": tags.sum(1).mean(), "rows without tags": int((tags.sum(1) == 0).sum()),
            "tag density": tags.mean()}


def probe_ap(x, labels, n_train=3000):
    scores = Ridge(alpha=10.0).fit(x[:n_train], labels[:n_train]).predict(x[n_train:])
    test = labels[n_train:]
    return float(np.mean([average_precision_score(test[:, c], scores[:, c])
                          for c in range(labels.shape[1]) if test[:, c].any()]))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=os.path.join(here, "..", "..", "shared", "data",
                                                           "mirflickr25k"))
    args = parser.parse_args()
    d = generate_default()
    columns = {"default (generated)": stats(d.labels, d.tags)}
    real = os.path.join(args.data_dir, "mirflickr25k-lall.mat")
    if os.path.isfile(real):
        columns["MIRFlickr-25K (real)"] = stats(
            read_array(real, "LAll").astype(np.float64),
            read_array(os.path.join(args.data_dir, "mirflickr25k-yall.mat"), "YAll"))
    print(f"{'statistic':26s}" + "".join(f"{c:>22s}" for c in columns))
    for key in columns["default (generated)"]:
        print(f"{key:26s}" + "".join(f"{float(col[key]):22.5g}" for col in columns.values()))
    chance = float(d.labels[3000:].mean())
    print()
    print(f"ridge probe on the default data: macro AP from image features "
          f"{probe_ap(d.images, d.labels):.3f}, from tags {probe_ap(d.tags, d.labels):.3f}, "
          f"chance {chance:.3f}")


if __name__ == "__main__":
    main()
