"""Hamming-ranking metrics: MAP (index ties and tie-aware), MAP@k, precision@N, PR by radius."""

import numpy as np

from udsph_tf.evaluation.codes import check_retrieval_inputs, code_stats
from udsph_tf.evaluation.ranking import (DEFAULT_MEMORY_BUDGET, PackedSet, expected_ap,
                                         rank_statistics)

TIES = ("index", "expected")


def _check_top_k(top_k):
    if top_k is None:
        return None
    if isinstance(top_k, (bool, np.bool_)) or not isinstance(top_k, (int, np.integer)) \
            or top_k < 1:
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    return int(top_k)


def _prepare(query_codes, db_codes, query_labels, db_labels):
    qc, dc, ql, dl = check_retrieval_inputs(query_codes, db_codes, query_labels, db_labels)
    return PackedSet(qc, ql), PackedSet(dc, dl), qc, dc


def mean_average_precision(query_codes, db_codes, query_labels, db_labels, top_k=None,
                           ties="index", *, memory_budget=DEFAULT_MEMORY_BUDGET,
                           num_threads=None):
    """MAP of Hamming ranking; an item is relevant when it shares at least one label with the query.

    query_codes (nq x K), db_codes (nd x K): +-1 codes of any numeric dtype (ValueError otherwise,
    also for {0,1} codes, NaN, empty inputs and shape mismatches). query_labels (nq x C),
    db_labels (nd x C): 0/1 multi-hot.
    top_k: None for MAP over the whole database, or k for MAP@k truncated at k positions and
    normalised by the relevant items inside the top k (DCMH's MATLAB topkMap, DeepHash CalcTopMap).
    ties: Hamming distances take only K+1 values, so the order inside a tie matters.
      "index" (the headline figure): ties broken by database index, i.e. a stable sort, which is
        what MATLAB sort and CPU torch.sort give the peers.
      "expected": the exact expected AP over uniformly random orders inside each tie
        (McSherry & Najork 2008), in closed form; defined for the full ranking only.
    A query with no relevant item has AP 0 and still counts in the mean (as all peers do);
    evaluate_retrieval reports how many such queries there are.
    memory_budget (bytes) bounds the query x database buffers (queries are processed in chunks);
    num_threads (default: the usable CPUs) splits the queries between threads. Neither changes
    the result.
    """
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    top_k = _check_top_k(top_k)
    if ties == "expected" and top_k is not None:
        raise ValueError("ties='expected' is defined for the full ranking only (top_k=None): "
                         "the tie-aware AP@k is an expectation of a ratio with no closed form")
    q, db, _, _ = _prepare(query_codes, db_codes, query_labels, db_labels)
    if ties == "expected":
        st = rank_statistics(q, db, positions=False, memory_budget=memory_budget,
                             num_threads=num_threads)
        return float(expected_ap(st["n_hist"], st["r_hist"]).mean())
    if top_k is not None:
        st = rank_statistics(q, db, positions=False, top_k=top_k, memory_budget=memory_budget,
                             num_threads=num_threads)
        return float(st["ap_at_k"].mean())
    st = rank_statistics(q, db, positions=True, memory_budget=memory_budget,
                         num_threads=num_threads)
    return float(st["ap_index"].mean())


def default_n_values(num_db):
    """Cut-offs N for precision@N: 1..10, then steps of 100 up to 1000 (the range papers plot),
    then a geometric grid up to the whole database."""
    grid = np.concatenate([np.arange(1, 11), np.arange(100, 1001, 100),
                           np.geomspace(10, num_db, 30).round()])
    return np.unique(grid[grid <= num_db]).astype(np.int64)


def radius_counts(n_hist, r_hist):
    """Per-query counts inside Hamming radius r = 0..K: retrieved and true positives (nq x K+1)."""
    return np.cumsum(n_hist, axis=1), np.cumsum(r_hist, axis=1)


def _pr_counts_from_hist(n_hist, r_hist, num_db):
    retrieved, tp_q = radius_counts(n_hist, r_hist)
    rel_q = r_hist.sum(axis=1, keepdims=True)
    tp = tp_q.sum(axis=0)
    fp = (retrieved - tp_q).sum(axis=0)
    fn = (rel_q - tp_q).sum(axis=0)
    tn = (num_db - rel_q - (retrieved - tp_q)).sum(axis=0)
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / np.maximum(tp + fn, 1)
    return {"radius": np.arange(n_hist.shape[1]), "tp": tp, "fp": fp, "tn": tn, "fn": fn,
            "precision": precision, "recall": recall}


