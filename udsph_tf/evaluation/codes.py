"""Input checks and code statistics for +-1 hash codes and 0/1 label matrices."""

import numpy as np

from udsph_tf.codes import pack_words


def _as_2d_array(x, what):
    try:
        a = np.asarray(x)
    except Exception as e:  # ragged lists and the like
        raise ValueError(f"{what}: cannot be read as an array ({e})") from None
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise ValueError(f"{what}: expected a numeric array, got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D array (items x columns), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{what}: empty array of shape {a.shape}")
    if np.issubdtype(a.dtype, np.inexact) and not np.isfinite(a).all():
        bad = np.argwhere(~np.isfinite(a))[0]
        raise ValueError(f"{what}: contains NaN or inf (first at row {bad[0]}, column {bad[1]})")
    return a


def check_codes(codes, what="codes"):
    """The codes as an int8 +-1 array, or ValueError saying what is wrong.

    {0,1} codes are refused rather than mapped: a 0 is ambiguous (an unthresholded tanh output or a
    bit), and guessing would silently change every distance.
    """
    a = _as_2d_array(codes, what)
    if a.dtype == bool:
        raise ValueError(f"{what}: boolean codes are ambiguous; pass +-1 codes "
                         "(e.g. np.where(bits, 1, -1))")
    ok = (a == 1) | (a == -1)
    if not ok.all():
        r, c = np.argwhere(~ok)[0]
        raise ValueError(f"{what}: codes must be +-1, found {a[r, c]!r} at row {r}, column {c} "
                         "(threshold real-valued outputs with np.where(h >= 0, 1, -1))")
    return a.astype(np.int8, copy=False)


def check_labels(labels, what="labels"):
    """The labels as a bool array (item has label), or ValueError. Labels must be 0/1 multi-hot."""
    a = _as_2d_array(labels, what)
    if a.dtype != bool:
        ok = (a == 0) | (a == 1)
        if not ok.all():
            r, c = np.argwhere(~ok)[0]
            raise ValueError(f"{what}: labels must be a 0/1 multi-hot matrix, found {a[r, c]!r} "
                             f"at row {r}, column {c}")
    return a.astype(bool, copy=False)


def check_retrieval_inputs(query_codes, db_codes, query_labels, db_labels):
    """Validated (query codes, db codes, query labels, db labels); ValueError on any mismatch."""
    qc = check_codes(query_codes, "query_codes")
    dc = check_codes(db_codes, "db_codes")
    ql = check_labels(query_labels, "query_labels")
    dl = check_labels(db_labels, "db_labels")
    if qc.shape[1] != dc.shape[1]:
        raise ValueError(f"query_codes have {qc.shape[1]} bits but db_codes have {dc.shape[1]}")
    if ql.shape[1] != dl.shape[1]:
        raise ValueError(f"query_labels have {ql.shape[1]} classes but db_labels have "
                         f"{dl.shape[1]}")
    if qc.shape[0] != ql.shape[0]:
        raise ValueError(f"{qc.shape[0]} query codes but {ql.shape[0]} query label rows")
    if dc.shape[0] != dl.shape[0]:
        raise ValueError(f"{dc.shape[0]} database codes but {dl.shape[0]} database label rows")
    return qc, dc, ql, dl


def code_stats(codes):
    """Statistics that make a collapsed or degenerate code set visible.

    Returns bit_balance (mean of each +-1 bit: 0 is balanced, +-1 a constant bit),
    mean_abs_balance, distinct_codes, most_common_fraction (share of items holding the most
    frequent code: 1.0 means every item has one code), entropy_bits (Shannon entropy of the
    code distribution: log2 of the number of equally used codes), num_codes and bits.
    """
    c = check_codes(codes, "codes")
    packed = np.ascontiguousarray(pack_words(c > 0).T)  # (n, W): one row of words an item
    # One row per code: view the packed words as a single void scalar so np.unique is 1-D.
    rows = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.dtype.itemsize *
                                                       packed.shape[1]))).ravel()
    _, counts = np.unique(rows, return_counts=True)
    balance = c.mean(axis=0, dtype=np.float64)
    p = counts / c.shape[0]
    return {
        "bit_balance": balance,
        "mean_abs_balance": float(np.abs(balance).mean()),
        "distinct_codes": int(counts.size),
        "most_common_fraction": float(counts.max() / c.shape[0]),
        "entropy_bits": float(-(p * np.log2(p)).sum()),
        "num_codes": int(c.shape[0]),
        "bits": int(c.shape[1]),
    }


def collapse_stats(codes, labels):
    """The scalars that make a collapse visible, and the verdict.

    collapsed: one code holds at least half of the items, or there are fewer than a quarter
    as many distinct codes as distinct label sets among the items (the codes cannot tell the
    label combinations apart). Few codes are right for single-label data (one per class), so
    the rule compares with the label sets rather than with the item count.
    """
    st = code_stats(codes)
    label_sets = int(np.unique(check_labels(labels, "labels"), axis=0).shape[0])
    collapsed = (st["most_common_fraction"] >= 0.5 or 4 * st["distinct_codes"] < label_sets)
    return {"distinct_codes": st["distinct_codes"], "label_sets": label_sets,
            "most_common_fraction": st["most_common_fraction"],
            "mean_abs_bit_balance": st["mean_abs_balance"],
            "entropy_bits": st["entropy_bits"], "collapsed": bool(collapsed)}
