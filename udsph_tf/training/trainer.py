"""The run: data, models, optimizers, buffers, checkpoint; the alternating epoch loop and evaluation."""

import dataclasses
import json
import math
import os
import shutil
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from udsph_tf.errors import ConfigError
from udsph_tf.training import schedule
from udsph_tf.training.checkpointing import RunCheckpoint
from udsph_tf.training.progress import Progress
from udsph_tf.training.steps import TrainSteps, precision_policy
from udsph_tf.training.strategy import is_chief, make_strategy, worker_dir
from udsph_tf.training.summaries import Summaries

ENCODE_BATCH = 1024
RAW_ENCODE_BATCH = 32  # a CNN on 1024 photos at once would need GBs of activations
SELECTION_RULE = ("validation queries (split.val_idx, carved from the training side) against "
                  "the database minus the validation items; score = mean of MAP I->T and T->I "
                  "(index-ordered ties)")


class TrainingDiverged(FloatingPointError):
    """A loss became NaN/inf; the run stops and keeps its last good checkpoint."""


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def _write_json_atomic(path, obj):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
    os.replace(tmp, path)  # readers never see a half-written file


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def _num_workers(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    cluster = resolver.cluster_spec().as_dict()
    return max(1, len(cluster.get("worker", [])) + len(cluster.get("chief", [])))


def input_spec_for(config, train_data, raw=False):
    """The run's resolved input handling (models.resolve_input_spec), checked against the
    training text: a bag-of-words front-end refuses negative values."""
    from udsph_tf.models import resolve_input_spec
    spec = resolve_input_spec(config, train_data.tags)
    if raw:
        spec["image_norm"] = "none"  # the backbone normalises pixels itself
    if spec["text_encoder"] == "bow":
        negative = int((np.asarray(train_data.tags) < 0).sum())
        if negative:
            raise ConfigError(f"{train_data.name}: --text_encoder=bow needs a non-negative bag "
                             f"of words, the text has {negative} negative entries; use "
                             "--text_encoder=dense (or auto) for real-valued text")
    return spec


def _to_codes(h):
    # sign() maps 0 to 0, which is no code; ties go to +1.
    return np.where(np.asarray(h) >= 0, 1, -1).astype(np.int8)


class Trainer:
    """Everything one run needs. `data`/`split`/`strategy` may be given (tests); by default they
    come from the config (udsph_tf.data) and the environment (TF_CONFIG, local devices)."""

    def __init__(self, config, strategy=None, data=None, split=None, image_size=None):
        self.config = config
        if config.deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(config.seed)
        self.strategy = strategy or make_strategy(config.num_replicas)
        # --mixed_precision; set by every Trainer (the policy is process-wide in Keras).
        keras.mixed_precision.set_dtype_policy(precision_policy(config, self.strategy))
        self.chief = is_chief(self.strategy)
        if data is None or split is None:
            from udsph_tf.data import load_dataset_from_config, split_from_config
            data = data if data is not None else load_dataset_from_config(config)
            split = split if split is not None else split_from_config(config, data)
        self.raw = None
        if data.images is None:
            # Raw-image mode: photos decoded once into memory (or frozen-backbone outputs).
            from udsph_tf.training.raw_images import prepare_raw_images
            data, split, self.raw = prepare_raw_images(config, data, split, image_size,
                                                       progress=config.progress)
        self.data, self.split = data, split
        self.train_data = data.subset(split.train_idx)
        self.n_train = len(split.train_idx)
        self.global_batch_size = config.batch_size
        if config.batch_size < 1:
            raise ConfigError(f"--batch_size: must be >= 1, got {config.batch_size}")
        if self.n_train < self.global_batch_size:
            raise ConfigError(f"--batch_size={config.batch_size} exceeds the {self.n_train} "
                             "training items (each pass drops the incomplete last batch)")
        if self.global_batch_size % max(self.strategy.num_replicas_in_sync, 1):
            raise ConfigError(f"--batch_size={config.batch_size} is not divisible by the "
                             f"{self.strategy.num_replicas_in_sync} replicas")
        # Every worker must run the same number of steps (collectives would hang otherwise):
        # the count of full batches in the smallest worker shard of the training rows.
        workers = _num_workers(self.strategy)
        per_worker_batch = self.global_batch_size // workers
        self.full_batches = (self.n_train // workers) // per_worker_batch
        # Small training sets get several shuffled cycles per pass (--min_pass_steps), so
        # every network takes enough steps per epoch to leave its initial plateau.
        self.steps_per_pass = max(self.full_batches, config.min_pass_steps)
        self.phases = schedule.epoch_phases(config)
        self._forward_fns = {}
        self.networks = schedule.active_networks(config)
        self._build()
        self.save_root = worker_dir(config.workdir, self.strategy)
        self.ckpt = RunCheckpoint(self.save_root, self.models, self.optimizers, self.buffers,
                                  split.seed, keep=config.keep_checkpoints)
        self.summaries = Summaries(config.workdir, enabled=self.chief)

    # --- construction -----------------------------------------------------------------------
    def _build(self):
        from udsph_tf.models import build_models
        c, d = self.config, self.train_data
        image_shape = tuple(d.images.shape[1:])
        self.input_spec = input_spec_for(c, d, raw=self.raw is not None)
        from udsph_tf.data.validation import degenerate_inputs
        for warning in degenerate_inputs(d.name, None if self.raw else d.images, d.tags):
            _log(f"WARNING: {warning}")
        with self.strategy.scope():
            if self.raw is not None and self.raw.cached:
                from udsph_tf.training.raw_images import build_cached_models
                models = build_cached_models(c, self.raw, d.tag_dim, d.num_labels,
                                             self.input_spec)
            else:
                models = build_models(c, image_shape, d.tag_dim, d.num_labels, self.input_spec)
            # Statistics of the training rows only; restored from checkpoints on resume.
            for net, x in (("imgnet", d.images), ("txtnet", d.tags)):
                if models[net].normalizer is not None:
                    models[net].normalizer.fit(x)
            self.models = {k: v for k, v in models.items()}
            self.optimizers = {}
            for net in self.networks:
                opt = keras.optimizers.Adam(learning_rate=schedule.learning_rate(c, net, 0),
                                            name=f"adam_{net}")
                if keras.mixed_precision.dtype_policy().name == "mixed_float16":
                    opt = keras.optimizers.LossScaleOptimizer(opt, name=f"scaled_{net}")
                self.optimizers[net] = opt
            n, k, f = self.n_train, c.bits, c.feature_dim
            names = ["img_F", "img_H", "txt_F", "txt_H"] + (["lab_F", "lab_H"] if c.label_net else [])
            self.buffers = {name: tf.Variable(tf.zeros([n, f if name.endswith("F") else k]),
                                              trainable=False, name=name) for name in names}
            self.buffers["B"] = tf.Variable(tf.ones([n, k]), trainable=False, name="B")
        self.steps = TrainSteps(self.strategy, c, self.models, self.optimizers, self.buffers,
                                d.labels.astype(np.float32), self.global_batch_size)
        with self.strategy.scope():
            for net, opt in self.optimizers.items():
                # Before the first traced step: Adam's lazily made slots fail in strategy.run.
                opt.build(self.steps.train_variables(net))

    # --- encoding / buffers -----------------------------------------------------------------
    def _forward_fn(self, net):
        if net not in self._forward_fns:
            model = self.models[net]

            @tf.function(reduce_retracing=True)
            def fwd(batch):
                out = model(batch, training=False)
                return out["feature"], out["hash"]
            self._forward_fns[net] = fwd
        return self._forward_fns[net]

    def _forward_all(self, net, x):
        fwd = self._forward_fn(net)
        feats, hashes = [], []
        step, prep = ENCODE_BATCH, (lambda b: tf.constant(b, tf.float32))
        if net == "imgnet" and self.raw is not None:  # pixels: normalise, small batches
            step, prep = RAW_ENCODE_BATCH, self.raw.transform(augment=False)
        for i in range(0, len(x), step):
            f, h = fwd(prep(x[i:i + step]))
            feats.append(f.numpy())
            hashes.append(h.numpy())
        return np.concatenate(feats), np.concatenate(hashes)

    def encode(self, rows):
        """(image hash outputs, text hash outputs) of the given data rows."""
        d = self.data
        _, hv = self._forward_all("imgnet", d.images[rows])
        _, ht = self._forward_all("txtnet", d.tags[rows])
        return hv, ht

    def _fill_buffers(self):
        """Fresh start: buffers hold the untrained networks' outputs, B their combined sign."""
        d = self.train_data
        pairs = [("img", "imgnet", d.images), ("txt", "txtnet", d.tags)]
        if self.config.label_net:
            pairs.append(("lab", "labnet", d.labels))
        for prefix, net, x in pairs:
            f, h = self._forward_all(net, x)
            self.buffers[f"{prefix}_F"].assign(f)
            self.buffers[f"{prefix}_H"].assign(h)
        self._refresh_codes()

    def _refresh_codes(self):
        """B = sign(H_v + H_t (+ H_l)) over the training set (SSAH), once per epoch."""
        total = self.buffers["img_H"] + self.buffers["txt_H"]
        if self.config.label_net:
            total = total + self.buffers["lab_H"]
        self.buffers["B"].assign(tf.where(total >= 0, 1.0, -1.0))

    # --- training ---------------------------------------------------------------------------
    def _dataset(self, seed):
        from udsph_tf.data import make_dataset_fn
        arrays = self.train_data.arrays()
        arrays = {k: v for k, v in arrays.items() if k in ("images", "tags", "labels")}
        fn = make_dataset_fn(arrays, self.global_batch_size, shuffle=True, seed=seed,
                             repeat=self.steps_per_pass > self.full_batches,
                             drop_remainder=True)
        if self.raw is not None:
            fn = self._raw_batches(fn, seed)
        return self.strategy.distribute_datasets_from_function(fn)

    def _raw_batches(self, fn, seed):
        """Normalise raw pixels per training batch (+ --augment, stateless from seed, row)."""
        transform = self.raw.transform(augment=self.config.augment)

        def prepare(batch):
            seeds = tf.stack([tf.fill(tf.shape(batch["index"]), tf.cast(seed, tf.int64)),
                              tf.cast(batch["index"], tf.int64)], axis=1)
            return {**batch, "images": transform(batch["images"], seeds)}
        return lambda ctx=None: fn(ctx).map(prepare)

    def set_learning_rates(self, epoch):
        rates = {}
        for net, opt in self.optimizers.items():
            rates[net] = schedule.learning_rate(self.config, net, epoch)
            opt.learning_rate.assign(rates[net])
        return rates

    def train_epoch(self, epoch):
        """One epoch of the alternating schedule; returns mean logged losses per network."""
        c = self.config
        rates = self.set_learning_rates(epoch)
        bar = Progress(len(self.phases) * self.steps_per_pass, f"epoch {epoch + 1}/{c.epochs}",
                       enabled=c.progress and self.chief)
        sums, seconds = {}, {}
        for number, phase in enumerate(self.phases):
            started = time.perf_counter()
            step_fn = self.steps.step(phase.network)
            iterator = iter(self._dataset(schedule.data_seed(c.seed, epoch, number)))
            for _ in range(self.steps_per_pass):
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
        started = time.perf_counter()
        self._refresh_codes()
        # Where the epoch's time went (history.json): each network's steps, the B refresh.
        self.epoch_seconds = {"step_seconds": {k: round(v, 3) for k, v in seconds.items()},
                              "refresh_seconds": round(time.perf_counter() - started, 3)}
        means = {net: {k: v / acc["_n"] for k, v in acc.items() if k != "_n"}
                 for net, acc in sums.items()}
        step = int(self.ckpt.step)
        self.summaries.scalars("train", {f"loss/{net}/{k}": v for net, comps in means.items()
                                         for k, v in comps.items()}, step)
        self.summaries.scalars("train", {f"learning_rate/{k}": v for k, v in rates.items()}, step)
        b = self.buffers["B"].numpy()
        self.summaries.histograms("train", {"codes/B_bit_mean": b.mean(0)}, step)
        return means

    def validate(self):
        """Validation MAPs (model selection); never touches the query set."""
        from udsph_tf.evaluation import collapse_stats, mean_average_precision
        s, d = self.split, self.data
        if len(s.val_idx) == 0:
            return None
        retrieval = np.setdiff1d(s.database_idx, s.val_idx)
        hv_q, ht_q = self.encode(s.val_idx)
        hv_r, ht_r = self.encode(retrieval)
        ql, rl = d.labels[s.val_idx], d.labels[retrieval]
        dv, dt = _to_codes(hv_r), _to_codes(ht_r)
        i2t = float(mean_average_precision(_to_codes(hv_q), dt, ql, rl))
        t2i = float(mean_average_precision(_to_codes(ht_q), dv, ql, rl))
        return {"map_i2t": i2t, "map_t2i": t2i, "score": (i2t + t2i) / 2,
                "n_queries": int(len(s.val_idx)), "n_retrieval": int(len(retrieval)),
                "codes": {"image": collapse_stats(dv, rl), "text": collapse_stats(dt, rl)}}

    def run(self):
        """Train from the last checkpoint (or from scratch), keep the best validation
        checkpoint, then test once on the query set with it."""
        c = self.config
        os.makedirs(c.workdir, exist_ok=True)
        start = time.time()
        from udsph_tf import run_identity  # run.json: a resume must be the recorded run
        run_identity.start_training(c, self.data, self.split, write=self.chief)
        if self.chief:  # export/search rebuild the networks with the same input handling
            _write_json_atomic(os.path.join(c.workdir, run_identity.INPUTS_FILE),
                              self.input_spec)
        restored = self.ckpt.restore_latest()
        if restored:
            if int(self.ckpt.split_seed) != self.split.seed:
                raise ValueError(f"{restored} was trained with split seed "
                                 f"{int(self.ckpt.split_seed)} but this run uses "
                                 f"{self.split.seed}: use another --workdir")
            _log(f"resuming from {restored} (epoch {int(self.ckpt.epoch)})")
        else:
            self._fill_buffers()
            self.summaries.hparams(dataclasses.asdict(c))
        history = self._read_history()
        for epoch in range(int(self.ckpt.epoch), c.epochs):
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
            entry["checkpoint_seconds"] = self.ckpt.take_write_seconds()
            if self.chief:
                _write_json_atomic(os.path.join(c.workdir, "history.json"), history)
            self.ckpt.save_latest()
            entry["checkpoint_seconds"] += self.ckpt.take_write_seconds()  # + ckpt/ write
            if self.chief:
                _write_json_atomic(os.path.join(c.workdir, "history.json"), history)
            _log(f"epoch {epoch + 1}/{c.epochs}: " + " ".join(
                f"{net}={v:.4g}" for net, v in entry["loss"].items())
                + (f" val MAP i2t={entry['val']['map_i2t']:.4f} t2i={entry['val']['map_t2i']:.4f}"
                   if "val" in entry else ""))
        self.summaries.flush()
        train_seconds = time.time() - start
        metrics = self.test(history=history, train_seconds=train_seconds)
        self._cleanup_worker_dir()
        return metrics

    def _read_history(self):
        path = os.path.join(self.config.workdir, "history.json")
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        return []

    def _cleanup_worker_dir(self):
        if not self.chief and os.path.isdir(self.save_root):
            shutil.rmtree(self.save_root, ignore_errors=True)

    # --- final test -------------------------------------------------------------------------
    def test(self, history=None, train_seconds=None):
        """MAP on the query set (once) with the selected checkpoint; writes metrics.json and plots."""
        from udsph_tf.evaluation import collapse_stats, evaluate_retrieval, plot_curves
        c, s, d = self.config, self.split, self.data
        path = self.ckpt.restore_best()
        hv_q, ht_q = self.encode(s.query_idx)
        hv_db, ht_db = self.encode(s.database_idx)
        ql, dl = d.labels[s.query_idx], d.labels[s.database_idx]
        qv, qt, dv, dt = (_to_codes(h) for h in (hv_q, ht_q, hv_db, ht_db))
        i2t = evaluate_retrieval(qv, dt, ql, dl)
        t2i = evaluate_retrieval(qt, dv, ql, dl)
        stats = {"image_query": i2t["query_code_stats"], "text_query": t2i["query_code_stats"],
                 "image_database": t2i["db_code_stats"], "text_database": i2t["db_code_stats"]}
        rng = np.random.default_rng(c.seed)
        rand_q = np.where(rng.random((len(ql), c.bits)) < 0.5, 1, -1).astype(np.int8)
        rand_db = np.where(rng.random((len(dl), c.bits)) < 0.5, 1, -1).astype(np.int8)
        chance = evaluate_retrieval(rand_q, rand_db, ql, dl)
        base_rate = float(((ql.astype(np.float32) @ dl.T.astype(np.float32)) > 0).mean())
        floor = self._linear_floor()
        collapse = {"image_database": collapse_stats(dv, dl), "text_database": collapse_stats(dt, dl)}
        metrics = {
            "dataset": d.name, "bits": c.bits, "split_seed": s.seed, "split_source": s.source,
            "split_sizes": s.sizes(), "seed": c.seed,
            "ties": {"map_i2t": "index (stable, by database index)",
                     "map_i2t_expected": "tie-aware expected AP (McSherry & Najork 2008)"},
            "test": {"split": "query", "n_queries": int(len(ql)), "n_database": int(len(dl)),
                     "checkpoint": path, "selected_epoch": int(self.ckpt.best_epoch),
                     "i2t": _scalars(i2t), "t2i": _scalars(t2i),
                     "map_i2t": i2t["map_index"], "map_t2i": t2i["map_index"],
                     "map_i2t_expected": i2t["map_expected"],
                     "map_t2i_expected": t2i["map_expected"],
                     "distinct_codes": {k: v["distinct_codes"] for k, v in stats.items()},
                     "most_common_code_fraction": {k: v["most_common_fraction"]
                                                   for k, v in stats.items()},
                     "mean_abs_bit_balance": {k: v["mean_abs_balance"]
                                              for k, v in stats.items()}},
            "linear_floor": floor,
            "inputs": self.input_spec,
            "collapse": collapse,
            "chance": {"map_random_codes_i2t": chance["map_index"],
                       "map_random_codes_expected": chance["map_expected"],
                       "label_base_rate": base_rate},
            "selection": {"rule": SELECTION_RULE if len(s.val_idx) else
                          "no validation split: the last epoch", "split": "val",
                          "best_epoch": int(self.ckpt.best_epoch),
                          "best_val_score": float(self.ckpt.best_score)},
            "history": history or [],
            "config": dataclasses.asdict(c),
        }
        if train_seconds is not None:
            metrics["train_seconds"] = round(train_seconds, 2)
        step = int(self.ckpt.step)
        if self.chief:
            self._write_eval_summaries(metrics, i2t, t2i, dv, dt, step)
            _write_json_atomic(os.path.join(c.workdir, "metrics.json"), metrics)
            plot_curves(i2t, os.path.join(c.workdir, "curves_i2t"))
            plot_curves(t2i, os.path.join(c.workdir, "curves_t2i"))
        t = metrics["test"]
        floor_text = (f"linear floor {floor['map_i2t']:.4f} / {floor['map_t2i']:.4f}; "
                      if floor else "")
        print(f"test MAP@all ({c.bits} bits, {len(ql)} queries, split seed {s.seed}): "
              f"I->T {t['map_i2t']:.4f}  T->I {t['map_t2i']:.4f}  "
              f"(tie-aware {t['map_i2t_expected']:.4f} / {t['map_t2i_expected']:.4f}); "
              f"{floor_text}chance: random codes {chance['map_index']:.4f}, label base rate "
              f"{base_rate:.4f}; distinct database codes img "
              f"{t['distinct_codes']['image_database']} txt "
              f"{t['distinct_codes']['text_database']}", flush=True)
        for warning in quality_warnings(metrics):
            _log(f"WARNING: {warning}")
        if train_seconds is not None:
            print(f"wall {train_seconds:.0f} s; run directory {os.path.abspath(c.workdir)} "
                  "(metrics.json, TensorBoard: tensorboard --logdir "
                  f"{c.workdir})", flush=True)
        return metrics

    def _linear_floor(self):
        """The scikit-learn floor on the same rows (evaluation/floor.py); None for raw images,
        whose pixels no linear model reads."""
        from udsph_tf.evaluation.floor import linear_floor
        if self.raw is not None:
            return None
        s, d = self.split, self.data

        def part(idx):
            return {"images": d.images[idx], "tags": d.tags[idx], "labels": d.labels[idx]}
        return linear_floor(part(s.train_idx), part(s.query_idx), part(s.database_idx),
                            self.config.bits, seed=self.config.seed)

    def _write_eval_summaries(self, metrics, i2t, t2i, dv, dt, step):
        t = metrics["test"]
        self.summaries.scalars("eval", {"test/map_i2t": t["map_i2t"], "test/map_t2i": t["map_t2i"],
                                        "test/map_i2t_expected": t["map_i2t_expected"],
                                        "test/map_t2i_expected": t["map_t2i_expected"]}, step)
        self.summaries.histograms("eval", {"codes/image_bit_balance": (dv > 0).mean(0),
                                           "codes/text_bit_balance": (dt > 0).mean(0)}, step)
        self.summaries.scalars("eval", {
            "codes/image_distinct": t["distinct_codes"]["image_database"],
            "codes/text_distinct": t["distinct_codes"]["text_database"]}, step)
        for name, res in (("i2t", i2t), ("t2i", t2i)):
            counts = _pr_counts(res)
            if counts is not None:
                self.summaries.pr_curve("eval", f"pr_curve/{name}", *counts, step=step)
        self.summaries.flush()


def quality_warnings(metrics):
    """Sentences for a run whose codes collapsed or that does not beat the linear floor."""
    out = []
    for side, st in metrics["collapse"].items():
        if st["collapsed"]:
            out.append(f"the {side.replace('_', ' ')} codes collapsed: "
                       f"{st['distinct_codes']} distinct codes for {st['label_sets']} label "
                       f"sets, {st['most_common_fraction']:.0%} of the items share one code")
    floor, t = metrics.get("linear_floor"), metrics["test"]
    if floor:
        for key, name in (("map_i2t", "I->T"), ("map_t2i", "T->I")):
            if t[key] < floor[key]:
                out.append(f"test MAP {name} {t[key]:.4f} is below the linear floor "
                           f"{floor[key]:.4f}")
    return out


def _scalars(result):
    """The JSON-able part of an evaluate_retrieval result (curves are kept as lists)."""
    return json.loads(json.dumps(result, default=_json_default))


def _pr_counts(result):
    """tp/fp/tn/fn with thresholds rising (Hamming radius falling), as the PR plugin wants."""
    counts = result.get("pr_counts")
    if not counts:
        return None
    return tuple(np.asarray(counts[k])[::-1] for k in ("tp", "fp", "tn", "fn"))
