"""The modality discriminator of SSAH: is a 512-d feature LabNet's (real) or a modality's (fake)?"""

import keras


class Discriminator(keras.Model):
    """features (n, feature_dim) -> hidden ReLU layers (SSAH: 512, 256) -> (n, 1) logits.

    Logits, not probabilities: the losses use the stable sigmoid cross-entropy on logits.
    """

    def __init__(self, hidden=(512, 256), **kwargs):
        kwargs.setdefault("name", "discriminator")
        super().__init__(**kwargs)
        self.hidden_layers = [keras.layers.Dense(int(h), activation="relu", name=f"hidden{i}")
                              for i, h in enumerate(hidden)]
        # tf.train.Checkpoint does not look inside Keras 3 lists: name each layer as well.
        for i, layer in enumerate(self.hidden_layers):
            setattr(self, f"hidden{i}", layer)
        # float32 logits under mixed precision: the cross-entropy saturates early in float16.
        self.logit = keras.layers.Dense(1, dtype="float32", name="logit")

    def call(self, features, training=False):
        x = features
        for layer in self.hidden_layers:
            x = layer(x)
        return self.logit(x)
