"""Serving wrappers of ImgNet/TxtNet: named, validated `serving_default` signatures."""

import numpy as np
import tensorflow as tf

# Output names of every encoder signature (the REST API's field names; keep them stable).
ENCODER_OUTPUTS = ("codes", "packed_codes", "hash", "label_scores")


def codes_from_hash(hash_):
    """+-1 int8 codes: sign(hash) with 0 -> +1, the rule the numpy side uses (h >= 0)."""
    return tf.where(hash_ >= 0, tf.constant(1, tf.int8), tf.constant(-1, tf.int8))


def pack_codes_tf(codes):
    """(n, K) +-1 codes -> (n, K/8) uint8, in np.packbits' big-endian order.

    Same layout as `udsph_tf.retrieval.pack_codes`: bit 1 <-> +1, code bit 0 is the most
    significant bit of byte 0, so a database packed by numpy and a query packed here compare
    byte for byte.
    """
    bits = int(codes.shape[-1])
    if bits % 8:
        raise ValueError(f"code length {bits} is not a multiple of 8: cannot pack into bytes")
    on = tf.cast(codes > 0, tf.int32)
    on = tf.reshape(on, [-1, bits // 8, 8])
    weights = tf.constant([128, 64, 32, 16, 8, 4, 2, 1], tf.int32)
    return tf.cast(tf.reduce_sum(on * weights, axis=-1), tf.uint8)


def validate_batch(x, name):
    """In-graph checks with messages that reach the TF Serving client as the error text.

    The trailing-shape check is not redundant with the signature: a loaded signature (and
    TF Serving's C++ session) feeds a (n, D') tensor into a (None, D) placeholder without
    complaint, and a reshape downstream would then silently regroup the numbers.
    """
    trailing = x.shape[1:].as_list()
    checks = [
        tf.debugging.assert_positive(
            tf.shape(x)[0], message=f"empty batch: '{name}' has 0 rows; send at least one"),
    ]
    if trailing and all(d is not None for d in trailing):
        want = "[?, " + ", ".join(str(d) for d in trailing) + "]"
        checks.append(tf.debugging.assert_equal(
            tf.shape(x)[1:], tf.constant(trailing, tf.int32),
            message=f"'{name}' must have shape {want} (batch first)"))
    if x.dtype.is_floating:
        checks.append(tf.debugging.assert_all_finite(
            x, message=f"'{name}' contains NaN or Inf values"))
    with tf.control_dependencies(checks):
        return tf.identity(x)


def encoder_outputs(model, x):
    """Run a UDSPH modality network in inference mode and derive the serving outputs."""
    out = model(x, training=False)
    hash_ = tf.cast(out["hash"], tf.float32)
    codes = codes_from_hash(hash_)
    return {
        "codes": codes,
        "packed_codes": pack_codes_tf(codes),
        "hash": hash_,
        "label_scores": tf.cast(out["label_pred"], tf.float32),
    }


class TagVocabulary(tf.Module):
    """Tag names -> bag-of-words inside the graph, so a client can send "sky, clouds".

    Matching is case-insensitive (the first of several names that differ only in case wins);
    an unknown tag or a row without tags fails the request with the offending row's text.
    """

    def __init__(self, vocab, name="tag_vocabulary"):
        super().__init__(name=name)
        vocab = [str(v) for v in vocab]
        if not vocab:
            raise ValueError("empty tag vocabulary")
        keys, values, seen = [], [], set()
        for j, tag in enumerate(vocab):
            key = tag.lower()
            if key not in seen:  # StaticHashTable refuses duplicate keys
                seen.add(key)
                keys.append(key)
                values.append(j)
        self.size = len(vocab)
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(keys), tf.constant(values, tf.int64)),
            default_value=-1)

    def bag_of_words(self, tag_words):
        """(n,) strings of tags separated by commas/whitespace -> (n, size) float32 0/1."""
        text = tf.strings.lower(tf.strings.regex_replace(tag_words, r"[,\s]+", " "))
        words = tf.strings.split(tf.strings.strip(text))
        ids = tf.ragged.map_flat_values(self.table.lookup, words)
        row_has_unknown = tf.reduce_any(tf.equal(ids, -1), axis=1)
        row_is_empty = tf.equal(ids.row_lengths(), 0)
        checks = [
            tf.debugging.Assert(tf.logical_not(tf.reduce_any(row_has_unknown)),
                                ["unknown tag(s) in 'tag_words':",
                                 tf.boolean_mask(words.flat_values,
                                                 tf.equal(ids.flat_values, -1))],
                                summarize=10),
            tf.debugging.Assert(tf.logical_not(tf.reduce_any(row_is_empty)),
                                ["a 'tag_words' row holds no tag"]),
        ]
        with tf.control_dependencies(checks):
            safe = tf.ragged.map_flat_values(tf.maximum, ids, tf.constant(0, tf.int64))
            hot = tf.one_hot(safe, self.size, dtype=tf.float32)  # ragged (n, None, size)
            # Reducing the ragged axis gives a dense (n, size); an empty row would give the
            # dtype's lowest value, hence the clamp (such rows already failed the check).
            return tf.maximum(tf.reduce_max(hot, axis=1), 0.0)


TAG_WORDS_SPEC = tf.TensorSpec([None], tf.string, name="tag_words")


class EncoderModule(tf.Module):
    """One modality network behind one input name; only inference variables are saved.

    Tracking just `model` (not the trainer's checkpoint) keeps optimizers, discriminators
    and the code buffers out of the SavedModel.
    """

    def __init__(self, model, input_name, input_shape, input_dtype=tf.float32, name=None,
                 tag_vocab=None):
        super().__init__(name=name)
        self.model = model
        self.input_name = input_name
        self.input_shape = tuple(input_shape)
        # The TensorSpec's name becomes the signature's input name (the REST field name).
        spec = tf.TensorSpec([None, *self.input_shape], input_dtype, name=input_name)
        self.serve = tf.function(
            lambda x: encoder_outputs(self.model, validate_batch(x, input_name)),
            input_signature=[spec])
        self.vocabulary = None
        if tag_vocab is not None:
            if len(tag_vocab) != self.input_shape[-1]:
                raise ValueError(f"tag vocabulary has {len(tag_vocab)} names for a "
                                 f"{self.input_shape[-1]}-column bag-of-words")
            self.vocabulary = TagVocabulary(tag_vocab)
            self.serve_words = tf.function(
                lambda w: encoder_outputs(self.model, self.vocabulary.bag_of_words(
                    validate_batch(w, "tag_words"))),
                input_signature=[TAG_WORDS_SPEC])

    def signatures(self):
        sigs = {"serving_default": self.serve.get_concrete_function()}
        if self.vocabulary is not None:
            sigs["from_tag_words"] = self.serve_words.get_concrete_function()
        return sigs


def image_encoder_module(imgnet, feature_shape):
    """Image encoder over precomputed features: input `image_features` (n, *feature_shape)."""
    return EncoderModule(imgnet, "image_features", feature_shape, name="image_encoder")


def text_encoder_module(txtnet, tag_dim, tag_vocab=None):
    """Text encoder over the tag bag-of-words: input `tags` (n, tag_dim) float32; with a
    vocabulary also `from_tag_words` (input `tag_words`, e.g. "sky, clouds")."""
    return EncoderModule(txtnet, "tags", (int(tag_dim),), name="text_encoder",
                         tag_vocab=tag_vocab)


def numpy_codes(hash_):
    """numpy twin of codes_from_hash (for database building and tests)."""
    return np.where(np.asarray(hash_) >= 0, 1, -1).astype(np.int8)
