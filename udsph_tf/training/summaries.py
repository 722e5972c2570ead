"""TensorBoard writers (`train/`, `eval/` under the workdir); the only module that calls
tf.summary."""

import os

import numpy as np
import tensorflow as tf


class Summaries:
    """One file writer per split; a no-op on non-chief workers (they must not write)."""

    SPLITS = ("train", "eval")

    def __init__(self, workdir, enabled=True):
        self.enabled = enabled
        self._writers = {}
        if enabled:
            for split in self.SPLITS:
                self._writers[split] = tf.summary.create_file_writer(os.path.join(workdir, split))

    def _writer(self, split):
        if split not in self.SPLITS:
            raise ValueError(f"unknown summary split {split!r}; expected one of {self.SPLITS}")
        return self._writers.get(split)

    def scalars(self, split, values, step):
        w = self._writer(split)
        if w is None:
            return
        with w.as_default(step=int(step)):
            for tag, value in values.items():
                tf.summary.scalar(tag, float(value))

    def histograms(self, split, values, step):
        w = self._writer(split)
        if w is None:
            return
        with w.as_default(step=int(step)):
            for tag, value in values.items():
                tf.summary.histogram(tag, np.asarray(value))

    def pr_curve(self, split, tag, tp, fp, tn, fn, step, description=""):
        """A PR curve in the pr_curve plugin's format, written from TF2.

        The plugin's own ops are TF1-only; its data format is a [6, T] float tensor of
        [tp, fp, tn, fn, precision, recall] (one column per threshold) plus plugin metadata.
        """
        w = self._writer(split)
        if w is None:
            return
        from tensorboard.plugins.pr_curve import metadata as pr_metadata
        tp, fp, tn, fn = (np.asarray(a, np.float64) for a in (tp, fp, tn, fn))
        if not tp.shape == fp.shape == tn.shape == fn.shape or tp.ndim != 1:
            raise ValueError(f"pr_curve {tag!r}: tp/fp/tn/fn must be 1-D of one length, got "
                             f"{tp.shape}, {fp.shape}, {tn.shape}, {fn.shape}")
        precision = tp / np.maximum(tp + fp, 1e-12)
        recall = tp / np.maximum(tp + fn, 1e-12)
        data = np.stack([tp, fp, tn, fn, precision, recall]).astype(np.float32)
        meta = pr_metadata.create_summary_metadata(display_name=tag, description=description,
                                                   num_thresholds=data.shape[1])
        with w.as_default(step=int(step)):
            tf.summary.write(tag, tf.constant(data), step=int(step), metadata=meta)

    def hparams(self, values):
        """Record the run's hyperparameters (HParams plugin) in the train writer."""
        w = self._writer("train")
        if w is None:
            return
        from tensorboard.plugins.hparams import api as hp
        clean = {k: (v if isinstance(v, (bool, int, float, str)) else str(v))
                 for k, v in values.items()}
        with w.as_default(step=0):
            hp.hparams(clean)

    def flush(self):
        for w in self._writers.values():
            w.flush()

    def close(self):
        """Flush and close the writers (end of the loop, end of the test)."""
        for w in self._writers.values():
            w.close()
