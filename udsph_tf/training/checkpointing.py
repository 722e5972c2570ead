"""One tf.train.Checkpoint of the whole run, a manager for the latest and one for the best.

TensorFlow writes each checkpoint's data under temporary names and renames them, and the
manager rewrites its `checkpoint` index file atomically (temp file + rename), so a run killed
at any moment (even SIGKILL) leaves the previous checkpoints intact and readable.
"""

import os

import tensorflow as tf

LATEST_DIR = "ckpt"
BEST_DIR = "best"


class RunCheckpoint:
    """The run's state: step, epoch, best validation score, split seed, networks, optimizers
    and code/feature buffers, saved together so a resume restores all of it at once."""

    def __init__(self, save_root, models, optimizers, buffers, split_seed, keep=3):
        if keep < 1:
            raise ValueError(f"keep_checkpoints must be >= 1, got {keep}")
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.best_score = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_score")
        self.best_epoch = tf.Variable(-1, dtype=tf.int64, trainable=False, name="best_epoch")
        self.split_seed = tf.Variable(int(split_seed), dtype=tf.int64, trainable=False,
                                      name="split_seed")
        tracked = dict(step=self.step, epoch=self.epoch, best_score=self.best_score,
                       best_epoch=self.best_epoch, split_seed=self.split_seed)
        tracked.update({f"model_{k}": v for k, v in models.items() if v is not None})
        tracked.update({f"opt_{k}": v for k, v in optimizers.items()})
        tracked.update({f"buf_{k}": v for k, v in buffers.items()})
        self.checkpoint = tf.train.Checkpoint(**tracked)
        self.latest = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(save_root, LATEST_DIR), max_to_keep=keep)
        self.best = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(save_root, BEST_DIR), max_to_keep=1,
            checkpoint_name="best")

    def restore_latest(self):
        """Restore the newest checkpoint if any; returns its path or None (fresh start)."""
        path = self.latest.latest_checkpoint
        if path:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        return path

    def restore_best(self):
        """Restore the selected (best validation) checkpoint; raise if there is none."""
        path = self.best.latest_checkpoint
        if not path:
            raise FileNotFoundError(
                f"no selected checkpoint in {self.best.directory!r}: train first "
                "(--mode=train with the same --workdir)")
        self.checkpoint.restore(path).assert_existing_objects_matched()
        return path

    def save_latest(self):
        return self.latest.save(checkpoint_number=int(self.step.numpy()))

    def save_best(self):
        return self.best.save(checkpoint_number=int(self.step.numpy()))
