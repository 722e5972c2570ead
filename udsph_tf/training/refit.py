"""--refit: once validation has chosen the number of epochs E, train again from scratch on
every training row (the validation rows too) for E epochs; that model is the run's.

Why: where the database holds the training rows (small single-label benchmarks train on their
whole database), the validation rows are database rows that the selected model never trained
on, and it codes them far worse than the rows it did (docs/training.md, Refit). The refit is
the run of `--num_val=0 --epochs=E --patience=0` with the same seed and schedule, kept in
<workdir>/refit (a run directory of its own: resumable, with its own run.json and history).
"""

import collections
import sys

import keras

from udsph_tf import rundir
from udsph_tf.config import replace
from udsph_tf.data.splits import with_num_val
from udsph_tf.training.task import Task
from udsph_tf.training.trainer import Trainer

# The refit's Task, checkpoint and history (test() reads the run's model from it).
RefitModel = collections.namedtuple("RefitModel", "task ckpt history")


def refit_config(config, epochs):
    """The refit's config: every training row, `epochs` epochs, no stopping, in refit/."""
    return replace(config, workdir=rundir.path(config.workdir, rundir.REFIT_DIR), num_val=0,
                   epochs=int(epochs), patience=0, refit=False)


def skip_reason(split, best_epoch):
    """Why a --refit run has nothing to refit, else None."""
    if len(split.val_idx) == 0:
        return "no validation split, so the run already trained on every training row"
    if best_epoch < 1:
        return "no epoch was selected"
    return None


def make_refit_task(task, best_epoch, training=True):
    """The refit's Task on the selection's data, seeded as a fresh run with that config."""
    config = refit_config(task.config, best_epoch)
    keras.utils.set_random_seed(config.seed)
    return Task(config, task.strategy, task.data, with_num_val(task.split, 0), task.raw,
                training=training, announce=False)


def make_refit_trainer(trainer):
    """After trainer.run(): the refit phase's Trainer (resuming from refit/ when there is
    one), or None when there is nothing to refit (said on stderr)."""
    best_epoch = int(trainer.ckpt.best_epoch)
    reason = skip_reason(trainer.task.split, best_epoch)
    if reason:
        _log(f"--refit: nothing to refit ({reason})")
        return None
    refit = Trainer(make_refit_task(trainer.task, best_epoch))
    refit.phase_name = "refit "
    _log(f"refit: training again from scratch on all {len(refit.task.split.train_idx)} "
         f"training rows (validation rows included) for the selected {best_epoch} epochs, in "
         f"{refit.config.workdir}")
    return refit


def _log(msg):
    print(msg, file=sys.stderr, flush=True)
