"""Hamming ranking over the K+1 distance values: per-query distance histograms, relevant ranks."""

import concurrent.futures
import os

import numpy as np

from udsph_tf.evaluation.codes import pack_bits

# Bytes for the per-chunk query x database buffers of all threads together. Small on purpose:
# chunks that stay in cache cost less CPU than large ones (bench/bench_map.py --budgets: 2 MiB
# was the best of 1..128 MiB at MIRFlickr scale; at NUS-WIDE scale a chunk is one query anyway).
DEFAULT_MEMORY_BUDGET = 2 * 2**20


def harmonic_numbers(n):
    """H[i] = 1 + 1/2 + ... + 1/i for i = 0..n (H[0] = 0), float64."""
    h = np.zeros(n + 1)
    np.cumsum(1.0 / np.arange(1, n + 1), out=h[1:])
    return h


class PackedSet:
    """Codes and labels of one side, packed into words once: Hamming distance is a XOR popcount
    and 'shares a label' is a nonzero AND, so no float matmul or rounding is involved at all."""

    def __init__(self, codes, labels):
        self.n, self.bits = codes.shape
        # One contiguous row of words per word index: the database side is streamed per word.
        self.code_words = np.ascontiguousarray(pack_bits(codes > 0).T)
        self.label_words = np.ascontiguousarray(pack_bits(labels).T)

    def cell_bytes(self):
        """Bytes of chunk buffers per (query, database item) pair, see _Buffers."""
        dist = 1 if self.bits < 256 else 2
        key = 1 if 2 * (self.bits + 1) <= 255 else 2
        # dist, key, popcount, rel, tmp_rel, XOR words, AND words
        return dist + key + 3 + self.code_words.dtype.itemsize + self.label_words.dtype.itemsize


