"""Would choosing ImgNet's and TxtNet's epochs separately help? A post-hoc probe.

    python main.py --flagfile=flags/mirflickr730.cfg --keep_checkpoints=10 --norefit --workdir=W
    python bench/epoch_pair_probe.py --workdir W

With a label network both students learn towards LabNet's codes rather than towards each
other, so an image network of one epoch and a text network of another still share a code
space. The probe reads every rolling checkpoint the run kept (train it with --keep_checkpoints
at least its epochs), codes the validation queries, the other training rows, the test queries
and the database with each network at each epoch, and scores every (image epoch, text epoch)
pair: the validation score (mean of validation MAP I->T and T->I, the selection rule's figure)
and the test MAP I->T / T->I (index-ordered ties). It prints the pair the run's rule selects
(one epoch for both), the pair a per-network rule would select (the best validation score over
all pairs), and the best pair on test, for scale only: never a selection.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

NETWORKS = ("imgnet", "txtnet")


def pair_scores(img, txt, labels, mean_average_precision):
    """{(image epoch, text epoch): (val score, test I->T, test T->I)}.

    img / txt: {epoch: {"val", "rest", "query", "database": binary codes}} of one network;
    labels: {"val", "rest", "query", "database": label rows}. Validation ranks the other
    training rows ("rest") for the validation queries, as the run's selection does."""
    out = {}
    for ei, vi in img.items():
        for et, vt in txt.items():
            val = (mean_average_precision(vi["val"], vt["rest"], labels["val"], labels["rest"])
                   + mean_average_precision(vt["val"], vi["rest"], labels["val"],
                                            labels["rest"])) / 2
            i2t = mean_average_precision(vi["query"], vt["database"], labels["query"],
                                         labels["database"])
            t2i = mean_average_precision(vt["query"], vi["database"], labels["query"],
                                         labels["database"])
            out[(ei, et)] = (float(val), float(i2t), float(t2i))
    return out


def selections(scores):
    """(name, pair) rows: the run's rule (one epoch, best validation; the first on ties),
    the per-network rule (any pair, best validation) and the best pair on test (scale)."""
    same = [p for p in sorted(scores) if p[0] == p[1]]
    return [("one epoch for both (the run's rule)", max(same, key=lambda p: scores[p][0])),
            ("each network its own epoch (best val)", max(sorted(scores),
                                                           key=lambda p: scores[p][0])),
            ("best pair on test (scale, not a rule)", max(sorted(scores),
                                                          key=lambda p: sum(scores[p][1:])))]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True, help="a trained run that kept every epoch's "
                   "checkpoint (--keep_checkpoints >= --epochs)")
    args = p.parse_args()

    from code_oracles import kept_epochs, load_run  # one rule for the run and its epochs
    from udsph_tf.codes import to_codes
    from udsph_tf.evaluation.metrics import mean_average_precision

    _, data, split, task = load_run(args.workdir)
    rows = {"val": split.val_idx, "rest": np.setdiff1d(split.database_idx, split.val_idx),
            "query": split.query_idx, "database": split.database_idx}
    if len(rows["val"]) == 0:
        raise SystemExit(f"{args.workdir}: the run has no validation split")
    labels = {k: data.labels[v] for k, v in rows.items()}
    img, txt = {}, {}
    for epoch in kept_epochs(args.workdir, task, NETWORKS):
        codes = {k: task.encode(v) for k, v in rows.items()}
        img[epoch] = {k: to_codes(c[0]) for k, c in codes.items()}
        txt[epoch] = {k: to_codes(c[1]) for k, c in codes.items()}
    scores = pair_scores(img, txt, labels, mean_average_precision)
    print(f"{len(img)} epochs ({min(img)}-{max(img)}), {len(scores)} pairs")
    print("| selection | image epoch | text epoch | val | test I->T | test T->I |")
    print("|---|---:|---:|---|---|---|")
    for name, (ei, et) in selections(scores):
        val, i2t, t2i = scores[(ei, et)]
        print(f"| {name} | {ei} | {et} | {val:.4f} | {i2t:.4f} | {t2i:.4f} |")


if __name__ == "__main__":
    main()
