"""udsph-tf: UDSPH cross-modal hashing (image <-> text) in TensorFlow/Keras.

Importing the package is cheap: TensorFlow is only imported by the modules that need it
(data.images/pipeline, models, training, export, modes), so `udsph_tf.evaluation` and
`udsph_tf.retrieval` stay numpy-only. `main.py` runs `udsph_tf.modes.run(config)`; README
"Layout" maps the packages.
"""

__version__ = "0.1.0"