def pr_curve_counts(query_codes, db_codes, query_labels, db_labels, *,
                    memory_budget=DEFAULT_MEMORY_BUDGET, num_threads=None):
    """Pooled confusion counts of 'retrieve every item within Hamming radius r', r = 0..K.

    Returns a dict of 1-D arrays indexed by radius: radius, tp, fp, tn, fn (summed over all
    queries), and the pooled precision tp/(tp+fp) and recall tp/(tp+fn) (0 where undefined).
    TensorBoard's pr_curve plugin wants [tp, fp, tn, fn, precision, recall] per threshold with
    thresholds rising, i.e. radius falling: reverse these arrays (`[::-1]`) for that order.
    """
    q, db, _, _ = _prepare(query_codes, db_codes, query_labels, db_labels)
    st = rank_statistics(q, db, positions=False, memory_budget=memory_budget,
                         num_threads=num_threads)
    return _pr_counts_from_hist(st["n_hist"], st["r_hist"], db.n)


def evaluate_retrieval(query_codes, db_codes, query_labels, db_labels, top_k=None, *,
                       n_values=None, memory_budget=DEFAULT_MEMORY_BUDGET,
                       num_threads=None):
    """Everything one retrieval direction needs, from a single ranking pass.

    Keys: map_index (MAP over the whole database, database-index ties: the headline),
    map_expected (tie-aware expected MAP, reported beside it), map_at_k and top_k (when top_k is
    given; index ties), queries_without_relevant (queries with AP 0 because nothing is relevant),
    num_queries, num_database, bits;
    precision_at_n: {"n", "precision"} mean precision of the first N items (index ties);
    pr_radius: {"radius", "precision", "recall", "queries_retrieving"} within Hamming radius
      r = 0..K, precision averaged over the queries that retrieve at least one item at that
      radius (0 when none does), recall over the queries with at least one relevant item;
    pr_counts: pooled tp/fp/tn/fn/precision/recall per radius (see pr_curve_counts);
    query_code_stats, db_code_stats: see code_stats (a collapsed model shows distinct_codes 1).
    """
    top_k = _check_top_k(top_k)
    q, db, qc, dc = _prepare(query_codes, db_codes, query_labels, db_labels)
    if n_values is None:
        n_values = default_n_values(db.n)
    else:
        n_values = np.asarray(n_values, np.int64).ravel()
        if n_values.size == 0 or (n_values < 1).any() or (n_values > db.n).any():
            raise ValueError(f"n_values must be cut-offs in 1..{db.n} (the database size), "
                             f"got {n_values!r}")
    st = rank_statistics(q, db, positions=True, top_k=top_k, n_values=n_values,
                         memory_budget=memory_budget, num_threads=num_threads)
    n_hist, r_hist = st["n_hist"], st["r_hist"]
    total_rel = r_hist.sum(axis=1)
    retrieved, tp = radius_counts(n_hist, r_hist)
    has_retrieved = retrieved > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        prec_q = np.where(has_retrieved, tp / np.maximum(retrieved, 1), 0.0)
        n_ret = has_retrieved.sum(axis=0)
        # 0 where no query retrieves anything (as pr_counts does); queries_retrieving tells.
        pr_precision = np.where(n_ret > 0, prec_q.sum(axis=0) / np.maximum(n_ret, 1), 0.0)
    has_rel = total_rel > 0
    pr_recall = ((tp[has_rel] / total_rel[has_rel, None]).mean(axis=0) if has_rel.any()
                 else np.zeros(n_hist.shape[1]))
    out = {
        "map_index": float(st["ap_index"].mean()),
        "map_expected": float(expected_ap(n_hist, r_hist).mean()),
        "queries_without_relevant": int((~has_rel).sum()),
        "num_queries": int(q.n), "num_database": int(db.n), "bits": int(q.bits),
        "precision_at_n": {"n": n_values,
                           "precision": (st["hits_at_n"] / n_values).mean(axis=0)},
        "pr_radius": {"radius": np.arange(n_hist.shape[1]), "precision": pr_precision,
                      "recall": pr_recall, "queries_retrieving": n_ret},
        "pr_counts": _pr_counts_from_hist(n_hist, r_hist, db.n),
        "query_code_stats": code_stats(qc),
        "db_code_stats": code_stats(dc),
    }
    if top_k is not None:
        out["top_k"] = top_k
        out["map_at_k"] = float(st["ap_at_k"].mean())
    return out
