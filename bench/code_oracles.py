"""Where a trained run loses MAP: its test MAP with one side swapped for an oracle.

    python bench/code_oracles.py --workdir runs/mirflickr730

Reads the run's model (as --mode=eval does: the refit's once a --refit phase has finished;
--selected reads the selection's best checkpoint instead) and prints test MAP@all
(index-ordered ties) of the query set against the database with:
- the run's own codes (image->text, text->image: the reported figures);
- LabNet's codes of the items' labels in place of one side (the label network sees the labels,
  so it is the best the modality networks are taught to reach);
- the real-valued tanh outputs instead of their signs (what quantisation costs);
- the database split into the rows the model trained on (the refit's: training and
  validation rows) and the others;
- each query side's own label head (the sigmoid label scores every network predicts), as a
  classifier ranking the database's TRUE labels (bench/classifier_ceiling.py's rule; compare
  with its plain classifiers), and passed through LabNet as the query's code (LabNet's code
  of the predicted labels) against the run's database codes of the other modality.
A side far below its LabNet oracle is the side to improve. Needs a run with a label network.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402


def ranking_map(scores, query_labels, db_labels):
    """MAP of ranking the database by descending score (n_query, n_db), stable ties
    (database order); a database item is relevant when it shares a label with the query."""
    relevant = (query_labels @ db_labels.T) > 0
    order = np.argsort(-scores, axis=1, kind="stable")
    aps = []
    for i in range(len(scores)):
        hits = relevant[i][order[i]]
        if hits.any():
            ranks = np.flatnonzero(hits) + 1
            aps.append(np.mean(np.arange(1, len(ranks) + 1) / ranks))
    return float(np.mean(aps))


def share_probability(label_probs, db_labels):
    """(n_query, n_db): P(query shares >= 1 label with each database item), labels taken as
    independent given the query."""
    log_miss = np.log(np.clip(1.0 - label_probs, 1e-12, 1.0))        # (n, C)
    return 1.0 - np.exp(log_miss @ db_labels.T.astype(np.float64))


def real_valued_map(query, database, query_labels, db_labels):
    """MAP of ranking by the inner product of real-valued outputs (stable ties)."""
    return ranking_map(query @ database.T, query_labels, db_labels)


def hamming_map(query, database, query_labels, db_labels, rows=None):
    """Hamming MAP of the signs of `query` against `database`'s rows (all, or a boolean
    subset); None when the subset is empty (a database that is wholly the training set, as in
    the single-label families, has no untrained rows)."""
    from udsph_tf.codes import to_codes
    from udsph_tf.evaluation.metrics import mean_average_precision
    rows = np.ones(len(database), bool) if rows is None else np.asarray(rows, bool)
    if not rows.any():
        return None
    return mean_average_precision(to_codes(query), to_codes(database[rows]), query_labels,
                                  db_labels[rows])


def print_table(title, header, rows):
    """The run's one-line title, then a markdown table of (name, MAP) rows."""
    print(title)
    print(f"| {header} | test MAP |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value:.3f} |")


def load_run(workdir):
    """(config, data, split, task) of a trained run, its networks built and not yet restored:
    the run's recorded config, its data and split, a Task in evaluation mode on one replica."""
    from udsph_tf import run_identity
    from udsph_tf.config import Config, replace
    from udsph_tf.modes.train import prepare_data
    from udsph_tf.training.strategy import make_strategy
    from udsph_tf.training.task import Task

    metrics = os.path.join(workdir, "metrics.json")
    if not os.path.isfile(metrics):
        raise SystemExit(f"{workdir}: no metrics.json: not a finished training run directory")
    with open(metrics) as f:
        recorded = json.load(f)["config"]
    config = run_identity.evaluation_config(replace(Config(), **recorded))
    data, split, raw = prepare_data(config, None, None, None)
    return config, data, split, Task(config, make_strategy(1), data, split, raw, training=False)


