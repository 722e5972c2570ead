"""Would averaging the hashing networks' weights over the last epochs (SWA) help? A post-hoc probe.

    python main.py --flagfile=flags/mirflickr730.cfg --keep_checkpoints=10 --workdir=/tmp/swa/run0
    python bench/weight_average_probe.py --workdir /tmp/swa/run0

Reads every rolling checkpoint the run kept (train it with --keep_checkpoints at least its
epochs), and prints for each epoch, then for ImgNet and TxtNet weights averaged over epochs
a..last, the validation score (mean of validation MAP I->T and T->I, the selection rule's
figure) and the test MAP I->T / T->I (index-ordered ties). LabNet, the discriminators and the
input normalisation are not averaged (the codes come from ImgNet and TxtNet alone).
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

NETWORKS = ("imgnet", "txtnet")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True, help="a trained run that kept every epoch's "
                   "checkpoint (--keep_checkpoints >= --epochs)")
    args = p.parse_args()

    from code_oracles import kept_epochs, load_run  # one rule for the run and its epochs
    from udsph_tf.codes import to_codes
    from udsph_tf.evaluation.metrics import mean_average_precision

    _, data, split, task = load_run(args.workdir)
    weights = {epoch: {n: [w.numpy() for w in task.models[n].weights] for n in NETWORKS}
               for epoch in kept_epochs(args.workdir, task, NETWORKS)}
    epochs = sorted(weights)
    if len(epochs) < 3:
        raise SystemExit(f"{args.workdir}: {len(epochs)} checkpoints kept; train with "
                         "--keep_checkpoints at least the number of epochs")

    retrieval = np.setdiff1d(split.database_idx, split.val_idx)

    def hamming(q, d, ql, dl):
        return mean_average_precision(to_codes(q), to_codes(d), ql, dl)

    def score():
        vq, vr = task.encode(split.val_idx), task.encode(retrieval)
        ql, rl = data.labels[split.val_idx], data.labels[retrieval]
        val = (hamming(vq[0], vr[1], ql, rl) + hamming(vq[1], vr[0], ql, rl)) / 2
        tq, td = task.encode(split.query_idx), task.encode(split.database_idx)
        ql, dl = data.labels[split.query_idx], data.labels[split.database_idx]
        return val, hamming(tq[0], td[1], ql, dl), hamming(tq[1], td[0], ql, dl)

    def load(values):
        for n in NETWORKS:
            for variable, value in zip(task.models[n].weights, values[n]):
                variable.assign(value)

    print(f"{'weights':14s} {'val':>7s} {'test I->T':>10s} {'test T->I':>10s}")
    rows = [(f"epoch {e}", weights[e]) for e in epochs]
    for first in epochs[1:-1]:
        window = [e for e in epochs if e >= first]
        rows.append((f"mean {first}-{epochs[-1]}",
                     {n: [np.mean([weights[e][n][i] for e in window], axis=0)
                          for i in range(len(weights[window[0]][n]))] for n in NETWORKS}))
    for name, values in rows:
        load(values)
        val, i2t, t2i = score()
        print(f"{name:14s} {val:7.4f} {i2t:10.4f} {t2i:10.4f}", flush=True)


if __name__ == "__main__":
    main()
