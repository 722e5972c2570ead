"""Retrieval SavedModels: query encoder + embedded packed database + in-graph Hamming top-k."""

import numpy as np
import tensorflow as tf

from udsph_tf.export.encoders import (TAG_WORDS_SPEC, TagVocabulary, encoder_outputs,
                                      image_input_layout, reads_bag_of_words, validate_batch)

RETRIEVAL_OUTPUTS = ("ids", "positions", "distances", "query_packed_codes")

_WORD_DTYPES = ((8, tf.uint64), (4, tf.uint32), (2, tf.uint16), (1, tf.uint8))


def word_layout(num_bytes):
    """Widest unsigned word that divides the packed row: fewer xor/popcount ops per pair.

    The byte order inside a word does not matter: Hamming distance only counts differing
    bits, and query and database are reinterpreted the same way.
    """
    for size, dtype in _WORD_DTYPES:
        if num_bytes % size == 0:
            return size, dtype
    raise AssertionError("unreachable: every row divides into bytes")


def to_words(packed, num_bytes):
    """(n, B) uint8 -> (n, B/w) words of the dtype chosen by `word_layout`."""
    size, dtype = word_layout(num_bytes)
    if size == 1:
        return packed
    grouped = tf.reshape(packed, [-1, num_bytes // size, size])
    return tf.bitcast(grouped, dtype)


def hamming_distances(query_words, db_words):
    """(q, W) and (N, W) words -> (q, N) int32 Hamming distances via xor + PopulationCount."""
    x = tf.bitwise.bitwise_xor(query_words[:, None, :], db_words[None, :, :])
    counts = tf.raw_ops.PopulationCount(x=x)  # uint8 per word
    return tf.reduce_sum(tf.cast(counts, tf.int32), axis=-1)


def hamming_top_k(query_words, db_words, k, bits):
    """Top-k database positions by (distance, position): the numpy HammingIndex tie policy.

    One sort key = distance * N + position makes ties explicit instead of relying on the
    tie order of top_k; int32 while (bits + 1) * N fits, int64 beyond.
    Returns positions (q, k) int64 and distances (q, k) int32.
    """
    n = tf.shape(db_words)[0]
    dist = hamming_distances(query_words, db_words)
    static_n = db_words.shape[0]
    key_dtype = tf.int32 if static_n is not None and (bits + 1) * static_n < 2**31 else tf.int64
    positions = tf.range(n, dtype=key_dtype)
    key = tf.cast(dist, key_dtype) * tf.cast(n, key_dtype) + positions[None, :]
    _, top = tf.math.top_k(-key, k=k, sorted=True)
    return tf.cast(top, tf.int64), tf.gather(dist, top, batch_dims=1)


class RetrievalModule(tf.Module):
    """Query encoder of one modality + the other modality's database codes, searched in-graph.

    Signatures: `serving_default` (raw query -> top `top_k`), `search_top_k` (same with a
    scalar `k` input; columnar REST requests only, since k has no batch dimension) and
    `search_packed` (already packed query codes, for clients that encode elsewhere).
    """

    def __init__(self, query_model, input_name, input_shape, db_packed, db_ids, bits, top_k,
                 name=None, tag_vocab=None):
        super().__init__(name=name)
        db_packed = np.asarray(db_packed)
        if db_packed.dtype != np.uint8 or db_packed.ndim != 2:
            raise ValueError(f"database codes must be packed uint8 (N, bits/8), got "
                             f"{db_packed.dtype} {db_packed.shape}")
        if db_packed.shape[1] * 8 != bits:
            raise ValueError(f"database codes have {db_packed.shape[1] * 8} bits, "
                             f"the model has {bits}")
        if len(db_ids) != len(db_packed) or len(db_packed) == 0:
            raise ValueError(f"database ids ({len(db_ids)}) and codes ({len(db_packed)}) "
                             "must be the same non-zero length")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.query_model = query_model
        self.bits = int(bits)
        self.num_bytes = self.bits // 8
        self.database_size = len(db_packed)
        self.default_k = int(min(top_k, self.database_size))
        words = to_words(tf.constant(db_packed), self.num_bytes)
        # Variables (not graph constants) keep large databases out of the 2 GB GraphDef.
        self.db_words = tf.Variable(words, trainable=False, name="database_codes")
        ids = np.asarray(db_ids)
        ids = ids.astype(np.int64) if ids.dtype.kind in "iu" else ids.astype(str).astype(object)
        self.db_ids = tf.Variable(ids, trainable=False, name="database_ids")

        # A bag-of-words text query refuses negative counts, as training does (dense text
        # encoders take any real value).
        non_negative = input_name == "tags" and reads_bag_of_words(query_model)
        layout = image_input_layout(query_model) if input_name == "image_features" else None
        query_spec = tf.TensorSpec([None, *input_shape], tf.float32, name=input_name)
        packed_spec = tf.TensorSpec([None, self.num_bytes], tf.uint8, name="packed_codes")
        k_spec = tf.TensorSpec([], tf.int32, name="k")
        def check(x):
            return validate_batch(x, input_name, non_negative, layout)

        # One-line lambdas: AutoGraph finds a lambda by its source line.
        self.serve = tf.function(lambda x: self._search_raw(check(x), self.default_k),
                                 input_signature=[query_spec])
        self.serve_k = tf.function(lambda x, k: self._search_raw(check(x), self._check_k(k)),
                                   input_signature=[query_spec, k_spec])
        self.serve_packed = tf.function(
            lambda p: self._search_packed(validate_batch(p, "packed_codes"), self.default_k),
            input_signature=[packed_spec])
        # Text queries by tag name ("sky, clouds"): TF Serving alone then answers a search.
        self.vocabulary = TagVocabulary(tag_vocab) if tag_vocab is not None else None
        if self.vocabulary is not None:
            if self.vocabulary.size != input_shape[-1]:
                raise ValueError(f"tag vocabulary has {self.vocabulary.size} names for a "
                                 f"{input_shape[-1]}-column bag-of-words")
            self.serve_words = tf.function(
                lambda w: self._search_raw(self.vocabulary.bag_of_words(
                    validate_batch(w, "tag_words")), self.default_k),
                input_signature=[TAG_WORDS_SPEC])

    def signatures(self):
        sigs = {"serving_default": self.serve.get_concrete_function(),
                "search_top_k": self.serve_k.get_concrete_function(),
                "search_packed": self.serve_packed.get_concrete_function()}
        if self.vocabulary is not None:
            sigs["search_tag_words"] = self.serve_words.get_concrete_function()
        return sigs

    def _check_k(self, k):
        check = tf.debugging.assert_positive(k, message="k must be >= 1")
        with tf.control_dependencies([check]):
            return tf.minimum(k, self.database_size)

    def _search_raw(self, x, k):
        packed = encoder_outputs(self.query_model, x)["packed_codes"]
        return self._search_packed(packed, k)

    def _search_packed(self, packed, k):
        positions, distances = hamming_top_k(to_words(packed, self.num_bytes), self.db_words,
                                             k, self.bits)
        return {"ids": tf.gather(self.db_ids, positions), "positions": positions,
                "distances": distances, "query_packed_codes": packed}
