"""Serving wrappers of ImgNet/TxtNet: named, validated `serving_default` signatures."""

import tensorflow as tf

from udsph_tf.models.encoding import sign_codes

# Output names of every encoder signature (the REST API's field names; keep them stable).
ENCODER_OUTPUTS = ("codes", "packed_codes", "hash", "label_scores")


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


def validate_batch(x, name, non_negative=False, layout=None):
    """In-graph checks with messages that reach the TF Serving client as the error text.

    None of them is redundant with the signature: a loaded signature (and TF Serving's C++
    session) feeds a tensor of any rank and trailing shape into a (None, D) placeholder without
    complaint, and a reshape downstream would then silently regroup the numbers.
    `non_negative`: refuse values < 0 (a bag of words holds counts).
    `layout`: what the rows of one item are (image_input_layout), added to the shape messages.
    """
    trailing = x.shape[1:].as_list()
    rank = len(trailing) + 1
    want = "[" + ", ".join(["?"] + ["?" if d is None else str(d) for d in trailing]) + "]"
    hint = f"; one item is {layout}" if layout else ""
    # The rank is checked first, alone: the checks below index and compare tf.shape(x), which
    # for another rank fail with shape errors that do not name the input.
    rank_check = tf.debugging.assert_equal(
        _runtime_rank(x), tf.constant(rank, tf.int32),
        message=f"'{name}' must have {rank} dimension{'s' if rank > 1 else ''}, shape {want} "
                f"(batch first){hint}")
    with tf.control_dependencies([rank_check]):
        checks = [
            tf.debugging.assert_positive(
                tf.shape(x)[0], message=f"empty batch: '{name}' has 0 rows; send at least one"),
        ]
        if trailing and all(d is not None for d in trailing):
            checks.append(tf.debugging.assert_equal(
                tf.shape(x)[1:], tf.constant(trailing, tf.int32),
                message=f"'{name}' must have shape {want} (batch first){hint}"))
        if x.dtype.is_floating:
            checks.append(tf.debugging.assert_all_finite(
                x, message=f"'{name}' contains NaN or Inf values"))
        if non_negative:
            checks.append(tf.debugging.assert_non_negative(
                x, message=f"'{name}' holds negative values: this model reads a bag of words "
                           "(tag counts >= 0); dense text such as sentence embeddings needs "
                           "a run trained with --text_encoder=dense"))
    with tf.control_dependencies([rank_check, *checks]):
        return tf.identity(x)


def _runtime_rank(x):
    """The rank of the tensor actually fed, as an int32 computed when the graph runs.

    tf.rank(x) and tf.debugging.assert_rank(x, ...) read the signature's static shape: at
    trace time they become constants (assert_rank a no-op), and Grappler folds even a raw
    Rank op from the placeholder's shape, so a (16,) tensor fed to a (None, 16) signature
    would pass. The length of a boolean_mask of tf.shape(x) depends on values, so it cannot
    be folded; the mask keeps every entry (a dimension is never negative).
    """
    shape = tf.shape(x)
    return tf.size(tf.boolean_mask(shape, shape >= 0), out_type=tf.int32)


def image_input_layout(imgnet):
    """What the rows of one image input are when they are not a plain vector, else None.

    A run trained with --region_grid reads (R+1, d) per image: a client sending the global
    vector alone must be told that the regions are part of the input.
    """
    layer = getattr(imgnet, "image_input", None)
    if getattr(layer, "global_last", False):
        return (f"{layer.num_regions} region rows (the grid cells, row-major) then the global "
                "feature row, as the run was trained (--region_grid)")
    if len(getattr(layer, "feature_shape", ())) == 2:
        return f"{layer.num_regions} region rows"
    return None


def reads_bag_of_words(txtnet):
    """True when a TxtNet's input is a bag of words (counts >= 0, refused when negative);
    False for dense text (--text_encoder=dense: embeddings, z-scored topics). A TxtNet built
    before the `encoder` attribute existed always read a bag of words."""
    return getattr(txtnet, "encoder", "bow") == "bow"


def encoder_outputs(model, x):
    """Run a UDSPH modality network in inference mode and derive the serving outputs."""
    out = model(x, training=False)
    hash_ = tf.cast(out["hash"], tf.float32)
    codes = sign_codes(hash_)
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
                 tag_vocab=None, non_negative=False, layout=None):
        super().__init__(name=name)
        self.model = model
        self.input_name = input_name
        self.input_shape = tuple(input_shape)
        # The TensorSpec's name becomes the signature's input name (the REST field name).
        spec = tf.TensorSpec([None, *self.input_shape], input_dtype, name=input_name)
        self.serve = tf.function(
            lambda x: encoder_outputs(self.model,
                                      validate_batch(x, input_name, non_negative, layout)),
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
    """Image encoder over precomputed features: input `image_features` (n, *feature_shape),
    i.e. (n, D), or (n, R+1, d) for a run trained with --region_grid (regions, then the
    global row)."""
    return EncoderModule(imgnet, "image_features", feature_shape, name="image_encoder",
                         layout=image_input_layout(imgnet))


def text_encoder_module(txtnet, tag_dim, tag_vocab=None):
    """Text encoder over the tag bag-of-words: input `tags` (n, tag_dim) float32; with a
    vocabulary also `from_tag_words` (input `tag_words`, e.g. "sky, clouds").

    A bag-of-words TxtNet refuses negative `tags`, as training does; a dense one (text
    embeddings) takes any finite value."""
    return EncoderModule(txtnet, "tags", (int(tag_dim),), name="text_encoder",
                         tag_vocab=tag_vocab, non_negative=reads_bag_of_words(txtnet))
