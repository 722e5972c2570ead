"""TxtNet: tag bag-of-words -> SSAH multi-scale fusion -> feature, hash code, labels, tag tokens."""

import keras
import numpy as np
import tensorflow as tf

from udsph_tf.models.labnet import HashAndLabelHeads, HiddenLayer


class MultiScaleFusion(keras.layers.Layer):
    """SSAH's multi-scale text fusion: (n, D) -> (n, D * (1 + len(scales))).

    For each window w: average-pool the BoW with window and stride w ('valid', as SSAH), a 1x1
    ReLU conv (one weight and bias per scale), and a bilinear resize back to D; the input and
    every scale are stacked as channels and flattened, which is what SSAH's [1, D, 6, 4096]
    'valid' conv sees. A window wider than the vocabulary is clamped to it, so small vocabularies
    keep the same number of channels. (SSAH resized with TF1's corner-aligned-free default;
    tf.image.resize uses half-pixel centres, a sub-bin shift of the interpolation grid.)
    """

    def __init__(self, vocab_size, scales=(50, 30, 15, 10, 5), **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = int(vocab_size)
        if any(int(s) < 1 for s in scales):
            raise ValueError(f"txt scales must be positive pooling windows, got {scales}")
        self.windows = [min(int(s), self.vocab_size) for s in scales]
        self.pools = [keras.layers.AveragePooling1D(w, strides=w, padding="valid")
                      for w in self.windows]
        self.convs = [keras.layers.Conv1D(1, 1, activation="relu", name=f"scale{w}_{i}")
                      for i, w in enumerate(self.windows)]
        # tf.train.Checkpoint does not look inside Keras 3 lists: name each conv as well.
        for i, conv in enumerate(self.convs):
            setattr(self, f"scale_conv{i}", conv)

    def call(self, bow):
        x = bow[:, :, None]
        channels = [x]
        for pool, conv in zip(self.pools, self.convs):
            y = conv(pool(x))                                     # (n, D // w, 1)
            y = tf.image.resize(y[:, None, :, :], [1, self.vocab_size], method="bilinear")
            channels.append(tf.cast(y[:, 0], x.dtype))            # (n, D, 1)
        fused = tf.concat(channels, axis=-1)
        return tf.reshape(fused, [-1, self.vocab_size * len(channels)])


class TxtNet(keras.Model):
    """BoW (n, D) -> fusion -> hidden ReLU -> feature ReLU -> hash tanh, labels; plus word tokens.

    Tokens for the cross-modal attention: the text is the set of its tags, each a learned
    embedding. The `max_tokens` largest BoW entries are taken (tf.math.top_k; equal values keep
    the lower tag index first, so the choice is deterministic) and `token_mask` marks those that
    are present (value > 0); masked tokens are zero vectors. `attention_dim` (set by
    build_models when the attention is on) adds TxtNet's learned linear word projection into
    the attention space, so the attention loss trains TxtNet. `word_vectors` (vocab_size,
    token_dim) with `word_found` (vocab_size,) bool initialise the embedding rows of the found
    tags (e.g. GloVe); the other rows keep the random initialisation and are learned.
    """

    def __init__(self, vocab_size, bits, num_labels, hidden=4096, feature_dim=512,
                 scales=(50, 30, 15, 10, 5), max_tokens=32, token_dim=300, dropout=0.0,
                 tag_dropout=0.0, encoder="bow", normalizer=None, batch_norm=False,
                 attention_dim=None, word_vectors=None, word_found=None, **kwargs):
        kwargs.setdefault("name", "txtnet")
        super().__init__(**kwargs)
        self.vocab_size, self.bits, self.num_labels = int(vocab_size), int(bits), int(num_labels)
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if encoder not in ("bow", "dense"):
            raise ValueError(f"text encoder must be bow or dense, got {encoder!r}")
        self.encoder = encoder
        self.max_tokens = min(int(max_tokens), self.vocab_size)
        self.normalizer = normalizer  # fitted on the training rows (models/normalization.py)
        # The multi-scale fusion pools neighbouring vocabulary columns: meaningful for a
        # bag of words, not for the coordinates of a dense vector.
        self.fusion = (MultiScaleFusion(vocab_size, scales, name="fusion")
                       if scales and encoder == "bow" else None)
        # hidden=0: no hidden layer, the (normalised) text feeds the feature layer directly,
        # closer to a linear classifier of the tags; an option for sparse bags of words
        # (docs/training.md, Recipe: dense 10-d text needs the hidden layer).
        hidden = int(hidden)
        if hidden < 0:
            raise ValueError(f"TxtNet hidden width must be >= 0 (0: none), got {hidden}")
        self.hidden = HiddenLayer(hidden, batch_norm, name="hidden") if hidden else None
        self.dropout = keras.layers.Dropout(dropout) if dropout else None
        if not 0.0 <= float(tag_dropout) < 1.0:
            raise ValueError(f"tag dropout must be in [0, 1), got {tag_dropout}")
        self.tag_dropout = float(tag_dropout) if encoder == "bow" else 0.0
        # The mask's RNG, named, with its state a direct attribute: tf.train.Checkpoint does
        # not look inside a SeedGenerator, and a resumed run must draw the masks it would have.
        self.tag_drop_rng = (keras.random.SeedGenerator(name="tag_dropout_rng")
                             if self.tag_dropout else None)
        if self.tag_drop_rng is not None:
            self.tag_drop_state = self.tag_drop_rng.state
        self.feature = keras.layers.Dense(feature_dim, activation="relu", name="feature")
        self.heads = HashAndLabelHeads(bits, num_labels, name="heads")
        self.embedding = (keras.layers.Embedding(vocab_size, token_dim, name="tag_embedding")
                          if encoder == "bow" else
                          keras.layers.Dense(token_dim, name="text_token"))
        self.token_proj = (keras.layers.Dense(attention_dim, name="token_proj")
                           if attention_dim else None)
        self._word_init = None
        if word_vectors is not None:
            if encoder != "bow":
                raise ValueError("word vectors initialise the tag embedding of a bag of words; "
                                 "dense text has no words")
            vectors = np.asarray(word_vectors, np.float32)
            found = (np.ones(len(vectors), bool) if word_found is None
                     else np.asarray(word_found, bool))
            if vectors.shape != (self.vocab_size, int(token_dim)) or found.shape != (len(vectors),):
                raise ValueError(f"word vectors must be ({self.vocab_size}, {token_dim}) with a "
                                 f"({self.vocab_size},) found mask, got {vectors.shape} and "
                                 f"{found.shape}")
            self._word_init = (vectors, found)

    def build(self, input_shape):
        if self._word_init is not None and not self.embedding.built:
            self.embedding.build((None, self.max_tokens))
            vectors, found = self._word_init
            initial = np.array(self.embedding.embeddings.numpy())
            initial[found] = vectors[found]
            self.embedding.embeddings.assign(initial)

    def tokens(self, bow):
        """(tokens (n, M, token_dim), mask (n, M) bool) of the present tags.

        Dense text has no words: it is one token, a learned projection of the normalised
        vector (build_models skips the attention for it: models.attention_mode).
        """
        if self.encoder == "dense":
            token = self.embedding(bow)[:, None, :]
            if self.token_proj is not None:
                token = self.token_proj(token)
            return token, tf.ones(tf.shape(token)[:2], tf.bool)
        values, index = tf.math.top_k(bow, k=self.max_tokens, sorted=True)
        mask = values > 0
        tokens = self.embedding(index)
        if self.token_proj is not None:
            tokens = self.token_proj(tokens)
        return tokens * tf.cast(mask, tokens.dtype)[:, :, None], mask

    def drop_tags(self, bow):
        """The bag of words with each entry zeroed with probability tag_dropout (training
        steps only): whole tags, not rescaled, so a dropped tag reads as absent, as a tag
        training never saw does on other rows. Unchanged without tag dropout."""
        if self.tag_drop_rng is None:
            return bow
        keep = keras.random.uniform(tf.shape(bow), seed=self.tag_drop_rng) >= self.tag_dropout
        return bow * tf.cast(keep, bow.dtype)

    def call(self, bow, training=False):
        bow = tf.cast(bow, self.compute_dtype)
        if bow.shape[-1] != self.vocab_size:
            raise ValueError(f"TxtNet expects a bag-of-words of width {self.vocab_size}, "
                             f"got shape {bow.shape}")
        if training:
            bow = self.drop_tags(bow)
        words = bow  # tokens are the present tags of the raw bag of words
        if self.normalizer is not None:
            words = self.normalizer.hold(bow)  # never a tag no training text had
            bow = tf.cast(self.normalizer(bow), self.compute_dtype)
        x = self.fusion(bow) if self.fusion is not None else bow
        if self.hidden is not None:
            x = self.hidden(x, training=training)
        if self.dropout is not None:
            x = self.dropout(x, training=training)
        x = self.feature(x)
        hash_, label_pred = self.heads(x)
        tokens, mask = self.tokens(words if self.encoder == "bow" else bow)
        return {"feature": x, "hash": hash_, "label_pred": label_pred,
                "tokens": tokens, "token_mask": mask}
