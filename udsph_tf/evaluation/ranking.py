"""Hamming ranking over the K+1 distance values: per-query distance histograms, relevant ranks."""

import concurrent.futures
import queue

import numpy as np

from udsph_tf.codes import default_num_threads, pack_words

# The C counting sort behind scipy.sparse COO->CSR (scipy is pinned in setup.cfg); None (another
# scipy layout, or set so by a test) selects the numpy fallback of counting_sort.
try:
    from scipy.sparse._sparsetools import coo_tocsr as scipy_coo_tocsr
except ImportError:  # pragma: no cover - another scipy layout: the numpy fallback below
    scipy_coo_tocsr = None

# Bytes for the per-chunk query x database buffers of all threads together (12-16 bytes per
# query x item). `python bench/bench_map.py --budgets 2 4 8 16 32`: 4-8 MiB (9-19 queries per
# chunk and thread at MIRFlickr scale) were the fastest, within the machine's noise; smaller
# chunks pay more Python calls per item, larger ones leave the cache.
DEFAULT_MEMORY_BUDGET = 8 * 2**20


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
        self.code_words = pack_words(codes > 0)
        self.label_words = pack_words(labels)

    def cell_bytes(self):
        """Bytes of chunk buffers per (query, database item) pair, see ChunkBuffers."""
        # words (XOR, AND, then the sort's unused column output), popcount, rel, tmp_rel,
        # group, ranked rel
        return _word_bytes(self) + 1 + 1 + 1 + 4 + 1


def _word_bytes(db):
    # At least 4: the words buffer is reused for the sort's int32 column output.
    return max(4, db.code_words.dtype.itemsize, db.label_words.dtype.itemsize)


