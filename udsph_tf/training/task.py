"""What one run trains: its data rows, networks, optimizers, code buffers and replica steps.

The Task builds; the Trainer (trainer.py) loops. `Task(..., training=False)` builds the
networks alone (evaluation restores them from best/ and needs no optimizer or buffer).
"""

import dataclasses
import sys

import keras
import numpy as np
import tensorflow as tf

from udsph_tf.data import glove
from udsph_tf.data.pipeline import make_dataset_fn, make_schedule_dataset_fn
from udsph_tf.data.validation import degenerate_inputs
from udsph_tf.errors import ConfigError
from udsph_tf.models import (ATTENTION_SKIPPED, attention_mode, build_models,
                             resolve_input_spec)
from udsph_tf.models.backbones.cached import CachedBackboneInput
from udsph_tf.models.encoding import Encoder, sign_codes
from udsph_tf.training import schedule
from udsph_tf.training.optimizers import make_optimizer
from udsph_tf.training.steps import (LAB_BUFFERS, MODALITY_BUFFERS, TrainSteps,
                                     precision_policy)
from udsph_tf.training.strategy import num_workers

RAW_ENCODE_BATCH = 32  # a CNN on 1024 photos at once would need GBs of activations


def input_spec_for(config, train_data, raw=False):
    """The run's resolved input handling (models.resolve_input_spec), checked against the
    training text: a bag-of-words front-end refuses negative values."""
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


