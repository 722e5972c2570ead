"""The alternating epoch loop: train, validate, keep the best checkpoint, record the history."""

import dataclasses
import math
import os
import shutil
import sys
import time

import numpy as np

from udsph_tf import rundir
from udsph_tf.codes import to_codes
from udsph_tf.evaluation import collapse_stats, mean_average_precision
from udsph_tf.files import write_json
from udsph_tf.progress import Progress
from udsph_tf.training import schedule
from udsph_tf.training.checkpointing import RunCheckpoint
from udsph_tf.training.strategy import is_chief, worker_dir
from udsph_tf.training.summaries import Summaries


class TrainingDiverged(FloatingPointError):
    """A loss became NaN/inf; the run stops and keeps its last good checkpoint."""


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


class Trainer:
    """Owns the loop around a Task (training/task.py): the global step, the checkpoints
    (ckpt/ every epoch, best/ on a better validation score), summaries and history.json."""

    def __init__(self, task):
        self.task = task
        self.config = config = task.config
        self.chief = is_chief(task.strategy)
        self.phases = schedule.epoch_phases(config)
        self.save_root = worker_dir(config.workdir, task.strategy)
        self.ckpt = RunCheckpoint(self.save_root, task.models, task.optimizers, task.buffers,
                                  task.split.seed, keep=config.keep_checkpoints)
        self.summaries = Summaries(config.workdir, enabled=self.chief)
        self.phase_name = ""  # "refit " for the --refit phase's Trainer (its log lines)
        # (iterator, the epoch it is at): one input pipeline for all of run()'s epochs; and
        # its set-up seconds, reported with the next epoch trained.
        self._batches = None
        self._input_seconds = 0.0

    def train_epoch(self, epoch):
        """One epoch of the alternating schedule; returns mean logged losses per network."""
        c, task = self.config, self.task
        rates = task.set_learning_rates(epoch)
        bar = Progress(len(self.phases) * task.steps_per_pass,
                       f"{self.phase_name}epoch {epoch + 1}/{c.epochs}",
                       enabled=c.progress and self.chief)
        sums, seconds = {}, {}
        iterator = None
        if self.phases:
            if self._batches is None or self._batches[1] != epoch:
                self.start_input(epoch, epoch + 1)
            iterator = self._batches[0]
        for phase in self.phases:
            started = time.perf_counter()
            step_fn = task.steps.step(phase.network)
            for _ in range(task.steps_per_pass):
                logs = step_fn(next(iterator))
                self.ckpt.step.assign_add(1)
                logs = {k: float(v) for k, v in logs.items()}
                bad = {k: v for k, v in logs.items() if not math.isfinite(v)}
                if bad:
                    bar.close()
                    raise TrainingDiverged(
                        f"{phase.network} loss is not finite at step {int(self.ckpt.step)} "
                        f"(epoch {epoch + 1}): {bad}; stopping, the last good checkpoint "
                        f"{self.ckpt.latest.latest_checkpoint or '(none yet)'} is kept")
                acc = sums.setdefault(phase.network, {})
                for k, v in logs.items():
                    acc[k] = acc.get(k, 0.0) + v
                acc["_n"] = acc.get("_n", 0) + 1
                bar.update(1, **{phase.network: logs["total"]})
            seconds[phase.network] = (seconds.get(phase.network, 0.0)
                                      + time.perf_counter() - started)
        bar.close()
        self._batches = (iterator, epoch + 1)
        started = time.perf_counter()
        task.refresh_codes()
        # Where the epoch's time went (history.json): setting up the input (at the first
        # epoch of a session), each network's steps, the B refresh.
        self.epoch_seconds = {"input_seconds": round(self._input_seconds, 3),
                              "step_seconds": {k: round(v, 3) for k, v in seconds.items()},
                              "refresh_seconds": round(time.perf_counter() - started, 3)}
        self._input_seconds = 0.0
        means = {net: {k: v / acc["_n"] for k, v in acc.items() if k != "_n"}
                 for net, acc in sums.items()}
        step = int(self.ckpt.step)
        self.summaries.scalars("train", {f"loss/{net}/{k}": v for net, comps in means.items()
                                         for k, v in comps.items()}, step)
        self.summaries.scalars("train", {f"learning_rate/{k}": v for k, v in rates.items()}, step)
        b = task.buffers["B"].numpy()
        self.summaries.histograms("train", {"codes/B_bit_mean": b.mean(0)}, step)
        return means

    def start_input(self, first, stop):
        """One input pipeline for epochs first..stop-1 (every pass's shuffle seed from the run
        seed, the epoch and the pass: a resumed epoch replays its batches)."""
        started = time.perf_counter()
        seeds = [schedule.data_seed(self.config.seed, epoch, number)
                 for epoch in range(first, stop) for number in range(len(self.phases))]
        self._batches = (iter(self.task.schedule_dataset(seeds)), first)
        self._input_seconds += time.perf_counter() - started

    def validate(self):
        """Validation MAPs (model selection); never touches the query set."""
        s, d = self.task.split, self.task.data
        if len(s.val_idx) == 0:
            return None
        retrieval = np.setdiff1d(s.database_idx, s.val_idx)
        hv_q, ht_q = self.task.encode(s.val_idx)
        hv_r, ht_r = self.task.encode(retrieval)
        ql, rl = d.labels[s.val_idx], d.labels[retrieval]
        dv, dt = to_codes(hv_r), to_codes(ht_r)
        i2t = float(mean_average_precision(to_codes(hv_q), dt, ql, rl))
        t2i = float(mean_average_precision(to_codes(ht_q), dv, ql, rl))
        return {"map_i2t": i2t, "map_t2i": t2i, "score": (i2t + t2i) / 2,
                "n_queries": int(len(s.val_idx)), "n_retrieval": int(len(retrieval)),
                "codes": {"image": collapse_stats(dv, rl), "text": collapse_stats(dt, rl)}}

    def run(self):
        """Train from the last checkpoint (or from scratch) to config.epochs, keeping the best
        validation checkpoint in best/; returns the history (one entry per epoch)."""
        c = self.config
        if self.chief:  # export/search rebuild the networks with the same input handling
            write_json(rundir.path(c.workdir, rundir.INPUTS_FILE), self.task.input_spec)
        restored = self.ckpt.restore_latest()
        if restored:
            if int(self.ckpt.split_seed) != self.task.split.seed:
                raise ValueError(f"{restored} was trained with split seed "
                                 f"{int(self.ckpt.split_seed)} but this run uses "
                                 f"{self.task.split.seed}: use another --workdir")
            _log(f"resuming from {restored} (epoch {int(self.ckpt.epoch)})")
        else:
            self.task.fill_buffers()
            self.summaries.hparams(dataclasses.asdict(c))
        history = rundir.read_history(c.workdir)
        if int(self.ckpt.epoch) < c.epochs and self.phases:
            self.start_input(int(self.ckpt.epoch), c.epochs)
        for epoch in range(int(self.ckpt.epoch), c.epochs):
            best = int(self.ckpt.best_epoch)
            if schedule.patience_spent(c, epoch, best):
                _log(f"stopping after epoch {epoch} of {c.epochs}: validation has not beaten "
                     f"{float(self.ckpt.best_score):.4f} (epoch {best}) in {c.patience} "
                     f"evaluations (--patience={c.patience}; 0 trains every epoch)")
                break
            t0 = time.time()
            means = self.train_epoch(epoch)
            entry = {"epoch": epoch + 1, "step": int(self.ckpt.step),
                     "seconds": round(time.time() - t0, 3),
                     "loss": {net: comps["total"] for net, comps in means.items()},
                     **self.epoch_seconds}
            self.ckpt.epoch.assign(epoch + 1)
            last = epoch + 1 == c.epochs
            if (epoch + 1) % max(c.eval_every, 1) == 0 or last:
                started = time.perf_counter()
                val = self.validate()
                entry["validation_seconds"] = round(time.perf_counter() - started, 3)
                if val is not None:
                    entry["val"] = val
                    self.summaries.scalars("eval", {"val/map_i2t": val["map_i2t"],
                                                    "val/map_t2i": val["map_t2i"]},
                                           int(self.ckpt.step))
                    self.summaries.scalars("eval", {
                        f"val_codes/{side}_{k}": v for side, st in val["codes"].items()
                        for k, v in st.items() if k != "collapsed"}, int(self.ckpt.step))
                    if val["score"] > float(self.ckpt.best_score):
                        self.ckpt.best_score.assign(val["score"])
                        self.ckpt.best_epoch.assign(epoch + 1)
                        self.ckpt.save_best()
                elif last:
                    # No validation split: the selected model is the last one; said in metrics.
                    self.ckpt.best_epoch.assign(epoch + 1)
                    self.ckpt.save_best()
            history = [h for h in history if h["epoch"] < epoch + 1] + [entry]
            # history.json first: a kill right after the checkpoint is named must not resume
            # without this epoch's entry (its checkpoint time is the best/ write so far).
            history_file = rundir.path(c.workdir, rundir.HISTORY_FILE)
            entry["checkpoint_seconds"] = self.ckpt.take_write_seconds()
            if self.chief:
                write_json(history_file, history)
            self.ckpt.save_latest()
            entry["checkpoint_seconds"] += self.ckpt.take_write_seconds()  # + ckpt/ write
            if self.chief:
                write_json(history_file, history)
            _log(f"{self.phase_name}epoch {epoch + 1}/{c.epochs}: " + " ".join(
                f"{net}={v:.4g}" for net, v in entry["loss"].items())
                + (f" val MAP i2t={entry['val']['map_i2t']:.4f} t2i={entry['val']['map_t2i']:.4f}"
                   if "val" in entry else ""))
        self.summaries.flush()  # the test writes its figures next (modes/evaluate.py)
        return history

    def cleanup(self):
        """A non-chief worker's throw-away checkpoint folder goes once the run is over."""
        if not self.chief and os.path.isdir(self.save_root):
            shutil.rmtree(self.save_root, ignore_errors=True)
