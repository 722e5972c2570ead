"""How well plain classifiers on one modality rank the database, beside a trained run's MAP.

    python bench/classifier_ceiling.py --workdir runs/custom

Reads the run's data and split (as bench/code_oracles.py does), fits scikit-learn classifiers
of the labels on each standardised modality's TRAINING rows, and ranks the database for each
query by the classifier's probability that the query shares a label with the database item
(1 - prod over the item's labels of (1 - p_label); on single-label data, p of the item's
class). The database side is its true labels, so each figure is what a query side as good as
that classifier would reach against database codes that encode the labels exactly: compare
with the run's "image -> LabNet codes of the database" (code_oracles.py) and, where the
database rows were trained on, with its own I->T / T->I. A modality's codes far below its
classifier leave room on that side.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from bench.code_oracles import (load_run, print_table, ranking_map,  # noqa: E402,F401
                                share_probability)


def label_probabilities(model, x, num_labels, single_label):
    """(n, C) per-label probabilities of a fitted classifier (classes absent from the training
    rows get 0)."""
    probs = model.predict_proba(x)
    if not single_label:
        return probs
    out = np.zeros((len(x), num_labels))
    out[:, model.classes_] = probs
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True, help="a trained run directory")
    p.add_argument("--rows", choices=("train", "all"), default="train",
                   help="fit on the selection's training rows, or on all of them with the "
                   "validation rows (the refit's rows)")
    args = p.parse_args()

    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    # A fixed iteration budget, as the networks have: no warning that the optimum is not reached.
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    config, data, split, _ = load_run(args.workdir)
    with open(os.path.join(args.workdir, "metrics.json")) as f:
        test = json.load(f)["test"]
    labels = data.labels.astype(np.int64)
    single = bool((labels.sum(1) == 1).all())
    tr, q, db = split.train_idx, split.query_idx, split.database_idx
    if args.rows == "all":
        tr = np.union1d(tr, split.val_idx)
    target = labels.argmax(1) if single else labels
    classifiers = {"MLP (256 ReLU units, 300 iterations)": lambda: MLPClassifier(
        (256,), max_iter=300, alpha=1e-3, random_state=0)}
    if single:  # scikit-learn's logistic regression takes one class per row
        classifiers = {"logistic regression": lambda: LogisticRegression(max_iter=2000),
                       **classifiers}
    else:  # one per label; a label present in every training row or none would fail it
        counts = labels[tr].sum(0)
        if ((0 < counts) & (counts < len(tr))).all():
            classifiers = {"logistic regression, one per label": lambda: OneVsRestClassifier(
                LogisticRegression(max_iter=2000)), **classifiers}
    rows = []
    for side, x in (("image", data.images), ("text", data.tags)):
        x = np.asarray(x, np.float64).reshape(len(x), -1)
        scaler = StandardScaler().fit(x[tr])
        inputs = {"": (scaler.transform(x[tr]), scaler.transform(x[q]))}
        if side == "text" and x.min() >= 0:  # a bag of words also as it is (the run's input)
            inputs[" (raw counts)"] = (x[tr], x[q])
        for suffix, (x_train, x_query) in inputs.items():
            for name, make in classifiers.items():
                model = make().fit(x_train, target[tr])
                probs = label_probabilities(model, x_query, labels.shape[1], single)
                rows.append((f"{side} query{suffix}, {name}",
                             ranking_map(share_probability(probs, labels[db]), labels[q],
                                         labels[db])))
    rows += [("the run: image -> text (Hamming)", test["map_i2t"]),
             ("the run: text -> image (Hamming)", test["map_t2i"])]
    print_table(f"{args.workdir}: {config.dataset}, {'single' if single else 'multi'}-label, "
                f"{len(tr)} training rows, {len(q)} queries, {len(db)} database items",
                "query side -> the database's true labels", rows)


if __name__ == "__main__":
    main()