def chunk_size(db, memory_budget=DEFAULT_MEMORY_BUDGET):
    """Queries per chunk so that the chunk's query x database buffers fit in memory_budget bytes."""
    return max(1, int(memory_budget // (db.cell_bytes() * db.n)))


def default_num_threads():
    """Worker threads: the CPUs this process may use (the numpy calls below release the GIL)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class _Buffers:
    """One worker's chunk buffers, reused across chunks (fresh multi-megabyte arrays would
    page-fault on every chunk)."""

    def __init__(self, rows, db):
        n = db.n
        self.dist = np.empty((rows, n), np.uint8 if db.bits < 256 else np.uint16)
        self.count = np.empty((rows, n), np.uint8)
        self.xor = np.empty((rows, n), db.code_words.dtype)
        self.rel = np.empty((rows, n), bool)
        self.tmp_rel = np.empty((rows, n), bool)
        self.land = np.empty((rows, n), db.label_words.dtype)
        # key = 2*distance + relevant: one sortable/countable array carrying both.
        self.key = np.empty((rows, n), np.uint8 if 2 * (db.bits + 1) <= 255 else np.uint16)


def _fill_chunk(q, db, i0, i1, buf):
    """Distances, relevance and keys (2*d + rel) of queries i0:i1 against the whole database."""
    c = i1 - i0
    dist, rel, key = buf.dist[:c], buf.rel[:c], buf.key[:c]
    for w in range(db.code_words.shape[0]):
        x = buf.xor[:c]
        np.bitwise_xor(q.code_words[w, i0:i1, None], db.code_words[w][None, :], out=x)
        if w == 0 and dist.dtype == np.uint8:
            np.bitwise_count(x, out=dist)
        else:
            cnt = buf.count[:c]
            np.bitwise_count(x, out=cnt)
            if w == 0:
                dist[...] = cnt
            else:
                np.add(dist, cnt, out=dist)
    for w in range(db.label_words.shape[0]):
        a = buf.land[:c]
        np.bitwise_and(q.label_words[w, i0:i1, None], db.label_words[w][None, :], out=a)
        if w == 0:
            np.not_equal(a, 0, out=rel)
        else:
            t = buf.tmp_rel[:c]
            np.not_equal(a, 0, out=t)
            np.logical_or(rel, t, out=rel)
    # dtype= makes the shift itself happen in the key's width (a uint8 shift would wrap at K>=128).
    np.left_shift(dist, 1, out=key, dtype=key.dtype)
    np.bitwise_or(key, rel, out=key)
    return dist, rel, key


def rank_statistics(q, db, *, positions=True, top_k=None, n_values=None,
                    memory_budget=DEFAULT_MEMORY_BUDGET, num_threads=None):
    """Per-query ranking statistics of packed queries `q` against packed database `db`.

    Always: `n_hist` and `r_hist` (queries x K+1): items and relevant items at each distance.
    With positions=True (database-index tie order, i.e. a stable sort by distance):
    `ap_index` (AP over the whole ranking), `hits_at_n` (relevant items among the first N, one
    column per n_values entry) and, with top_k, `ap_at_k` (AP normalised by the relevant items
    inside the top k). With positions=False and top_k, only the buckets that reach the top k are
    ordered, which is much cheaper than ordering everything.
    Queries are split into contiguous parts, one per thread, each with its own buffers inside
    memory_budget / num_threads; results do not depend on the split.
    """
    if num_threads is not None and (not isinstance(num_threads, (int, np.integer))
                                    or isinstance(num_threads, bool) or num_threads < 1):
        raise ValueError(f"num_threads must be a positive integer or None, got {num_threads!r}")
    if not isinstance(memory_budget, (int, float, np.number)) or not memory_budget > 0:
        raise ValueError(f"memory_budget must be a positive number of bytes, got "
                         f"{memory_budget!r}")
    nq, nb = q.n, db.bits + 1
    n_values = np.zeros(0, np.int64) if n_values is None else np.asarray(n_values, np.int64)
    out = {"n_hist": np.zeros((nq, nb), np.int64), "r_hist": np.zeros((nq, nb), np.int64)}
    if positions:
        out["ap_index"] = np.zeros(nq)
        out["hits_at_n"] = np.zeros((nq, n_values.size), np.int64)
    if top_k is not None:
        out["ap_at_k"] = np.zeros(nq)
    threads = max(1, min(num_threads or default_num_threads(), nq))
    bounds = np.linspace(0, nq, threads + 1).round().astype(int)
    parts = [(bounds[t], bounds[t + 1]) for t in range(threads)]
    args = dict(positions=positions, top_k=top_k, n_values=n_values,
                memory_budget=memory_budget / threads, out=out)
    if threads == 1:
        _work(q, db, *parts[0], **args)
    else:
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            for f in [pool.submit(_work, q, db, a, b, **args) for a, b in parts]:
                f.result()
    return out


def _work(q, db, start, stop, *, positions, top_k, n_values, memory_budget, out):
    """Queries start:stop, chunk by chunk, one row at a time for the ordering (a row's arrays
    stay in cache, and numpy's stable argsort of 8/16-bit keys is an O(n) radix sort)."""
    nb = db.bits + 1
    rows = max(1, min(stop - start, chunk_size(db, memory_budget)))
    buf = _Buffers(rows, db)
    n_hist, r_hist = out["n_hist"], out["r_hist"]
    key_values = np.arange(0, 2 * nb + 1, dtype=buf.key.dtype)
    bucket_starts = key_values[::2]  # key 2d is the first possible key of bucket d
    rank = np.arange(1, db.n + 1, dtype=np.float64)
    # Keys in rank order go to ranked_buf[1:]; slot 0 stays 0, so flatnonzero of the relevance
    # flags yields 1-based ranks directly (no "+ 1" pass).
    ranked_buf = np.zeros(db.n + 1, buf.key.dtype)
    ranked = ranked_buf[1:]
    byte_keys = ranked_buf.dtype == np.uint8
    flags = ranked_buf.view(bool) if byte_keys else np.zeros(db.n + 1, bool)
    quotient = np.empty(db.n)
    for i0 in range(start, stop, rows):
        i1 = min(stop, i0 + rows)
        dist, rel, key = _fill_chunk(q, db, i0, i1, buf)
        for r in range(i1 - i0):
            i = i0 + r
            if not positions:
                # Counting by sorting the 2*d + rel keys: a radix sort, no Python-level loop.
                edges = np.searchsorted(np.sort(key[r], kind="stable"), key_values)
                counts = np.diff(edges)
                r_hist[i] = counts[1::2]
                n_hist[i] = counts[0::2] + counts[1::2]
                if top_k is not None:
                    out["ap_at_k"][i] = _ap_top_k_partial(dist[r], rel[r], n_hist[i], top_k)
                continue
            order = np.argsort(dist[r], kind="stable")  # ties keep database-index order
            np.take(key[r], order, out=ranked)
            # `ranked` is sorted by d = key >> 1, so searching for 2d finds where bucket d starts.
            edges = np.searchsorted(ranked, bucket_starts)
            ranked &= 1
            if not byte_keys:  # 16-bit keys: the flags need their own bytes
                np.not_equal(ranked, 0, out=flags[1:])
            ranks = np.flatnonzero(flags)  # 1-based ranks of the relevant items
            n_hist[i] = np.diff(edges)
            r_hist[i] = np.diff(np.searchsorted(ranks, edges, side="right"))
            if ranks.size:
                # AP = mean over relevant items of (relevant so far) / rank.
                quot = np.divide(rank[:ranks.size], ranks, out=quotient[:ranks.size])
                out["ap_index"][i] = quot.sum() / ranks.size
            out["hits_at_n"][i] = np.searchsorted(ranks, n_values, side="right")
            if top_k is not None:
                out["ap_at_k"][i] = _ap_from_ranks(
                    ranks[:np.searchsorted(ranks, top_k, side="right")])


def _ap_from_ranks(ranks):
    """AP of a ranking whose relevant items sit at 1-based ranks `ranks` (ascending):
    mean over relevant items of (relevant so far) / rank."""
    if ranks.size == 0:
        return 0.0
    m = np.arange(1, ranks.size + 1, dtype=np.float64)
    return float(np.sum(m / ranks) / ranks.size)


def _ap_top_k_partial(d_row, rel_row, n, k):
    """AP@k with index ties, ordering only the items of the buckets that reach rank k."""
    last = int(np.searchsorted(np.cumsum(n), k))  # first bucket whose end reaches k
    sel = np.flatnonzero(d_row <= last)
    order = sel[np.argsort(d_row[sel], kind="stable")]
    return _ap_from_ranks(np.flatnonzero(rel_row[order[:k]]) + 1)


def expected_ap(n_hist, r_hist):
    """Tie-aware expected AP per query (McSherry & Najork 2008), exact and in closed form.

    Inside a bucket of n items holding r relevant ones, after N items with R relevant, the item
    at bucket position p is relevant with probability r/n, and then the relevant items before it
    in the bucket are hypergeometric with mean (p-1)a, a = (r-1)/(n-1). So the bucket adds
      (r/n) * sum_p (R + 1 + (p-1)a) / (N + p) = (r/n) * ((R + 1 - a - aN) dH + a n),
    with dH = H(N+n) - H(N) from a harmonic-number table: no loop over items or ties.
    """
    n = n_hist.astype(np.float64)
    r = r_hist.astype(np.float64)
    n_before = np.cumsum(n_hist, axis=1) - n_hist
    r_before = np.cumsum(r, axis=1) - r
    total_rel = r.sum(axis=1)
    h = harmonic_numbers(int(n_hist.sum(axis=1).max()))
    dh = h[n_before + n_hist] - h[n_before]
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(n > 1, (r - 1) / np.maximum(n - 1, 1), 0.0)
        bucket = np.where(r > 0, (r / np.maximum(n, 1)) *
                          ((r_before + 1 - a - a * n_before) * dh + a * n), 0.0)
    ap = np.zeros(len(n))
    has = total_rel > 0
    ap[has] = bucket[has].sum(axis=1) / total_rel[has]
    return ap
