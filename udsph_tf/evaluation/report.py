"""The test report of a run (metrics.json): MAP both ways, chance levels, code statistics,
the linear floor and collapse verdicts, from numpy codes and labels (no TensorFlow)."""

import json

import numpy as np

from udsph_tf.evaluation.codes import collapse_stats
from udsph_tf.evaluation.floor import linear_floor
from udsph_tf.evaluation.metrics import evaluate_retrieval
from udsph_tf.files import json_default

SELECTION_RULE = ("validation queries (split.val_idx, carved from the training side) against "
                  "the database minus the validation items; score = mean of MAP I->T and T->I "
                  "(index-ordered ties)")


def chance_levels(query_labels, db_labels, bits, seed):
    """MAP of random +-1 codes (seeded) and the label base rate (share of relevant pairs)."""
    rng = np.random.default_rng(seed)
    rand_q = np.where(rng.random((len(query_labels), bits)) < 0.5, 1, -1).astype(np.int8)
    rand_db = np.where(rng.random((len(db_labels), bits)) < 0.5, 1, -1).astype(np.int8)
    chance = evaluate_retrieval(rand_q, rand_db, query_labels, db_labels)
    base_rate = float(((query_labels.astype(np.float32) @ db_labels.T.astype(np.float32))
                       > 0).mean())
    return {"map_random_codes_i2t": chance["map_index"],
            "map_random_codes_expected": chance["map_expected"], "label_base_rate": base_rate}


def floor_of(data, split, bits, seed):
    """The linear floor on the run's rows (evaluation/floor.py)."""
    def part(idx):
        return {"images": data.images[idx], "tags": data.tags[idx], "labels": data.labels[idx]}
    return linear_floor(part(split.train_idx), part(split.query_idx), part(split.database_idx),
                        bits, seed=seed)


def test_report(codes, query_labels, db_labels, *, bits, seed, floor=None):
    """codes: {"image_query", "text_query", "image_database", "text_database"} +-1 arrays.

    Returns (the "test"-related parts of metrics.json, the I->T and T->I evaluate_retrieval
    results for curves and summaries). floor: linear_floor's result or None (raw images).
    """
    qv, qt = codes["image_query"], codes["text_query"]
    dv, dt = codes["image_database"], codes["text_database"]
    i2t = evaluate_retrieval(qv, dt, query_labels, db_labels)
    t2i = evaluate_retrieval(qt, dv, query_labels, db_labels)
    stats = {"image_query": i2t["query_code_stats"], "text_query": t2i["query_code_stats"],
             "image_database": t2i["db_code_stats"], "text_database": i2t["db_code_stats"]}
    test = {"split": "query", "n_queries": int(len(query_labels)),
            "n_database": int(len(db_labels)),
            "i2t": _scalars(i2t), "t2i": _scalars(t2i),
            "map_i2t": i2t["map_index"], "map_t2i": t2i["map_index"],
            "map_i2t_expected": i2t["map_expected"], "map_t2i_expected": t2i["map_expected"],
            "distinct_codes": {k: v["distinct_codes"] for k, v in stats.items()},
            "most_common_code_fraction": {k: v["most_common_fraction"]
                                          for k, v in stats.items()},
            "mean_abs_bit_balance": {k: v["mean_abs_balance"] for k, v in stats.items()}}
    parts = {"test": test, "linear_floor": floor,
             "collapse": {"image_database": collapse_stats(dv, db_labels),
                          "text_database": collapse_stats(dt, db_labels)},
             "chance": chance_levels(query_labels, db_labels, bits, seed)}
    return parts, i2t, t2i


def summary_line(metrics):
    """The one line a finished run prints: test MAP, floor, chance, distinct codes."""
    t, floor, chance = metrics["test"], metrics.get("linear_floor"), metrics["chance"]
    floor_text = (f"linear floor {floor['map_i2t']:.4f} / {floor['map_t2i']:.4f}; "
                  if floor else "")
    refit = metrics.get("refit")
    refit_text = (f"refit ({refit['epochs']} epochs on {refit['train_rows']} rows; the selected "
                  f"model: {refit['selected_model_test']['map_i2t']:.4f} / "
                  f"{refit['selected_model_test']['map_t2i']:.4f}); " if refit else "")
    return (f"test MAP@all ({metrics['bits']} bits, {t['n_queries']} queries, split seed "
            f"{metrics['split_seed']}): I->T {t['map_i2t']:.4f}  T->I {t['map_t2i']:.4f}  "
            f"(tie-aware {t['map_i2t_expected']:.4f} / {t['map_t2i_expected']:.4f}); "
            f"{refit_text}{floor_text}chance: random codes "
            f"{chance['map_random_codes_i2t']:.4f}, label base rate "
            f"{chance['label_base_rate']:.4f}; distinct database codes img "
            f"{t['distinct_codes']['image_database']} txt "
            f"{t['distinct_codes']['text_database']}")


# A run whose selected epoch is its last and whose validation score rose by more than this over
# its last three evaluations was most likely stopped while still learning.
STILL_RISING = 0.01


def still_rising(history, best_epoch):
    """(first, last) validation entries of the last three evaluations when the selected epoch
    is the last one and the score rose by more than STILL_RISING over them, else None."""
    vals = [h for h in history or [] if "val" in h]
    if len(vals) < 3 or vals[-1]["epoch"] != best_epoch:
        return None
    first, last = vals[-3], vals[-1]
    return (first, last) if last["val"]["score"] - first["val"]["score"] > STILL_RISING else None


def quality_warnings(metrics):
    """Sentences for a run whose codes collapsed, that does not beat the linear floor, or that
    ended while its validation score was still rising."""
    out = []
    for side, st in metrics["collapse"].items():
        if st["collapsed"]:
            out.append(f"the {side.replace('_', ' ')} codes collapsed: "
                       f"{st['distinct_codes']} distinct codes for {st['label_sets']} label "
                       f"sets, {st['most_common_fraction']:.0%} of the items share one code")
    floor, t = metrics.get("linear_floor"), metrics["test"]
    if floor:
        for key, name in (("map_i2t", "I->T"), ("map_t2i", "T->I")):
            if t[key] < floor[key]:
                out.append(f"test MAP {name} {t[key]:.4f} is below the linear floor "
                           f"{floor[key]:.4f}")
    rising = still_rising(metrics.get("history"), metrics.get("selection", {}).get("best_epoch"))
    if rising:
        first, last = rising
        out.append(f"validation score still rising at the last epoch ({first['val']['score']:.4f}"
                   f" at epoch {first['epoch']}, {last['val']['score']:.4f} at epoch "
                   f"{last['epoch']}): the run may be too short; more --epochs (or, on a small "
                   f"training set, a larger --min_pass_steps) may help")
    return out


def pr_counts(result):
    """tp/fp/tn/fn with thresholds rising (Hamming radius falling), as TensorBoard's PR
    plugin wants; None without counts."""
    counts = result.get("pr_counts")
    if not counts:
        return None
    return tuple(np.asarray(counts[k])[::-1] for k in ("tp", "fp", "tn", "fn"))


def _scalars(result):
    """The JSON-able part of an evaluate_retrieval result (curves are kept as lists)."""
    return json.loads(json.dumps(result, default=json_default))
