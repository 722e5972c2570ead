"""Exact Hamming top-k over packed codes in numpy, and the HammingIndex front end."""

# Ranking rule (every backend): ascending Hamming distance, ties broken by ascending
# database position (the stable ranking of design.md section 3), so results are deterministic.

import concurrent.futures
import threading

import numpy as np

from udsph_tf.codes import as_words, check_packed, default_num_threads

# A result is packed into one int64 key, distance << 40 | position, so that a single
# np.partition/np.sort orders by (distance, position): no lexsort, no separate tie pass.
_POS_BITS = 40
_POS_MASK = (1 << _POS_BITS) - 1
_SENTINEL = np.iinfo(np.int64).max
# Elements per (query block x database chunk) tile: 2**18 (2 MiB of uint64 words). A
# one-off sweep of 2**16..2**19 x query blocks 8..64 (512 queries over 1M 64-bit codes, one
# thread) put 2**18-2**19 ahead by ~10%; this machine has 2 MiB of L2 per core.
_TILE = 1 << 18
# Smallest database part worth its own thread for small query batches (a heuristic: thread
# hand-off costs tens of microseconds, a 256k-item part about a millisecond).
_MIN_PART = 1 << 18
# First chunk >= _FIRST elements per tile, then x_GROWTH per chunk: the best of
# 512/2048/8192 x 2/4/8 in CPU time on 18k-1M codes, batch 1 and 160 (each chunk costs ~25
# numpy calls, so many tiny chunks lose to a few larger ones).
_FIRST = 2048
_GROWTH = 4
# A single query over at most this many items takes the threshold path (fewer numpy calls);
# above it, streaming's cheaper per-item work wins (crossover between 18k and 193k items).
_SINGLE_SMALL = 1 << 16

BACKENDS = ("auto", "numpy", "faiss", "faiss_hnsw")




def hamming_distances(query_packed, db_packed):
    """Full (q, n) int32 Hamming distance matrix; for small inputs and tests (O(q*n) memory)."""
    query_packed = check_packed(query_packed, name="query codes")
    db_packed = check_packed(db_packed, query_packed.shape[1] * 8, name="database codes")
    qw, dw = as_words(query_packed), as_words(db_packed)
    dist = np.zeros((qw.shape[1], dw.shape[1]), np.int32)
    for w in range(qw.shape[0]):
        dist += np.bitwise_count(np.bitwise_xor(qw[w][:, None], dw[w][None, :]))
    return dist


def _topk_single_small(qw, dw, lo, hi, k, max_dist):
    """Top-k keys (1, k) of one query over a small range, by an exact distance threshold.

    Distances take only K+1 small-integer values, so a histogram of the uint8 row gives
    the k-th distance tau; the answer is every item closer than tau plus the first items
    (by position) at tau. About ten numpy calls in all, against ~25
    per chunk for streaming, which dominates batch-1 latency on a small database.
    """
    d = np.bitwise_count(np.bitwise_xor(qw[0, 0], dw[0, lo:hi]))
    if max_dist > 255:   # uint8 counts would wrap when summed over words
        d = d.astype(np.uint16)
    for w in range(1, qw.shape[0]):
        d += np.bitwise_count(np.bitwise_xor(qw[w, 0], dw[w, lo:hi]))
    kk = min(k, hi - lo)
    # Counting, not np.partition: introselect on a row of K+1 distinct values was 3x slower
    # on some queries than others; a histogram costs the same for every query.
    tau = np.searchsorted(np.cumsum(np.bincount(d)), kk)
    closer = np.flatnonzero(d < tau)
    cols = np.concatenate([closer, np.flatnonzero(d == tau)[:kk - closer.size]])
    keys = np.full((1, k), _SENTINEL, np.int64)
    keys[0, :kk] = (d[cols].astype(np.int64) << _POS_BITS) | (cols + lo)
    return keys


