"""LabNet: SSAH's self-supervised label network, labels -> semantic feature, hash code, labels."""

import keras


class HashAndLabelHeads(keras.layers.Layer):
    """The two heads shared by every network: K tanh hash outputs and C sigmoid label scores.

    Both heads stay float32 under a mixed-precision policy: tanh codes near +-1 and the
    pairwise terms built on them lose too much in float16.
    """

    def __init__(self, bits, num_labels, **kwargs):
        super().__init__(**kwargs)
        self.hash_dense = keras.layers.Dense(bits, activation="tanh", dtype="float32",
                                             name="hash")
        self.label_dense = keras.layers.Dense(num_labels, activation="sigmoid",
                                              dtype="float32", name="label")

    def call(self, feature):
        return self.hash_dense(feature), self.label_dense(feature)


class HiddenLayer(keras.layers.Layer):
    """Dense -> ReLU, with optional batch normalisation before the ReLU (--batch_norm)."""

    def __init__(self, units, batch_norm=False, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(units, activation=None if batch_norm else "relu",
                                        use_bias=not batch_norm, name="dense")
        self.norm = keras.layers.BatchNormalization(name="bn") if batch_norm else None

    @property
    def kernel(self):
        return self.dense.kernel

    def call(self, x, training=False):
        x = self.dense(x)
        if self.norm is None:
            return x
        return keras.activations.relu(self.norm(x, training=training))


class LabNet(keras.Model):
    """L (n, C) -> hidden ReLU -> feature (n, feature_dim) ReLU -> hash (n, K) tanh, labels."""

    def __init__(self, num_labels, bits, hidden=4096, feature_dim=512, **kwargs):
        kwargs.setdefault("name", "labnet")
        super().__init__(**kwargs)
        self.num_labels, self.bits = int(num_labels), int(bits)
        self.hidden = keras.layers.Dense(hidden, activation="relu", name="hidden")
        self.feature = keras.layers.Dense(feature_dim, activation="relu", name="feature")
        self.heads = HashAndLabelHeads(bits, num_labels, name="heads")

    def call(self, labels, training=False):
        x = self.feature(self.hidden(labels))
        hash_, label_pred = self.heads(x)
        return {"feature": x, "hash": hash_, "label_pred": label_pred}
