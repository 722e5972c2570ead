"""A network's outputs on many rows, in batches through one traced graph; sign -> codes in-graph."""

import numpy as np
import tensorflow as tf

ENCODE_BATCH = 1024


def sign_codes(hash_, dtype=tf.int8):
    """+-1 codes of hash outputs in-graph: sign with 0 -> +1, the rule of the numpy side
    (udsph_tf.codes.to_codes), so SavedModels, the code target B and evaluation agree."""
    return tf.where(hash_ >= 0, tf.constant(1, dtype), tf.constant(-1, dtype))


class Encoder:
    """`encoder(x) -> {name: numpy array}`: outputs `outputs` of `fn` on all rows of x, in
    batches. The one batched-encoding loop (training's buffers and evaluation, export's code
    databases, search's queries).

    fn: batch -> dict of tensors, traced once as a tf.function (reduce_retracing: the last,
    shorter batch traces no second graph) unless trace=False (a loaded SavedModel signature is
    a graph already); prepare: numpy batch -> fn's input (default: a float32 tensor; raw-image
    training normalises pixels here); batch_size: rows a call (raw images need far fewer).
    """

    def __init__(self, fn, outputs=("hash",), prepare=None, batch_size=ENCODE_BATCH,
                 trace=True):
        self.outputs = tuple(outputs)
        self.prepare = prepare or (lambda b: tf.constant(np.asarray(b, np.float32)))
        self.batch_size = int(batch_size)
        names = self.outputs

        def forward(batch):
            out = fn(batch)
            return {name: out[name] for name in names}
        self._forward = tf.function(forward, reduce_retracing=True) if trace else forward

    @classmethod
    def of_model(cls, model, outputs=("hash",), **kwargs):
        """A Keras network in inference mode."""
        return cls(lambda batch: model(batch, training=False), outputs, **kwargs)

    def __call__(self, x):
        if len(x) == 0:
            raise ValueError("nothing to encode: 0 rows")
        parts = {name: [] for name in self.outputs}
        for i in range(0, len(x), self.batch_size):
            out = self._forward(self.prepare(x[i:i + self.batch_size]))
            for name in self.outputs:
                parts[name].append(out[name].numpy())
        return {name: np.concatenate(p) for name, p in parts.items()}