def chunk_size(db, memory_budget=DEFAULT_MEMORY_BUDGET):
    """Queries per chunk so that the chunk's query x database buffers fit in memory_budget bytes
    (and chunk positions fit the sort's int32 indices, whatever the budget)."""
    rows = int(memory_budget // (db.cell_bytes() * db.n))
    return max(1, min(rows, (2**31 - 1) // (db.n + db.bits + 1)))




class ChunkBuffers:
    """One worker's chunk buffers, reused across chunks (fresh multi-megabyte arrays would
    page-fault on every chunk)."""

    def __init__(self, rows, db):
        n, groups = rows * db.n, rows * (db.bits + 1)
        self.words = np.empty(n * _word_bytes(db), np.uint8)  # XOR, AND, then sort output
        self.count = np.empty((rows, db.n), np.uint8)
        self.rel = np.empty((rows, db.n), bool)
        self.tmp_rel = np.empty((rows, db.n), bool)
        # group = query-in-chunk * (K+1) + distance: one counting-sort key for the whole chunk.
        self.group = np.empty((rows, db.n), np.int32)
        self.group_offsets = (np.arange(rows, dtype=np.int32) * (db.bits + 1))[:, None]
        self.ranked_rel = np.empty(n, bool)
        self.group_starts = np.empty(groups + 1, np.int32)

    def words_as(self, dtype, c, n):
        return self.words[:c * n * np.dtype(dtype).itemsize].view(dtype).reshape(c, n)


def _fill_chunk(q, db, i0, i1, buf):
    """Sort groups (query-in-chunk * (K+1) + distance) and relevance of queries i0:i1 against
    the whole database."""
    c, n = i1 - i0, db.n
    group, rel, cnt = buf.group[:c], buf.rel[:c], buf.count[:c]
    x = buf.words_as(db.code_words.dtype, c, n)
    for w in range(db.code_words.shape[0]):
        np.bitwise_xor(q.code_words[w, i0:i1, None], db.code_words[w][None, :], out=x)
        np.bitwise_count(x, out=cnt)
        np.add(group if w else buf.group_offsets[:c], cnt, out=group)
    a = buf.words_as(db.label_words.dtype, c, n)
    for w in range(db.label_words.shape[0]):
        np.bitwise_and(q.label_words[w, i0:i1, None], db.label_words[w][None, :], out=a)
        if w == 0:
            np.not_equal(a, 0, out=rel)
        else:
            t = buf.tmp_rel[:c]
            np.not_equal(a, 0, out=t)
            np.logical_or(rel, t, out=rel)
    return group, rel


def counting_sort(group, rel, n_groups, buf):
    """Stable counting sort of a chunk's items by group: returns (group_starts, ranked_rel),
    where ranked_rel[p] is the relevance of the item at position p of the sorted order and
    group g occupies positions group_starts[g]:group_starts[g+1]. Inside a group (one query's
    distance bucket) items keep database-index order, i.e. ties are broken by index.

    scipy's COO->CSR conversion is exactly this counting sort, in C, without the GIL: one
    counting pass and one scatter pass, O(items + groups), no comparison sort at all."""
    n, flat, flat_rel = group.size, group.reshape(-1), rel.reshape(-1)
    starts, ranked = buf.group_starts[:n_groups + 1], buf.ranked_rel[:n]
    if scipy_coo_tocsr is not None:
        # Its column input/output carry nothing we need: the group array (already being read)
        # goes in, and the spent XOR/AND words buffer takes the output.
        scipy_coo_tocsr(n_groups, 1, n, flat, flat, flat_rel, starts,
                   buf.words[:4 * n].view(np.int32), ranked)
    else:  # same result from numpy alone, slower (int32 keys are not radix-sorted)
        np.take(flat_rel, np.argsort(flat, kind="stable"), out=ranked)
        starts[0] = 0
        np.cumsum(np.bincount(flat, minlength=n_groups), out=starts[1:])
    return starts, ranked


def rank_statistics(q, db, *, positions=True, top_k=None, n_values=None,
                    memory_budget=DEFAULT_MEMORY_BUDGET, num_threads=None):
    """Per-query ranking statistics of packed queries `q` against packed database `db`.

    Always: `n_hist` and `r_hist` (queries x K+1): items and relevant items at each distance.
    With positions=True: `ap_index` (AP over the whole ranking, ties broken by database index)
    and `hits_at_n` (relevant items among the first N, one column per n_values entry).
    With top_k: `ap_at_k` (AP normalised by the relevant items inside the top k).
    Ranking is a counting sort by (query, distance) over a chunk of queries at once; the 1-based
    rank of an item is then its position inside its query's stretch of the sorted chunk.
    Queries are processed in chunks by num_threads threads, each with its own buffers inside
    memory_budget / num_threads; results do not depend on the chunking or the threads.
    """
    if num_threads is not None and (not isinstance(num_threads, (int, np.integer))
                                    or isinstance(num_threads, bool) or num_threads < 1):
        raise ValueError(f"num_threads must be a positive integer or None, got {num_threads!r}")
    if not isinstance(memory_budget, (int, float, np.number)) or not memory_budget > 0:
        raise ValueError(f"memory_budget must be a positive number of bytes, got "
                         f"{memory_budget!r}")
    nq, nb = q.n, db.bits + 1
    if db.n + nb > 2**31 - 1:
        raise ValueError(f"a database of {db.n} items is beyond this evaluator: its counting "
                         "sort indexes positions with int32 (fewer than 2**31 items)")
    n_values = np.zeros(0, np.int64) if n_values is None else np.asarray(n_values, np.int64)
    out = {"n_hist": np.zeros((nq, nb), np.int64), "r_hist": np.zeros((nq, nb), np.int64)}
    if positions:
        out["ap_index"] = np.zeros(nq)
        out["hits_at_n"] = np.zeros((nq, n_values.size), np.int64)
    if top_k is not None:
        out["ap_at_k"] = np.zeros(nq)
    threads = max(1, min(num_threads or default_num_threads(), nq))
    rows = max(1, min(-(-nq // threads), chunk_size(db, memory_budget / threads)))
    # Threads take chunks from a shared queue, so one slowed down by other jobs on the machine
    # does not leave the other idle at the end.
    chunks = queue.SimpleQueue()
    for i0 in range(0, nq, rows):
        chunks.put((i0, min(nq, i0 + rows)))
    args = dict(positions=positions, top_k=top_k, n_values=n_values, out=out)
    if threads == 1:
        _work(q, db, chunks, rows, **args)
    else:
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            for f in [pool.submit(_work, q, db, chunks, rows, **args) for _ in range(threads)]:
                f.result()
    return out


def _work(q, db, chunks, rows, *, positions, top_k, n_values, out):
    """Chunks of queries (i0, i1) from the queue until it is empty: one counting sort per chunk,
    then a few vector operations per query on the positions of its relevant items."""
    nb, n = db.bits + 1, db.n
    buf = ChunkBuffers(rows, db)
    so_far = np.arange(1, n + 1, dtype=np.float64)  # relevant items so far, at each relevant item
    ranks, quotient = np.empty(n), np.empty(n)
    while True:
        try:
            i0, i1 = chunks.get_nowait()
        except queue.Empty:
            return
        c = i1 - i0
        group, rel = _fill_chunk(q, db, i0, i1, buf)
        starts, ranked = counting_sort(group, rel, c * nb, buf)
        hits = np.flatnonzero(ranked)  # chunk positions of the relevant items, ascending
        rel_starts = np.searchsorted(hits, starts)  # relevant items before each group
        out["n_hist"][i0:i1] = np.diff(starts).reshape(c, nb)
        out["r_hist"][i0:i1] = np.diff(rel_starts).reshape(c, nb)
        if not positions and top_k is None:
            continue
        for r in range(c):
            a, b = rel_starts[r * nb], rel_starts[(r + 1) * nb]
            m = b - a
            # 1-based ranks of this query's relevant items (float: they are divided next).
            # (Per query on purpose: whole-chunk versions need np.repeat offsets and cost more.)
            rk = np.subtract(hits[a:b], r * n - 1, out=ranks[:m])
            if positions:
                if m:
                    out["ap_index"][i0 + r] = np.divide(so_far[:m], rk,
                                                        out=quotient[:m]).sum() / m
                if n_values.size:
                    out["hits_at_n"][i0 + r] = np.searchsorted(rk, n_values, side="right")
            if top_k is not None:
                out["ap_at_k"][i0 + r] = _ap_from_ranks(rk[:np.searchsorted(rk, top_k,
                                                                          side="right")])


def _ap_from_ranks(ranks):
    """AP of a ranking whose relevant items sit at 1-based ranks `ranks` (ascending):
    mean over relevant items of (relevant so far) / rank."""
    if ranks.size == 0:
        return 0.0
    m = np.arange(1, ranks.size + 1, dtype=np.float64)
    return float(np.sum(m / ranks) / ranks.size)


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
