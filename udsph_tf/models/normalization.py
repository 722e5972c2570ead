"""Input normalisation fitted on the training rows and kept as model variables.

The statistics are non-trainable weights of the network that uses them, so they are saved in
every checkpoint and applied inside the exported SavedModels: serving sees the same inputs as
training and evaluation.
"""

import keras
import numpy as np
import tensorflow as tf

NORMS = ("none", "standard", "l2", "l2_standard")
_EPS = 1e-6


def _l2_rows(x, axis=-1):
    return x / (np.linalg.norm(x, axis=axis, keepdims=True) + _EPS)


class InputNormalizer(keras.layers.Layer):
    """x -> (pre(x) - mean) / std over the last axis.

    mode: none (identity); standard (z-score per column); l2 (each row to unit length);
    l2_standard (unit rows, then z-score). Statistics are set by `fit` on the training rows
    (rank-3 region inputs pool their regions); constant columns keep std 1, so they map to 0.
    """

    def __init__(self, mode, dim, hold_constant=False, **kwargs):
        super().__init__(**kwargs)
        if mode not in NORMS:
            raise ValueError(f"normalisation must be one of {NORMS}, got {mode!r}")
        self.mode, self.dim = mode, int(dim)
        self.mean = self.add_weight(shape=(self.dim,), initializer="zeros", trainable=False,
                                    name="mean")
        self.std = self.add_weight(shape=(self.dim,), initializer="ones", trainable=False,
                                   name="std")
        # --hold_constant_columns: a column constant on the training rows (a tag no training
        # text has) gave its first-layer weights no gradient, so any other value at test time
        # only adds untrained weights to the hidden layer; it is held at its training value.
        self.hold_constant = bool(hold_constant)
        if self.hold_constant:
            self.varies = self.add_weight(shape=(self.dim,), initializer="ones",
                                          trainable=False, name="varies")
            self.fill = self.add_weight(shape=(self.dim,), initializer="zeros",
                                        trainable=False, name="fill")

    def _pre(self, x, l2):
        return l2(x) if self.mode in ("l2", "l2_standard") else x

    def fit(self, x):
        """Set mean/std from training rows (numpy, (n, dim) or (n, R, dim)); returns self."""
        x = np.asarray(x, np.float64)
        if x.shape[-1] != self.dim:
            raise ValueError(f"normaliser built for width {self.dim}, got rows of shape "
                             f"{x.shape[1:]}")
        if self.hold_constant:
            flat = x.reshape(-1, self.dim)
            self.varies.assign((flat.max(0) > flat.min(0)).astype(np.float32))
            self.fill.assign(flat[0].astype(np.float32))  # the constant, where it is one
        if self.mode in ("standard", "l2_standard"):
            z = self._pre(x, _l2_rows).reshape(-1, self.dim)
            std = z.std(0)
            self.mean.assign(z.mean(0).astype(np.float32))
            self.std.assign(np.where(std > _EPS, std, 1.0).astype(np.float32))
        return self

    def hold(self, x):
        """x with the columns constant on the training rows set to their training value."""
        if not self.hold_constant:
            return x
        varies = tf.cast(self.varies, x.dtype)
        return x * varies + tf.cast(self.fill, x.dtype) * (1 - varies)

    def call(self, x):
        if self.mode == "none":
            return self.hold(x)
        x = self.hold(tf.cast(x, tf.float32))
        x = self._pre(x, lambda v: v / (tf.norm(v, axis=-1, keepdims=True) + _EPS))
        if self.mode == "l2":
            return x
        return (x - self.mean) / self.std


def resolve_image_norm(mode):
    """--image_norm auto: z-score per column (dense CNN features, histograms and embeddings
    alike; an MLP with Adam wants centred inputs of unit scale whatever the source)."""
    return "standard" if mode == "auto" else mode


def resolve_text_encoder(mode, tags):
    """--text_encoder auto: dense when the training text has negative values or more than half
    of its entries are non-zero (topic proportions, tf-idf of short vocabularies, sentence
    embeddings); else bow (sparse binary or count bags of words, SSAH's multi-scale front-end).
    """
    if mode != "auto":
        return mode
    tags = np.asarray(tags)
    if (tags < 0).any() or np.count_nonzero(tags) > 0.5 * tags.size:
        return "dense"
    return "bow"


def resolve_text_norm(mode, encoder):
    """--text_norm auto: z-score for dense text; none for a bag of words (0/1 or counts)."""
    if mode != "auto":
        return mode
    return "standard" if encoder == "dense" else "none"
