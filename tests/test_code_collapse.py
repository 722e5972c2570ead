"""Regression tests for the text-code collapse of the default run (see docs/training.md)."""

import tensorflow as tf

from udsph_tf import losses as L
from udsph_tf.config import Config, replace
from udsph_tf.data.synthetic import generate_default
from udsph_tf.models import build_models

SMALL = dict(labnet_hidden=512, imgnet_hidden=512, txtnet_hidden=512, attention="none",
             progress=False, keep_checkpoints=1, min_pass_steps=40,  # the test's budget
             refit=False)


def _component_grad_norms(config, n_train=600, batch=64):
    """Norm of each TxtNet-step loss component's gradient on TxtNet's feature-layer kernel, weighted
    as the default Config weighs it, at initialisation (buffers = untrained outputs, as the
    trainer fills them)."""
    tf.keras.utils.set_random_seed(0)
    d = generate_default(0, num_items=n_train)
    m = build_models(config, d.images.shape[1:], d.tag_dim, d.num_labels)
    lab = m["labnet"](d.labels)
    b = tf.where(lab["hash"] + m["txtnet"](d.tags)["hash"] + m["imgnet"](d.images)["hash"] >= 0,
                 1.0, -1.0)
    weights = L.LossWeights.from_config(config)
    s = L.similarity(d.labels[:batch], d.labels)
    with tf.GradientTape(persistent=True) as tape:
        out = m["txtnet"](d.tags[:batch], training=True)
        comps = L.modality_loss(out, d.labels[:batch], s, lab["feature"], lab["hash"], b[:batch],
                                fake_logits=m["disc_txt"](out["feature"]), weights=weights)
        w = {"feature_pair": weights.alpha, "hash_pair": weights.gamma,
             "quantization": weights.beta, "label": weights.eta, "adversarial": weights.delta}
        weighted = {k: w[k] * tf.reduce_mean(comps[k]) for k in w}
    kernel = m["txtnet"].feature.kernel  # every component reaches the shared feature layer
    return {k: float(tf.norm(tape.gradient(v, kernel))) for k, v in weighted.items()}


def test_default_weights_let_the_similarity_term_steer_the_codes():
    # With gamma=1 the hash-code likelihood (averaged over the N buffer columns, not summed as
    # in SSAH) had a ~14x smaller gradient than the quantisation towards B (the sign of the
    # untrained networks at the start) and the adversary: codes followed B, not similarity.
    norms = _component_grad_norms(replace(Config(), **SMALL))
    assert norms["hash_pair"] >= norms["quantization"], norms
    assert norms["hash_pair"] >= norms["adversarial"], norms


def test_gamma_one_is_dominated_the_way_the_collapsed_runs_were():
    # The diagnosis itself: the old default is dominated (so the test above is not vacuous).
    norms = _component_grad_norms(replace(Config(), gamma=1.0, **SMALL))
    assert norms["hash_pair"] < 0.5 * norms["quantization"], norms


# The end-to-end check (a short default-data run keeps many distinct text codes and beats
# chance) is part of tests/test_learning_quality.py's multi-label bag-of-words family.