def kept_epochs(workdir, task, networks=("imgnet", "txtnet")):
    """Yield each epoch whose rolling checkpoint the run kept (--keep_checkpoints), oldest
    first, with `networks` of `task` restored from it; SystemExit when fewer than two."""
    import tensorflow as tf

    state = tf.train.get_checkpoint_state(os.path.join(workdir, "ckpt"))
    prefixes = list(state.all_model_checkpoint_paths) if state is not None else []
    if len(prefixes) < 2:
        raise SystemExit(f"{workdir}/ckpt: {len(prefixes)} checkpoint(s) kept; train with "
                         "--keep_checkpoints at least the number of epochs")
    for prefix in prefixes:
        epoch = int(tf.train.load_checkpoint(prefix).get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE"))
        tf.train.Checkpoint(**{f"model_{n}": task.models[n] for n in networks}) \
            .restore(prefix).expect_partial()
        yield epoch


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True, help="a trained run directory")
    p.add_argument("--selected", action="store_true",
                   help="the selection's model (best validation epoch), not the refit's")
    args = p.parse_args()

    import tensorflow as tf
    from udsph_tf.training.checkpointing import RunCheckpoint, model_root

    config, data, split, task = load_run(args.workdir)
    if not config.label_net:
        raise SystemExit(f"{args.workdir}: trained without a label network: no LabNet oracle")
    root = args.workdir if args.selected else model_root(args.workdir)
    refit = os.path.abspath(root) != os.path.abspath(args.workdir)
    RunCheckpoint(root, task.models, {}, {}, split.seed, keep=1).restore_best()

    q, db = split.query_idx, split.database_idx
    ql, dl = data.labels[q], data.labels[db]
    img_q, txt_q = task.encode(q)
    img_db, txt_db = task.encode(db)

    def labnet(labels):
        return task.models["labnet"](tf.constant(labels, tf.float32), training=False)["hash"]

    lab_q, lab_db = np.asarray(labnet(ql)), np.asarray(labnet(dl))
    heads = {side: task.network_outputs(net, x[q], ("label_pred",))["label_pred"]
             for side, net, x in (("image", "imgnet", data.images), ("text", "txtnet", data.tags))}
    # The refit trained on the validation rows too (--refit: every training row).
    seen = np.union1d(split.train_idx, split.val_idx) if refit else split.train_idx
    trained = np.isin(db, seen)

    def hamming(a, b, rows=None):
        return hamming_map(a, b, ql, dl, rows)

    table = [
        ("image -> text (the run)", hamming(img_q, txt_db)),
        ("text -> image (the run)", hamming(txt_q, img_db)),
        ("image -> LabNet codes of the database", hamming(img_q, lab_db)),
        ("text -> LabNet codes of the database", hamming(txt_q, lab_db)),
        ("LabNet codes of the queries -> text", hamming(lab_q, txt_db)),
        ("LabNet codes of the queries -> image", hamming(lab_q, img_db)),
        ("LabNet -> LabNet", hamming(lab_q, lab_db)),
        ("image -> text, real-valued outputs", real_valued_map(img_q, txt_db, ql, dl)),
        ("text -> image, real-valued outputs", real_valued_map(txt_q, img_db, ql, dl)),
        (f"text -> image, {trained.sum()} training rows of the database",
         hamming(txt_q, img_db, trained)),
        (f"image -> text, {trained.sum()} training rows of the database",
         hamming(img_q, txt_db, trained)),
        (f"LabNet -> text, {trained.sum()} training rows of the database",
         hamming(lab_q, txt_db, trained)),
        (f"LabNet -> text, {(~trained).sum()} other rows", hamming(lab_q, txt_db, ~trained)),
        (f"LabNet -> image, {trained.sum()} training rows", hamming(lab_q, img_db, trained)),
        (f"LabNet -> image, {(~trained).sum()} other rows", hamming(lab_q, img_db, ~trained)),
        ("image queries' label head -> the database's true labels",
         ranking_map(share_probability(heads["image"], dl), ql, dl)),
        ("text queries' label head -> the database's true labels",
         ranking_map(share_probability(heads["text"], dl), ql, dl)),
        ("image -> text, query code = LabNet's code of the predicted labels",
         hamming(np.asarray(labnet(heads["image"])), txt_db)),
        ("text -> image, query code = LabNet's code of the predicted labels",
         hamming(np.asarray(labnet(heads["text"])), img_db)),
    ]
    table = [(name, value) for name, value in table if value is not None]
    model = "the refit's model" if refit else "the selected model"
    print_table(f"{args.workdir} ({model}): {config.dataset}, {config.bits} bits, "
                f"seed {config.seed}, "
                f"{len(q)} queries, {len(db)} database items", "query -> database", table)


if __name__ == "__main__":
    main()