class Task:
    """data/split: the run's rows (raw-image runs: in-memory pixels or cached backbone outputs,
    `raw` a data.raw_images.RawImageInput); strategy: where the variables live."""

    def __init__(self, config, strategy, data, split, raw=None, training=True, announce=True):
        self.config, self.strategy, self.raw = config, strategy, raw
        self.training = training
        self.networks = schedule.active_networks(config)  # the ones with an optimizer
        self.data, self.split = data, split
        self.train_data = data.subset(split.train_idx)
        self.n_train = len(split.train_idx)
        self.global_batch_size = config.batch_size
        if config.batch_size < 1:
            raise ConfigError(f"--batch_size: must be >= 1, got {config.batch_size}")
        if config.txtnet_hidden < 0:
            raise ConfigError(f"--txtnet_hidden: must be >= 0 (0: no hidden layer), got "
                              f"{config.txtnet_hidden}")
        for name in ("dropout", "tag_dropout"):
            if not 0.0 <= getattr(config, name) < 1.0:
                raise ConfigError(f"--{name}: must be in [0, 1), got {getattr(config, name)}")
        if training:
            self._check_batch()
            if config.epochs < 1:
                raise ConfigError(f"--epochs: must be >= 1, got {config.epochs}")
            if config.patience < 0:
                raise ConfigError(f"--patience: must be >= 0 (0 trains every epoch), got "
                                  f"{config.patience}")
            if not 0.0 <= config.txt_weight_decay < float("inf"):
                raise ConfigError(f"--txt_weight_decay: must be a finite number >= 0 (0 is "
                                  f"off), got {config.txt_weight_decay}")
            if config.cross_pair_to != "both" and not (config.cross_pair and config.label_net):
                # A DCMH-like run already teaches both students by the other modality.
                raise ConfigError(f"--cross_pair_to={config.cross_pair_to} chooses the students "
                                  "of the image<->text term beside the label network's; it "
                                  "needs --cross_pair > 0 and the label network")
        self.input_spec = input_spec_for(config, self.train_data, raw=raw is not None)
        self.attention = attention_mode(config, self.input_spec)  # metrics.json "attention"
        # announce=False: a second Task on the same data (--refit) says nothing new.
        if training and announce and self.attention == ATTENTION_SKIPPED:
            print(f"attention: {ATTENTION_SKIPPED}: --attention={config.attention} needs the "
                  "words of a bag-of-words text and this text is dense, so this run trains "
                  "without the attention terms, as --attention=none would", file=sys.stderr,
                  flush=True)
        for warning in degenerate_inputs(data.name, None if raw else self.train_data.images,
                                         self.train_data.tags) if announce else ():
            print(f"WARNING: {warning}", file=sys.stderr, flush=True)
        # --mixed_precision, before any model is built (Keras's policy is process-wide, so
        # every Task sets it, evaluation's included).
        keras.mixed_precision.set_dtype_policy(precision_policy(config, strategy))
        with strategy.scope():
            self.models = self._build_models()
        self.optimizers, self.buffers, self.steps = {}, {}, None
        if training:
            self._build_training()
        self._encoders = {}

    def _check_batch(self):
        c = self.config
        if self.n_train < self.global_batch_size:
            raise ConfigError(f"--batch_size={c.batch_size} exceeds the {self.n_train} "
                             "training items (each pass drops the incomplete last batch)")
        if self.global_batch_size % max(self.strategy.num_replicas_in_sync, 1):
            raise ConfigError(f"--batch_size={c.batch_size} is not divisible by the "
                             f"{self.strategy.num_replicas_in_sync} replicas")
        # Every worker must run the same number of steps (collectives would hang otherwise):
        # the count of full batches in the smallest worker shard of the training rows.
        workers = num_workers(self.strategy)
        per_worker_batch = self.global_batch_size // workers
        self.full_batches = (self.n_train // workers) // per_worker_batch
        # Small training sets get several shuffled cycles per pass (--min_pass_steps), so
        # every network takes enough steps per epoch to leave its initial plateau.
        self.steps_per_pass = max(self.full_batches, c.min_pass_steps)

    def _word_vectors(self):
        """(vectors, found) of --word_init=glove for TxtNet's tag embedding; None for random."""
        c, d = self.config, self.train_data
        if c.word_init != "glove" or not self.training:
            return None  # evaluation restores the embedding from a checkpoint
        if c.attention == "none":
            raise ConfigError("--word_init=glove initialises the attention's word tokens; "
                              "with --attention=none there are none")
        if self.input_spec["text_encoder"] != "bow":
            raise ConfigError("--word_init=glove needs a bag-of-words text (its tags are the "
                              "words); this text is dense")
        if not d.tag_vocab or len(d.tag_vocab) != d.tag_dim:
            raise ConfigError(f"--word_init=glove needs the words of the {d.tag_dim} tag "
                              f"columns (common_tags.txt in --data_dir)")
        if c.token_dim < glove.DIM:
            raise ConfigError(f"--word_init=glove needs --token_dim >= {glove.DIM}, got "
                              f"{c.token_dim}")
        vectors, found = glove.tag_embedding_init(d.tag_vocab, c.token_dim)
        print(f"word init: GloVe vectors for {int(found.sum())} of {len(found)} tags",
              file=sys.stderr)
        return vectors, found

    def _build_models(self):
        c, d = self.config, self.train_data
        if self.raw is not None and self.raw.cached:
            # ImgNet reads the cached (R+1, d) backbone outputs as it would read the backbone.
            images = self.raw.images
            models = build_models(
                dataclasses.replace(c, backbone="features", image_regions=0),
                images.shape[1:], d.tag_dim, d.num_labels, self.input_spec,
                image_input=CachedBackboneInput(images.shape[1] - 1, images.shape[2],
                                                name="image_input"))
        else:
            models = build_models(c, d.images.shape[1:], d.tag_dim, d.num_labels,
                                  self.input_spec, word_vectors=self._word_vectors())
        # Statistics of the training rows only; restored from checkpoints on resume.
        for net, x in (("imgnet", d.images), ("txtnet", d.tags)):
            if models[net].normalizer is not None:
                models[net].normalizer.fit(x)
        return models

    def _build_training(self):
        c = self.config
        with self.strategy.scope():
            loss_scale = keras.mixed_precision.dtype_policy().name == "mixed_float16"
            for net in self.networks:
                self.optimizers[net] = make_optimizer(
                    net, schedule.learning_rate(c, net, 0), fused=c.fused_adam,
                    loss_scale=loss_scale,
                    weight_decay=c.txt_weight_decay if net == "txtnet" else 0.0)
            n, k, f = self.n_train, c.bits, c.feature_dim
            names = MODALITY_BUFFERS + (LAB_BUFFERS if c.label_net else ())
            self.buffers = {name: tf.Variable(tf.zeros([n, f if name.endswith("F") else k]),
                                              trainable=False, name=name) for name in names}
            self.buffers["B"] = tf.Variable(tf.ones([n, k]), trainable=False, name="B")
        self.steps = TrainSteps(self.strategy, c, self.models, self.optimizers, self.buffers,
                                self.train_data.labels.astype(np.float32), self.global_batch_size)
        with self.strategy.scope():
            for net, opt in self.optimizers.items():
                # Before the first traced step: Adam's lazily made slots fail in strategy.run.
                opt.build(self.steps.train_variables(net))

    # --- encoding ---------------------------------------------------------------------------
    def _encoder(self, net, outputs=("feature", "hash")):
        key = (net, tuple(outputs))
        if key not in self._encoders:
            kwargs = {}
            if net == "imgnet" and self.raw is not None:  # pixels: normalise, small batches
                kwargs = {"prepare": self.raw.transform(augment=False),
                          "batch_size": RAW_ENCODE_BATCH}
            self._encoders[key] = Encoder.of_model(self.models[net], outputs, **kwargs)
        return self._encoders[key]

    def network_outputs(self, net, x, outputs):
        """{name: array} of `net`'s `outputs` on the rows x, prepared as the run encodes them."""
        return self._encoder(net, outputs)(x)

    def encode(self, rows):
        """(image hash outputs, text hash outputs) of the given data rows."""
        d = self.data
        return (self._encoder("imgnet")(d.images[rows])["hash"],
                self._encoder("txtnet")(d.tags[rows])["hash"])

    def fill_buffers(self):
        """Fresh start: buffers hold the untrained networks' outputs, B their combined sign."""
        d = self.train_data
        pairs = [("img", "imgnet", d.images), ("txt", "txtnet", d.tags)]
        if self.config.label_net:
            pairs.append(("lab", "labnet", d.labels))
        for prefix, net, x in pairs:
            out = self._encoder(net)(x)
            self.buffers[f"{prefix}_F"].assign(out["feature"])
            self.buffers[f"{prefix}_H"].assign(out["hash"])
        self.refresh_codes()

    def refresh_codes(self):
        """B = sign(H_v + H_t (+ H_l)) over the training set (SSAH), once per epoch."""
        total = self.buffers["img_H"] + self.buffers["txt_H"]
        if self.config.label_net:
            total = total + self.buffers["lab_H"]
        self.buffers["B"].assign(sign_codes(total, tf.float32))

    # --- training input ---------------------------------------------------------------------
    def dataset(self, seed):
        """The distributed training batches of one pass (shuffled by `seed`)."""
        fn = make_dataset_fn(self._train_arrays(), self.global_batch_size, shuffle=True,
                             seed=seed, repeat=self.steps_per_pass > self.full_batches,
                             drop_remainder=True)
        if self.raw is not None:
            fn = self._raw_batches(fn, seed)
        return self.strategy.distribute_datasets_from_function(fn)

    def schedule_dataset(self, seeds):
        """The batches of many passes, one input pipeline for all: pass k's are those of
        `dataset(seeds[k])`, cut to steps_per_pass steps (the trainer's: a run's passes)."""
        fn = make_schedule_dataset_fn(self._train_arrays(), self.global_batch_size, seeds,
                                      self.steps_per_pass,
                                      repeat=self.steps_per_pass > self.full_batches,
                                      keep_pass_seed=self.raw is not None)
        if self.raw is not None:
            fn = self._raw_batches(fn)
        return self.strategy.distribute_datasets_from_function(fn)

    def _train_arrays(self):
        arrays = self.train_data.arrays()
        return {k: v for k, v in arrays.items() if k in ("images", "tags", "labels")}

    def _raw_batches(self, fn, seed=None):
        """Normalise raw pixels per training batch (+ --augment, stateless from the pass seed
        and the row); seed None: each batch carries its pass seed as "pass_seed"."""
        transform = self.raw.transform(augment=self.config.augment)

        def prepare(batch):
            batch = dict(batch)
            pass_seed = (batch.pop("pass_seed") if seed is None else
                         tf.fill(tf.shape(batch["index"]), tf.cast(seed, tf.int64)))
            seeds = tf.stack([pass_seed, tf.cast(batch["index"], tf.int64)], axis=1)
            return {**batch, "images": transform(batch["images"], seeds)}
        return lambda ctx=None: fn(ctx).map(prepare)

    def set_learning_rates(self, epoch):
        rates = {}
        for net, opt in self.optimizers.items():
            rates[net] = schedule.learning_rate(self.config, net, epoch)
            opt.learning_rate.assign(rates[net])
        return rates