def _topk_tile(qw, dw, lo, hi, k, max_dist):
    """Top-k keys (bq, k) of query words qw (W, bq) over database positions [lo, hi).

    Streams the range in chunks and keeps each query's k best keys plus a limit: once a
    query holds k results, only distances strictly below its k-th distance can enter
    (a later item at equal distance has a larger position and loses the tie). After the
    first chunk very few items pass, so the cost is XOR + popcount + one compare per item.
    """
    nwords, bq = qw.shape
    if bq == 1 and hi - lo <= _SINGLE_SMALL:
        return _topk_single_small(qw, dw, lo, hi, k, max_dist)
    dist_dtype = np.uint8 if max_dist < 255 else np.uint16  # limit = max_dist + 1 must fit
    chunk = max(256, _TILE // bq)
    best = np.full((bq, k), _SENTINEL, np.int64)
    limit = np.full(bq, max_dist + 1, dist_dtype)
    xor = np.empty((bq, chunk), dw.dtype)
    dist = np.empty((bq, chunk), dist_dtype)
    part = np.empty((bq, chunk), dist_dtype) if nwords > 1 else None
    mask = np.empty((bq, chunk), bool)
    # Chunks grow geometrically: after m items the limit admits about k*e/m of the next e
    # (database in no particular order), so growing chunks pass few candidates each,
    # ~k*log(n/2k) in all, where one big first chunk would pass (and partition) all of it.
    start, size = lo, min(chunk, max(2 * k, _FIRST // bq, 256))
    while start < hi:
        e = min(hi - start, size)
        x, d, m = xor[:, :e], dist[:, :e], mask[:, :e]
        for w in range(nwords):
            np.bitwise_xor(qw[w][:, None], dw[w, None, start:start + e], out=x)
            if w == 0:
                np.bitwise_count(x, out=d)
            else:
                np.bitwise_count(x, out=part[:, :e])
                d += part[:, :e]
        np.less(d, limit[:, None], out=m)
        # 2-D np.nonzero cost ~30x a flat scan here (measured); m.any() skips most chunks outright.
        if m.any():
            rows, cols = np.divmod(np.flatnonzero(m), e)
            keys = (d[rows, cols].astype(np.int64) << _POS_BITS) | (cols + start)
            counts = np.bincount(rows, minlength=bq)
            touched = np.flatnonzero(counts)
            width = int(counts.max())
            merged = np.full((touched.size, k + width), _SENTINEL, np.int64)
            merged[:, :k] = best[touched]
            slot = np.arange(rows.size) - (np.cumsum(counts) - counts)[rows]
            row_of = np.empty(bq, np.intp)
            row_of[touched] = np.arange(touched.size)
            merged[row_of[rows], k + slot] = keys
            # Partition puts the k-th key in place, all the limit needs; the final merge sorts.
            top = np.partition(merged, k - 1, axis=1)[:, :k]
            best[touched] = top
            kth = top[:, k - 1]
            limit[touched] = np.where(kth == _SENTINEL, max_dist + 1, kth >> _POS_BITS)
        start += e
        size = min(chunk, _GROWTH * size)
    return best


_POOLS = {}
_POOLS_LOCK = threading.Lock()


def _pool(num_threads):
    """A process-wide thread pool per size: spawning threads on every call would add
    their start-up to each batch-1 search."""
    with _POOLS_LOCK:
        if num_threads not in _POOLS:
            _POOLS[num_threads] = concurrent.futures.ThreadPoolExecutor(
                num_threads, thread_name_prefix="hamming")
        return _POOLS[num_threads]


def _merge_keys(parts, k):
    keys = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    if keys.shape[1] > k:
        keys = np.partition(keys, k - 1, axis=1)[:, :k]
    return np.sort(keys, axis=1)


def hamming_topk(query_packed, db_packed, k, *, num_threads=None, query_block=16):
    """Exact Hamming top-k in numpy: (positions int64 (q, k'), distances int32 (q, k')).

    k' = min(k, n): asking for more neighbours than the database holds returns all of it.
    An empty query batch (0, B) returns (0, k') arrays. Ties are ranked by database
    position. Memory is bounded by query_block x chunk tiles, whatever q and n are.
    num_threads (default: usable CPUs) splits query blocks, and the database too when
    there are fewer query blocks than threads (e.g. batch-1 latency). Each call re-lays
    the database out in words; to search one database repeatedly, build a HammingIndex.
    """
    query_packed = check_packed(query_packed, name="query codes")
    db_packed = check_packed(db_packed, query_packed.shape[1] * 8, name="database codes")
    return _NumpySearcher(db_packed, num_threads).search(query_packed, k, query_block)


def _check_k(k):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


class _NumpySearcher:
    """Database words prepared once; exact search by streaming tiles over threads."""

    exact = True

    def __init__(self, db_packed, num_threads=None):
        self.n, self.nbytes = db_packed.shape
        if self.n >= 1 << _POS_BITS:
            raise ValueError(f"database too large for the numpy path ({self.n} items)")
        self.words = as_words(db_packed)
        self.num_threads = int(num_threads or default_num_threads())

    def search(self, query_packed, k, query_block=16):
        k_eff = min(_check_k(k), self.n)
        if isinstance(query_block, bool) or not isinstance(query_block, (int, np.integer)) \
                or query_block < 1:
            raise ValueError(f"query_block must be a positive integer, got {query_block!r}")
        q = query_packed.shape[0]
        if q == 0 or k_eff == 0:
            return np.zeros((q, k_eff), np.int64), np.zeros((q, k_eff), np.int32)
        qw = as_words(query_packed)
        max_dist = self.nbytes * 8
        blocks = [(s, min(q, s + query_block)) for s in range(0, q, query_block)]
        # Fewer query blocks than threads: cut the database so every thread has work.
        n_parts = max(1, min(self.num_threads // len(blocks), self.n // _MIN_PART))
        bounds = [self.n * p // n_parts for p in range(n_parts + 1)]
        tasks = [(b, p) for b in range(len(blocks)) for p in range(n_parts)]

        def run(task):
            (qs, qe), p = blocks[task[0]], task[1]
            return _topk_tile(qw[:, qs:qe], self.words, bounds[p], bounds[p + 1],
                              k_eff, max_dist)

        if self.num_threads > 1 and len(tasks) > 1:
            results = list(_pool(self.num_threads).map(run, tasks))
        else:
            results = [run(t) for t in tasks]
        keys = np.concatenate([_merge_keys(results[b * n_parts:(b + 1) * n_parts], k_eff)
                               for b in range(len(blocks))])
        return (keys & _POS_MASK).astype(np.int64), (keys >> _POS_BITS).astype(np.int32)


class HammingIndex:
    """Top-k Hamming search over packed codes behind one interface, whatever the backend.

    Build with `HammingIndex.build(packed, backend=..., ids=...)`; `search` returns database
    positions and distances, `search_ids` maps positions to the ids given at build time.
    Backends: "numpy" (exact), "faiss" (exact, IndexBinaryFlat, same results as numpy),
    "faiss_hnsw" (approximate, IndexBinaryHNSW), "auto" (see `resolve_backend`).
    """

    def __init__(self, searcher, backend, bits, ids=None):
        self.searcher = searcher
        self.backend = backend
        self.bits = bits
        self.ids = ids

    @classmethod
    def build(cls, packed, backend="auto", *, ids=None, num_threads=None, **backend_options):
        """Index uint8 (n, K/8) packed codes; ids (n,) optional, defaults to positions.

        backend_options go to the FAISS backends (e.g. hnsw_m, ef_search, ef_construction,
        extra_candidates). num_threads: numpy worker threads (default: usable CPUs); for
        FAISS it calls faiss.omp_set_num_threads, which is process-wide (default: leave
        FAISS's OpenMP setting alone).
        """
        packed = check_packed(packed, name="database codes")
        if packed.shape[0] == 0:
            raise ValueError("cannot build a Hamming index over an empty database")
        if ids is not None:
            ids = np.asarray(ids)
            if ids.shape != (packed.shape[0],):
                raise ValueError(f"ids must have shape ({packed.shape[0]},) to match the "
                                 f"database codes, got {ids.shape}")
        name = resolve_backend(backend)
        if name == "numpy":
            if backend_options:
                raise ValueError(f"numpy backend takes no options {sorted(backend_options)}")
            searcher = _NumpySearcher(packed, num_threads)
        else:
            from udsph_tf.retrieval import faiss_backend
            searcher = faiss_backend.make_searcher(name, packed, num_threads=num_threads,
                                                   **backend_options)
        return cls(searcher, name, packed.shape[1] * 8, ids)

    @property
    def exact(self):
        return self.searcher.exact

    def __len__(self):
        return self.searcher.n

    def search(self, query_packed, k):
        """(positions int64 (q, k'), distances int32 (q, k')), k' = min(k, len(self)).

        Rows ranked by (distance, position). Empty query batches give (0, k') arrays.
        Approximate backends may miss neighbours; missing slots get position -1 and
        distance bits + 1 (FAISS convention kept, so shapes stay (q, k')).
        """
        query_packed = check_packed(query_packed, self.bits, name="query codes")
        return self.searcher.search(query_packed, k)

    def to_ids(self, positions):
        """Database positions -> ids given at build (positions themselves when none)."""
        positions = np.asarray(positions)
        if self.ids is None:
            return positions
        if positions.size and (positions.min() < -1 or positions.max() >= len(self)):
            raise ValueError("positions out of range for this index")
        out = self.ids[np.where(positions < 0, 0, positions)]
        if (positions < 0).any():  # approximate backends leave unfilled slots at -1
            if out.dtype.kind not in "iu":
                out = out.astype(object)
            out[positions < 0] = -1
        return out

    def search_ids(self, query_packed, k):
        """Like search, but returns database ids instead of positions."""
        positions, distances = self.search(query_packed, k)
        return self.to_ids(positions), distances


def faiss_available():
    try:
        import faiss  # noqa: F401  (lazy: faiss-cpu is an optional extra)
    except ImportError:
        return False
    return True


def resolve_backend(backend):
    """Backend name -> concrete backend. "auto" = numpy (see docs/retrieval.md: measured
    within 2x of FAISS IndexBinaryFlat here, exact by construction, no extra dependency)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if backend == "auto":
        return "numpy"
    if backend.startswith("faiss") and not faiss_available():
        raise ValueError(f"backend {backend!r} needs faiss-cpu, which is not installed "
                         "(pip install 'udsph-tf[faiss]')")
    return backend
