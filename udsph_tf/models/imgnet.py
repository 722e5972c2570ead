"""ImgNet: image features (global or regions) -> semantic feature, hash code, labels, regions."""

import keras

from udsph_tf.models.image_input import FeatureInput
from udsph_tf.models.labnet import HashAndLabelHeads, HiddenLayer


class ImgNet(keras.Model):
    """image -> (regions, pooled) -> hidden ReLU -> feature ReLU -> hash tanh, labels sigmoid.

    `image_input` turns the input into regions (n, R, d) and a pooled vector (see
    image_input.py); by default a FeatureInput built from the first call's feature shape, so
    a (n, D) global vector (one region) and (n, R, d) region features both work.
    `attention_dim` (set by build_models when the attention is on) gives ImgNet a learned
    linear per-region projection into the attention space (SCAN's image fc layer), so the
    attention loss trains ImgNet; `region_dim` puts a per-region ReLU layer of that width
    before it. With neither, the input regions come out unchanged.
    """

    def __init__(self, bits, num_labels, hidden=4096, feature_dim=512, dropout=0.0,
                 region_dim=None, image_input=None, normalizer=None, batch_norm=False,
                 attention_dim=None, **kwargs):
        kwargs.setdefault("name", "imgnet")
        super().__init__(**kwargs)
        self.bits, self.num_labels = int(bits), int(num_labels)
        self.image_input = image_input
        # Feature inputs only: fitted on the training rows (models/normalization.py).
        self.normalizer = normalizer
        self.hidden = HiddenLayer(hidden, batch_norm, name="hidden")
        self.dropout = keras.layers.Dropout(dropout) if dropout else None
        self.feature = keras.layers.Dense(feature_dim, activation="relu", name="feature")
        self.heads = HashAndLabelHeads(bits, num_labels, name="heads")
        self.region_layer = (keras.layers.Dense(region_dim, activation="relu", name="regions")
                             if region_dim else None)
        self.region_proj = (keras.layers.Dense(attention_dim, name="region_proj")
                            if attention_dim else None)

    def build(self, input_shape):
        if self.image_input is None:
            # Made at build time so ImgNet(bits, C) works on any precomputed feature shape.
            self.image_input = FeatureInput(tuple(input_shape)[1:], name="image_input")

    def call(self, images, training=False):
        if self.normalizer is not None:
            images = self.normalizer(images)
        regions, pooled = self.image_input(images, training=training)
        x = self.hidden(pooled, training=training)
        if self.dropout is not None:
            x = self.dropout(x, training=training)
        x = self.feature(x)
        hash_, label_pred = self.heads(x)
        if self.region_layer is not None:
            regions = self.region_layer(regions)
        if self.region_proj is not None:
            regions = self.region_proj(regions)
        return {"feature": x, "hash": hash_, "label_pred": label_pred, "regions": regions}
