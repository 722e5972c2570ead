"""The distributed train steps: one tf.function per network, each a `strategy.run` of a
per-replica step, the loss scaled once for the global batch, buffers updated on the host."""

import keras
import tensorflow as tf

from udsph_tf import losses as L

# Buffers of all N training items: the pairwise terms compare each batch against them (SSAH).
LAB_BUFFERS = ("lab_F", "lab_H")
MODALITY_BUFFERS = ("img_F", "img_H", "txt_F", "txt_H")


def scale_to_global(per_anchor, global_batch_size):
    """THE loss-scaling rule, used for every loss and logged component (never anything else).

    Each replica sums its anchors' losses and divides by the GLOBAL batch size; the gradients
    that MirroredStrategy then sums over replicas are those of the global-batch mean, so N
    replicas take the same step as one device with the whole batch.
    """
    return tf.nn.compute_average_loss(per_anchor, global_batch_size=global_batch_size)


_POLICIES = {"off": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def precision_policy(config, strategy):
    """The Keras dtype policy of --mixed_precision: auto = mixed_float16 when the strategy's
    replicas are GPUs, float32 on a CPU (bfloat16 is an explicit choice there; measured in
    docs/training.md, Speed)."""
    mode = config.mixed_precision
    if mode == "auto":
        devices = strategy.extended.worker_devices
        return "mixed_float16" if any("GPU" in d.upper() for d in devices) else "float32"
    return _POLICIES[mode]


def _float32(out):
    """A model's outputs with every floating tensor in float32: under a mixed policy the
    hidden features come out in bfloat16/float16; the losses and the buffers are float32."""
    return {k: tf.cast(v, tf.float32) if v.dtype.is_floating else v for k, v in out.items()}


def _all_gather(ctx, x, axis=0):
    """ctx.all_gather keeping the static inner shape (layers check their input widths).

    tf.identity places the value on this replica's device: MultiWorker's all_gather takes its
    destination from the value's device, and a step input passed through unchanged (float32
    labels: tf.cast is a no-op) has none ("destinations can not be empty").
    """
    gathered = ctx.all_gather(tf.identity(x), axis=axis)
    gathered.set_shape([None] + x.shape.as_list()[1:])
    return gathered


class TrainSteps:
    """Builds and holds the four distributed steps (LabNet, discriminators, ImgNet, TxtNet).

    models: dict from models.build_models (attention/labnet/disc_* may be None when off);
    optimizers: dict network -> built Keras optimizer; buffers: dict name -> tf.Variable (N, .);
    train_labels: (N, C) float32 labels of the training items (row i = buffer row i).
    """

    def __init__(self, strategy, config, models, optimizers, buffers, train_labels,
                 global_batch_size):
        self.strategy = strategy
        self.config = config
        self.models = models
        self.optimizers = optimizers
        self.buffers = buffers
        self.train_labels = tf.constant(train_labels, tf.float32)
        self.global_batch_size = int(global_batch_size)
        self.weights = L.LossWeights.from_config(config)
        self.hash_scale = L.hash_theta_scale(config.hash_theta, config.bits)
        self._steps = {}

    # --- variables each step trains ------------------------------------------------------
    def train_variables(self, network):
        m = self.models
        if network == "labnet":
            return list(m["labnet"].trainable_variables)
        if network == "disc":
            return list(m["disc_img"].trainable_variables) + list(m["disc_txt"].trainable_variables)
        own = list(m[network].trainable_variables)
        # Both modality steps train the shared attention (each with its own optimizer slots).
        if m.get("attention") is not None:
            own += list(m["attention"].trainable_variables)
        return own

    def step(self, network):
        """The tf.function running one global batch of `network`'s step on every replica."""
        if network not in self._steps:
            replica_fn = {"labnet": self._labnet_replica, "disc": self._disc_replica,
                          "imgnet": self._imgnet_replica, "txtnet": self._txtnet_replica}[network]
            self._steps[network] = self._distributed(replica_fn)
        return self._steps[network]

    def _distributed(self, replica_fn):
        strategy = self.strategy
        if self.config.jit_compile:
            # XLA on the per-replica function (not on this wrapper: strategy.run and the
            # cross-replica buffer writes stay outside the compiled cluster).
            replica_fn = tf.function(replica_fn, jit_compile=True, autograph=False)

        # autograph=False: the step has no tensor-dependent Python control flow, and AutoGraph
        # mixed up the converted code of the two small modality wrappers in fresh processes.
        @tf.function(autograph=False)
        def run(dist_batch):
            out = strategy.run(replica_fn, args=(dist_batch,))
            # Components were scaled per replica by the global batch, so SUM is the global mean.
            logs = {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                    for k, v in out["logs"].items()}
            if out["updates"]:
                # Buffer rows are written here, in cross-replica context, from every replica's
                # outputs (gathered across replicas and workers): a MirroredVariable stays in
                # sync, and no replica reads a row another replica is writing.
                index = strategy.gather(out["index"], axis=0)
                for name, value in out["updates"].items():
                    rows = strategy.gather(value, axis=0)
                    self.buffers[name].scatter_update(tf.IndexedSlices(rows, index))
            return logs

        return run

    # --- helpers -------------------------------------------------------------------------
    def _apply(self, network, tape, loss):
        variables = self.train_variables(network)
        optimizer = self.optimizers[network]
        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            # --mixed_precision=fp16: the gradient of loss x scale (scale_loss's product);
            # apply_gradients divides it out and skips a step whose gradients overflowed.
            grads = tape.gradient(loss, variables,
                                  output_gradients=tf.cast(optimizer.scale_loss(1.0), loss.dtype))
        else:
            grads = tape.gradient(loss, variables)
        # Variables unused by this config (e.g. tag embeddings without attention) get None.
        # The tag embedding's sparse IndexedSlices gradient is made dense (it is small), so
        # every cross-replica/worker all-reduce is a plain dense one.
        pairs = [(tf.convert_to_tensor(g), v) for g, v in zip(grads, variables) if g is not None]
        optimizer.apply_gradients(pairs)

    def _finish(self, comps):
        """Scale every per-anchor component once; 'total' is what was differentiated."""
        return {k: scale_to_global(v, self.global_batch_size) for k, v in comps.items()}

    def _batch(self, batch):
        labels = tf.cast(batch["labels"], tf.float32)
        return batch["images"], tf.cast(batch["tags"], tf.float32), labels, batch["index"]

    def _global_mean(self, h):
        """Mean of h over the GLOBAL batch (summed across replicas and workers), for the
        bit-balance term; no gradient flows through it (losses.bit_balance)."""
        ctx = tf.distribute.get_replica_context()
        total = ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                               tf.reduce_sum(tf.stop_gradient(tf.cast(h, tf.float32)), 0))
        return total / float(self.global_batch_size)

    def _code_target(self, network, index, hash_out):
        """Rows of the quantisation target B for this step's anchors (--code_target).

        joint: the per-epoch sign(H_v + H_t + H_l) buffer (SSAH paper). own: the sign of the
        network's own current output (SSAH code). label: LabNet quantises to its own sign and
        the modality networks to LabNet's code of the item, so the teacher is never pulled
        towards its untrained students. Without a label network, label falls back to joint.
        """
        target = self.config.code_target
        if target == "own" or (target == "label" and network == "labnet"):
            return tf.where(tf.stop_gradient(hash_out) >= 0, 1.0, -1.0)
        if target == "label" and self.config.label_net:
            return tf.where(tf.gather(self.buffers["lab_H"], index) >= 0, 1.0, -1.0)
        return tf.gather(self.buffers["B"], index)

    def _pair_targets(self, modality):
        """Buffers a modality's pairwise terms compare against: LabNet's (SSAH), or without a
        label network the other modality's (DCMH-like)."""
        if self.config.label_net:
            return self.buffers["lab_F"], self.buffers["lab_H"]
        other = "txt" if modality == "img" else "img"
        return self.buffers[f"{other}_F"], self.buffers[f"{other}_H"]

    # --- per-replica steps ---------------------------------------------------------------
    def _labnet_replica(self, batch):
        _, _, labels, index = self._batch(batch)
        s = L.similarity(labels, self.train_labels, self.config.similarity)
        with tf.GradientTape() as tape:
            out = _float32(self.models["labnet"](labels, training=True))
            b_rows = self._code_target("labnet", index, out["hash"])
            comps = L.labnet_loss(
                out, labels, s, tf.stop_gradient(self.buffers["lab_F"]),
                tf.stop_gradient(self.buffers["lab_H"]), b_rows, weights=self.weights,
                form=self.config.pairwise_form,
                batch_mean=self._global_mean(out["hash"]) if self.weights.balance else None,
                hash_scale=self.hash_scale)
            loss = scale_to_global(comps["total"], self.global_batch_size)
        self._apply("labnet", tape, loss)
        return {"logs": self._finish(comps), "index": index,
                "updates": {"lab_F": out["feature"], "lab_H": out["hash"]}}

    def _disc_replica(self, batch):
        images, tags, labels, index = self._batch(batch)
        m = self.models
        real = self._real_features(labels)
        fake_v = tf.stop_gradient(m["imgnet"](images, training=False)["feature"])
        fake_t = tf.stop_gradient(m["txtnet"](tags, training=False)["feature"])
        with tf.GradientTape() as tape:
            d_img = self._disc_loss("img", real, fake_v)
            d_txt = self._disc_loss("txt", real, fake_t)
            comps = {"disc_img": d_img, "disc_txt": d_txt, "total": d_img + d_txt}
            loss = scale_to_global(comps["total"], self.global_batch_size)
        self._apply("disc", tape, loss)
        return {"logs": self._finish(comps), "index": index, "updates": {}}

    def _real_features(self, labels):
        """The discriminators' 'real' side: LabNet's features of the batch (no gradient)."""
        return tf.stop_gradient(_float32(self.models["labnet"](labels, training=False))["feature"])

    def _disc_loss(self, modality, real, fake):
        """Per-anchor loss of the modality's discriminator on real vs fake features."""
        disc = self.models[f"disc_{modality}"]
        return L.discriminator_loss(disc(real, training=True), disc(fake, training=True))

    def _imgnet_replica(self, batch):
        return self._modality_replica(batch, "img")

    def _txtnet_replica(self, batch):
        return self._modality_replica(batch, "txt")

    def _modality_replica(self, batch, modality):
        images, tags, labels, index = self._batch(batch)
        m = self.models
        network = "imgnet" if modality == "img" else "txtnet"
        f_buf, h_buf = self._pair_targets(modality)
        s = L.similarity(labels, self.train_labels, self.config.similarity)
        other = "txt" if modality == "img" else "img"
        # The direct image<->text term (beside LabNet's), for the students --cross_pair_to
        # names; a DCMH-like run already compares with the other modality (_pair_targets).
        cross = (tf.stop_gradient(self.buffers[f"{other}_H"])
                 if self.config.cross_pair and self.config.label_net
                 and self.config.cross_pair_to in ("both", modality) else None)
        attention = m.get("attention")
        if attention is not None:
            # The other modality's side of the GLOBAL batch (fixed in this step), so every
            # anchor has the same attention partners on N replicas as on one device.
            ctx = tf.distribute.get_replica_context()
            att_s = L.similarity(labels, _all_gather(ctx, labels, axis=0),
                                 self.config.similarity)
            if modality == "img":
                t_out = _float32(m["txtnet"](tags, training=False))
                tokens = _all_gather(ctx, tf.stop_gradient(t_out["tokens"]), axis=0)
                # all_gather takes no bool tensors.
                token_mask = _all_gather(ctx, tf.cast(t_out["token_mask"], tf.int32), axis=0) > 0
                h_other = _all_gather(ctx, tf.stop_gradient(t_out["hash"]), axis=0)
            else:
                v_out = _float32(m["imgnet"](images, training=False))
                regions = _all_gather(ctx, tf.stop_gradient(v_out["regions"]), axis=0)
                h_other = _all_gather(ctx, tf.stop_gradient(v_out["hash"]), axis=0)
        with tf.GradientTape() as tape:
            out = _float32(m[network](images if modality == "img" else tags, training=True))
            b_rows = self._code_target(network, index, out["hash"])
            fake_logits = None
            if self.config.adversarial:
                # Generator term: its gradient reaches this network through D_m(F_m); only
                # this network's variables are updated (the SSAH release updated D instead).
                fake_logits = m["disc_img" if modality == "img" else "disc_txt"](
                    out["feature"], training=False)
            att = None
            if attention is not None:
                if modality == "img":
                    att = tf.cast(attention(out["regions"], tokens, token_mask),
                                  tf.float32)                                        # (n, G)
                else:
                    att = tf.transpose(tf.cast(
                        attention(regions, out["tokens"], out["token_mask"]), tf.float32))
            comps = L.modality_loss(
                out, labels, s, tf.stop_gradient(f_buf), tf.stop_gradient(h_buf), b_rows,
                fake_logits=fake_logits, att=att,
                att_s=att_s if attention is not None else None,
                h_other=h_other if attention is not None else None,
                weights=self.weights, form=self.config.pairwise_form,
                theta_scale=self.config.attention_theta_scale,
                consistency=self.config.attention_consistency, cross_buffer=cross,
                batch_mean=self._global_mean(out["hash"]) if self.weights.balance else None,
                hash_scale=self.hash_scale)
            loss = scale_to_global(comps["total"], self.global_batch_size)
        self._apply(network, tape, loss)
        if self.config.adversarial and self.config.disc_schedule == "step":
            comps[f"disc_{modality}"] = self._disc_step_on(modality, labels, out["feature"])
        return {"logs": self._finish(comps), "index": index,
                "updates": {f"{modality}_F": out["feature"], f"{modality}_H": out["hash"]}}

    def _disc_step_on(self, modality, labels, fake_features):
        """One discriminator step on this batch (--disc_schedule=step): LabNet's features of
        the batch are real, the modality's (before its update) fake."""
        real = self._real_features(labels)
        fake = tf.stop_gradient(fake_features)
        with tf.GradientTape() as tape:
            per_anchor = self._disc_loss(modality, real, fake)
            loss = scale_to_global(per_anchor, self.global_batch_size)
        self._apply("disc", tape, loss)  # the other discriminator gets no gradient: skipped
        return per_anchor
