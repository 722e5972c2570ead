"""Hamming retrieval: packed codes, code database files, exact and FAISS top-k (numpy only)."""

# Typical use (the export and search modes build on this):
# db = CodeDatabase.from_codes(codes_pm1, ids=item_ids, labels=labels, run_name="run1",
#                              model_version="3", modality="text")
# db.save("codes/text.npz")
# index = CodeDatabase.load("codes/text.npz").index(backend="auto")
# ids, distances = index.search_ids(pack_codes(query_codes_pm1), k=100)

from udsph_tf.codes import check_packed, default_num_threads, pack_codes, unpack_codes
from udsph_tf.retrieval.database import CodeDatabase
from udsph_tf.retrieval.search import (BACKENDS, HammingIndex, faiss_available,
                                       hamming_distances, hamming_topk, resolve_backend)

__all__ = ["BACKENDS", "CodeDatabase", "HammingIndex", "check_packed", "default_num_threads",
           "faiss_available", "hamming_distances", "hamming_topk", "pack_codes",
           "resolve_backend", "unpack_codes"]
