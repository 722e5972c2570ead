"""Optional FAISS backends for HammingIndex: IndexBinaryFlat (exact), IndexBinaryHNSW (approx)."""

import numpy as np

from udsph_tf.retrieval import search as _search

# faiss is imported lazily, so the package works without the optional faiss-cpu extra.
# FAISS binary indexes take the same uint8 rows we store and compute popcount(XOR) over
# whole bytes, so the bit order inside a byte (ours: np.packbits big-endian) changes no
# distance. Only FAISS's own packing helpers use the opposite order; we never call them.
_RANK_SHIFT = 40


def _import_faiss():
    try:
        import faiss
    except ImportError as err:
        raise ValueError("the FAISS backends need faiss-cpu "
                         "(pip install 'udsph-tf[faiss]')") from err
    return faiss


def _rank(distances, positions):
    """Sort each row by (distance, position); -1 positions (unfilled slots) go last."""
    pos = np.where(positions < 0, (1 << _RANK_SHIFT) - 1, positions)
    order = np.argsort((distances.astype(np.int64) << _RANK_SHIFT) | pos, axis=1,
                       kind="stable")
    return (np.take_along_axis(positions, order, axis=1),
            np.take_along_axis(distances, order, axis=1))


class FlatSearcher:
    """Exact search with IndexBinaryFlat, returning exactly the numpy path's results.

    Any valid top-k holds every item closer than the k-th distance tau, so only which of
    the items *at* tau are kept can differ between implementations. We ask FAISS for k +
    extra_candidates, rank them by (distance, position) and keep the first k; this is
    provably the (distance, position) top-k when the last candidate is farther than tau
    (all items at distance <= tau were then returned) or when the whole database was
    returned. Queries where neither holds (a tie run at tau longer than the extra
    candidates) are re-run on the exact numpy path, so results never depend on FAISS's
    internal tie order.
    """

    exact = True

    def __init__(self, packed, num_threads=None, extra_candidates=None):
        faiss = _import_faiss()
        self.n, nbytes = packed.shape
        self.index = faiss.IndexBinaryFlat(nbytes * 8)
        self.index.add(np.ascontiguousarray(packed))
        self.num_threads = num_threads
        self.extra_candidates = extra_candidates
        self._packed = packed
        self._numpy = None  # built on the first tie fallback only
        self.fallback_queries = 0  # how many queries needed the numpy re-run (diagnostic)

    def search(self, query_packed, k):
        k = _search._check_k(k)
        k_eff = min(k, self.n)
        q = query_packed.shape[0]
        if q == 0:
            return np.zeros((0, k_eff), np.int64), np.zeros((0, k_eff), np.int32)
        extra = k if self.extra_candidates is None else int(self.extra_candidates)
        k_ask = min(self.n, k_eff + extra)
        faiss = _import_faiss()
        if self.num_threads:
            faiss.omp_set_num_threads(int(self.num_threads))
        distances, positions = self.index.search(np.ascontiguousarray(query_packed), k_ask)
        positions, distances = _rank(distances.astype(np.int32), positions.astype(np.int64))
        if k_ask < self.n:
            tau = distances[:, k_eff - 1]
            unsure = np.flatnonzero(distances[:, k_ask - 1] <= tau)
            if unsure.size:
                if self._numpy is None:
                    self._numpy = _search._NumpySearcher(self._packed, self.num_threads)
                fix_pos, fix_dist = self._numpy.search(query_packed[unsure], k_eff)
                positions[unsure, :k_eff] = fix_pos
                distances[unsure, :k_eff] = fix_dist
                self.fallback_queries += int(unsure.size)
        return positions[:, :k_eff], distances[:, :k_eff]


class HNSWSearcher:
    """Approximate search with IndexBinaryHNSW (graph search; for large databases).

    Results are ranked by (distance, position) like every backend, but may miss true
    neighbours; unfilled slots keep FAISS's -1 position and get distance bits + 1.
    """

    exact = False

    def __init__(self, packed, num_threads=None, hnsw_m=32, ef_construction=64,
                 ef_search=128):
        faiss = _import_faiss()
        self.n, nbytes = packed.shape
        self.bits = nbytes * 8
        self.num_threads = num_threads
        if num_threads:
            faiss.omp_set_num_threads(int(num_threads))
        self.index = faiss.IndexBinaryHNSW(self.bits, int(hnsw_m))
        self.index.hnsw.efConstruction = int(ef_construction)
        self.index.hnsw.efSearch = int(ef_search)
        self.index.add(np.ascontiguousarray(packed))

    def search(self, query_packed, k):
        k_eff = min(_search._check_k(k), self.n)
        if query_packed.shape[0] == 0:
            return np.zeros((0, k_eff), np.int64), np.zeros((0, k_eff), np.int32)
        faiss = _import_faiss()
        if self.num_threads:
            faiss.omp_set_num_threads(int(self.num_threads))
        # efSearch below k would silently cap the result list.
        self.index.hnsw.efSearch = max(self.index.hnsw.efSearch, k_eff)
        distances, positions = self.index.search(np.ascontiguousarray(query_packed), k_eff)
        positions = positions.astype(np.int64)
        distances = np.where(positions < 0, self.bits + 1, distances).astype(np.int32)
        return _rank(distances, positions)


def make_searcher(backend, packed, num_threads=None, **options):
    """Backend name ("faiss" | "faiss_hnsw") -> a searcher with .n, .exact, .search(q, k)."""
    classes = {"faiss": FlatSearcher, "faiss_hnsw": HNSWSearcher}
    if backend not in classes:
        raise ValueError(f"unknown FAISS backend {backend!r}; choose one of {sorted(classes)}")
    try:
        return classes[backend](packed, num_threads=num_threads, **options)
    except TypeError as err:
        raise ValueError(f"bad options for backend {backend!r}: {err}") from err
