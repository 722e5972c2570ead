"""`--mode=eval`: test MAP of the selected checkpoint again; `test`, the one final test of a
run (also called by modes/train.py), writes metrics.json, curves and eval summaries."""

import dataclasses
import os
import sys

import keras
import tensorflow as tf

from udsph_tf import rundir, run_identity
from udsph_tf.codes import to_codes
from udsph_tf.evaluation import mean_average_precision, plot_curves
from udsph_tf.evaluation import report
from udsph_tf.files import write_json
from udsph_tf.training import schedule
from udsph_tf.training.checkpointing import RunCheckpoint, model_root
from udsph_tf.training.refit import RefitModel, make_refit_task
from udsph_tf.training.strategy import is_chief, make_strategy, worker_dir
from udsph_tf.training.summaries import Summaries
from udsph_tf.training.task import Task


def run(config):
    return evaluate(config)


def evaluate(config, strategy=None, data=None, split=None, image_size=None):
    """Test MAP on the query set with the selected checkpoint in config.workdir, on the run's
    recorded model, data and split (run.json); a missing run creates nothing. Builds the
    networks only (no optimizer, no buffer)."""
    from udsph_tf.modes.train import prepare_data  # train imports this module's test()
    config = run_identity.evaluation_config(config)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)
    strategy = strategy or make_strategy(config.num_replicas)
    data, split, raw = prepare_data(config, data, split, image_size)
    run_identity.check_data(config, data, split)
    task = Task(config, strategy, data, split, raw, training=False)
    ckpt = RunCheckpoint(worker_dir(config.workdir, strategy), task.models, {}, {},
                         split.seed, keep=config.keep_checkpoints)
    refit = None
    if model_root(config.workdir) != config.workdir:  # a finished --refit phase
        ckpt.restore_best()  # its best_epoch is the refit's number of epochs
        refit_task = make_refit_task(task, int(ckpt.best_epoch), training=False)
        refit = RefitModel(refit_task, RunCheckpoint(
            worker_dir(refit_task.config.workdir, strategy), refit_task.models, {}, {},
            split.seed, keep=config.keep_checkpoints),
            rundir.read_history(refit_task.config.workdir))
    return test(task, ckpt, rundir.read_history(config.workdir), refit=refit)


def encode_codes(task, split):
    """The +-1 query and database codes of both modalities with task's networks."""
    hv_q, ht_q = task.encode(split.query_idx)
    hv_db, ht_db = task.encode(split.database_idx)
    return {"image_query": to_codes(hv_q), "text_query": to_codes(ht_q),
            "image_database": to_codes(hv_db), "text_database": to_codes(ht_db)}


def test(task, ckpt, history, train_seconds=None, summaries=None, refit=None):
    """MAP on the query set (once) with the run's model: the selected checkpoint (restored
    into task's networks through `ckpt`), or with --refit the refit's (a RefitModel; the
    selected model's test MAP is then recorded beside it, to show what the refit changes).
    Writes metrics.json, the curves and eval summaries (into `summaries`, the training's
    writers, else new ones), then closes the writers."""
    c, s, d = task.config, task.split, task.data
    path = ckpt.restore_best()
    selected_codes = codes = encode_codes(task, s)
    trained_split = s
    if refit is not None:
        path = refit.ckpt.restore_best()
        codes, trained_split = encode_codes(refit.task, s), refit.task.split
    ql, dl = d.labels[s.query_idx], d.labels[s.database_idx]
    # No linear floor for raw images: no linear model reads pixels. Fitted on the rows the
    # model trained on (with --refit, the validation rows too).
    floor = report.floor_of(d, trained_split, c.bits, c.seed) if task.raw is None else None
    parts, i2t, t2i = report.test_report(codes, ql, dl, bits=c.bits, seed=c.seed, floor=floor)
    parts["test"].update(checkpoint=path, selected_epoch=int(ckpt.best_epoch),
                         model="refit" if refit else "selected")
    if refit is not None:
        parts["refit"] = refit_report(refit, selected_codes, ql, dl)
    metrics = {
        "dataset": d.name, "bits": c.bits, "split_seed": s.seed, "split_source": s.source,
        "split_sizes": s.sizes(), "seed": c.seed,
        "ties": {"map_i2t": "index (stable, by database index)",
                 "map_i2t_expected": "tie-aware expected AP (McSherry & Najork 2008)"},
        **parts,
        "inputs": task.input_spec,
        "attention": task.attention,
        "selection": {"rule": report.SELECTION_RULE if len(s.val_idx) else
                      "no validation split: the last epoch", "split": "val",
                      "best_epoch": int(ckpt.best_epoch),
                      "best_val_score": float(ckpt.best_score),
                      "stopped_early_at": schedule.stopped_early(c, history,
                                                                 int(ckpt.best_epoch))},
        "history": history or [],
        "config": dataclasses.asdict(c),
    }
    if train_seconds is not None:
        metrics["train_seconds"] = round(train_seconds, 2)
    chief = is_chief(task.strategy)
    summaries = summaries or Summaries(c.workdir, enabled=chief)
    _write_summaries(summaries, metrics, i2t, t2i, codes, int(ckpt.step))
    summaries.close()
    if chief:
        write_json(rundir.path(c.workdir, rundir.METRICS_FILE), metrics)
        for name, result in (("i2t", i2t), ("t2i", t2i)):
            plot_curves(result, rundir.path(c.workdir, rundir.CURVES_PREFIX[name]))
    print(report.summary_line(metrics), flush=True)
    for warning in report.quality_warnings(metrics):
        print(f"WARNING: {warning}", file=sys.stderr, flush=True)
    if train_seconds is not None:
        print(f"wall {train_seconds:.0f} s; run directory {os.path.abspath(c.workdir)} "
              f"(metrics.json, TensorBoard: tensorboard --logdir {c.workdir})", flush=True)
    return metrics


def refit_report(refit, selected_codes, query_labels, db_labels):
    """metrics.json "refit": what the refit trained, and the selected model's test MAP for
    comparison (the run's test figures are the refit's)."""
    c = refit.task.config
    sel = {"map_i2t": mean_average_precision(selected_codes["image_query"],
                                             selected_codes["text_database"], query_labels,
                                             db_labels),
           "map_t2i": mean_average_precision(selected_codes["text_query"],
                                             selected_codes["image_database"], query_labels,
                                             db_labels)}
    return {"epochs": c.epochs, "train_rows": int(len(refit.task.split.train_idx)),
            "workdir": os.path.abspath(c.workdir),
            "selected_model_test": {k: float(v) for k, v in sel.items()},
            "history": refit.history or []}


def _write_summaries(summaries, metrics, i2t, t2i, codes, step):
    t = metrics["test"]
    summaries.scalars("eval", {"test/map_i2t": t["map_i2t"], "test/map_t2i": t["map_t2i"],
                               "test/map_i2t_expected": t["map_i2t_expected"],
                               "test/map_t2i_expected": t["map_t2i_expected"]}, step)
    summaries.histograms("eval", {
        "codes/image_bit_balance": (codes["image_database"] > 0).mean(0),
        "codes/text_bit_balance": (codes["text_database"] > 0).mean(0)}, step)
    summaries.scalars("eval", {
        "codes/image_distinct": t["distinct_codes"]["image_database"],
        "codes/text_distinct": t["distinct_codes"]["text_database"]}, step)
    for name, res in (("i2t", i2t), ("t2i", t2i)):
        counts = report.pr_counts(res)
        if counts is not None:
            summaries.pr_curve("eval", f"pr_curve/{name}", *counts, step=step)
