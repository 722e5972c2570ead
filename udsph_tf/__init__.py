"""udsph-tf: UDSPH cross-modal hashing (image <-> text) in TensorFlow/Keras.

Importing the package is cheap: TensorFlow is only imported by the modules that need it
(models, training, export), so `udsph_tf.evaluation` and `udsph_tf.retrieval` stay numpy-only.
"""

__version__ = "0.1.0"
