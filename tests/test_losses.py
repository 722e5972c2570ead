"""Tests of the UDSPH losses on hand-checkable cases (values worked out in the comments)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from udsph_tf import losses
from udsph_tf.config import Config, replace

SP = lambda t: math.log1p(math.exp(t))  # noqa: E731  softplus
X2 = np.array([[1, 1], [1, -1]], np.float32)
Y2 = np.array([[1, 1], [-1, 1]], np.float32)
S2 = np.array([[1, 0], [0, 1]], np.float32)
# Theta = 0.5 X Y^T = [[1, 0], [0, -1]]


def test_similarity_hand_case():
    la = np.array([[1, 0, 1], [0, 1, 0]])
    lb = np.array([[0, 0, 1], [1, 1, 0]])
    np.testing.assert_array_equal(losses.similarity(la, lb).numpy(), [[1, 1], [0, 1]])
    assert losses.similarity(la, lb).dtype == tf.float32


def test_cosine_similarity_is_graded_and_equals_binary_on_single_labels():
    la = tf.constant([[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]], tf.float32)
    lb = tf.constant([[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 1]], tf.float32)
    # Hand values: cos = shared / sqrt(|a| |b|); an all-zero row gives 0, never NaN.
    expected = [[1 / math.sqrt(2), 1.0, 1 / math.sqrt(6)], [0.0, 0.0, 1 / math.sqrt(3)],
                [0.0, 0.0, 0.0]]
    np.testing.assert_allclose(losses.similarity(la, lb, "cosine").numpy(), expected, atol=1e-6)
    one_hot = tf.one_hot([0, 2, 1, 2, 0], 3)
    np.testing.assert_array_equal(losses.similarity(one_hot, one_hot, "cosine").numpy(),
                                  losses.similarity(one_hot, one_hot).numpy())
    with pytest.raises(ValueError, match="similarity must be one of"):
        losses.similarity(la, lb, "jaccard")


def test_pairwise_likelihood_exact_2x2():
    got = losses.pairwise_nll(X2, Y2, S2).numpy()
    # row 0: (log(1+e) - 1) + log 2; row 1: log 2 + (log(1+e^-1) + 1); mean over 2 columns.
    expect = [(SP(1) - 1 + math.log(2)) / 2, (math.log(2) + SP(-1) + 1) / 2]
    np.testing.assert_allclose(got, expect, rtol=1e-6)


def test_pairwise_ssah_squared_exact_2x2():
    got = losses.pairwise_nll(X2, Y2, S2, form="ssah_squared").numpy()
    # 0.5 * (S Theta - log(1 + e^Theta))^2 per pair.
    expect = [(0.5 * (1 - SP(1)) ** 2 + 0.5 * math.log(2) ** 2) / 2,
              (0.5 * math.log(2) ** 2 + 0.5 * (-1 - SP(-1)) ** 2) / 2]
    np.testing.assert_allclose(got, expect, rtol=1e-6)
    with pytest.raises(ValueError, match="pairwise form"):
        losses.pairwise_nll(X2, Y2, S2, form="squared")


def test_pairwise_perfect_codes_beat_shuffled_and_stay_finite():
    rng = np.random.default_rng(0)
    classes = rng.integers(0, 4, size=40)
    labels = np.eye(4)[classes]
    s = losses.similarity(labels, labels)
    class_codes = np.sign(rng.standard_normal((4, 16))).astype(np.float32)
    perfect = class_codes[classes]
    shuffled = perfect[rng.permutation(40)]
    good = losses.pairwise_nll(perfect, perfect, s).numpy().mean()
    bad = losses.pairwise_nll(shuffled, shuffled, s).numpy().mean()
    assert good < bad
    # Theta = +-5000: softplus keeps the likelihood finite where log(1 + exp) overflows.
    huge = losses.pairwise_nll(100 * perfect, 100 * perfect, s).numpy()
    assert np.isfinite(huge).all()


def test_quantization_and_label_prediction_exact():
    np.testing.assert_allclose(
        losses.quantization([[1, -1], [1, 1]], [[0.5, -1], [-1, 1]]).numpy(),
        [0.25 / 2, 4 / 2])
    np.testing.assert_allclose(
        losses.label_prediction([[1, 0, 1]], [[0.5, 0.5, 1.0]]).numpy(), [0.5 / 3])


def test_adversarial_losses_exact():
    np.testing.assert_allclose(losses.generator_adversarial([[0.0], [2.0]]).numpy(),
                               [math.log(2), SP(-2)], rtol=1e-6)
    np.testing.assert_allclose(
        losses.discriminator_loss([[0.0], [3.0]], [[0.0], [-3.0]]).numpy(),
        [2 * math.log(2), 2 * SP(-3)], rtol=1e-6)
    # A discriminator that is right scores lower than one that is wrong.
    right = losses.discriminator_loss([[4.0]], [[-4.0]]).numpy()
    wrong = losses.discriminator_loss([[-4.0]], [[4.0]]).numpy()
    assert right < wrong
    with pytest.raises(ValueError, match="pair up"):
        losses.discriminator_loss(np.zeros((3, 1)), np.zeros((2, 1)))
    with pytest.raises(ValueError, match=r"\(n, 1\)"):
        losses.generator_adversarial(np.zeros((3, 2)))


def test_attention_loss_exact_2x2_and_detached_attention():
    att = np.array([[1.0, 0.0], [0.5, -1.0]], np.float32)
    h = np.array([[1, 1], [1, -1]], np.float32)   # code similarity h h^T / 2 = identity
    got = losses.attention_loss(att, S2, h, h, theta_scale=2.0).numpy()
    # Theta = 2 A = [[2, 0], [1, -2]]; consistency (I - A)^2 = [[0, 0], [0.25, 4]].
    nll = [(SP(2) - 2 + math.log(2)) / 2, (SP(1) + SP(-2) + 2) / 2]
    np.testing.assert_allclose(got, [nll[0] + 0.0, nll[1] + (0.25 + 4) / 2], rtol=1e-6)
    # LSE pooling can give A > 1: the consistency target is clipped to [-1, 1].
    over = losses.attention_loss([[1.4]], [[1.0]], [[1.0]], [[1.0]], theta_scale=1.0).numpy()
    np.testing.assert_allclose(over, [SP(1.4) - 1.4], rtol=1e-6)

    att_t = tf.constant(att)
    h_t = tf.constant(h * 0.5)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([att_t, h_t])
        full = tf.reduce_sum(losses.attention_loss(att_t, S2, h_t, h, theta_scale=2.0))
        nll_only = tf.reduce_sum(losses.attention_loss(att_t, S2, h_t, h, theta_scale=2.0,
                                                       consistency=0.0))
    # A gets gradient only from its likelihood (detached in the consistency term) ...
    np.testing.assert_allclose(tape.gradient(full, att_t).numpy(),
                               tape.gradient(nll_only, att_t).numpy())
    # ... while the codes are pulled towards A.
    assert np.abs(tape.gradient(full, h_t).numpy()).sum() > 0


def test_attention_loss_prefers_attention_that_follows_labels():
    s = np.eye(6, dtype=np.float32)
    h = np.zeros((6, 4), np.float32)
    aligned = 2 * s - 1
    assert (losses.attention_loss(aligned, s, h, h).numpy().mean()
            < losses.attention_loss(-aligned, s, h, h).numpy().mean())


def _outputs(rng, n, k=4, c=3, f=5):
    return {"feature": tf.constant(rng.random((n, f)), tf.float32),
            "hash": tf.constant(np.tanh(rng.standard_normal((n, k))), tf.float32),
            "label_pred": tf.constant(rng.random((n, c)), tf.float32)}


def test_labnet_and_modality_loss_weighted_sums():
    rng = np.random.default_rng(1)
    out = _outputs(rng, 3)
    labels = (rng.random((3, 3)) > 0.5).astype(np.float32)
    buf_labels = (rng.random((7, 3)) > 0.5).astype(np.float32)
    s = losses.similarity(labels, buf_labels)
    fbuf, hbuf = rng.random((7, 5)).astype(np.float32), rng.random((7, 4)).astype(np.float32)
    b = np.sign(rng.standard_normal((3, 4))).astype(np.float32)
    w = losses.LossWeights(alpha=2, gamma=3, beta=5, eta=7, delta=11, mu=13, balance=17)

    lab = losses.labnet_loss(out, labels, s, fbuf, hbuf, b, weights=w)
    assert set(lab) == {"feature_pair", "hash_pair", "quantization", "label", "balance",
                        "total"}
    # Its batch mean is ||mean_batch(h)||^2 / K; per anchor it is the linearised form.
    m = np.mean(out["hash"], axis=0)
    np.testing.assert_allclose(lab["balance"].numpy().mean(), np.mean(m ** 2), rtol=1e-5)
    np.testing.assert_allclose(lab["balance"].numpy(),
                               (2 * np.asarray(out["hash"]) @ m - m @ m) / 4, rtol=1e-5)
    np.testing.assert_allclose(
        lab["total"].numpy(),
        2 * losses.pairwise_nll(out["feature"], fbuf, s).numpy()
        + 3 * losses.pairwise_nll(out["hash"], hbuf, s).numpy()
        + 5 * losses.quantization(b, out["hash"]).numpy()
        + 7 * losses.label_prediction(labels, out["label_pred"]).numpy()
        + 17 * lab["balance"].numpy(), rtol=1e-5)

    fake = rng.standard_normal((3, 1)).astype(np.float32)
    att = rng.uniform(-1, 1, (3, 4)).astype(np.float32)
    att_s = (rng.random((3, 4)) > 0.5).astype(np.float32)
    h_other = np.tanh(rng.standard_normal((4, 4))).astype(np.float32)
    mod = losses.modality_loss(out, labels, s, fbuf, hbuf, b, fake_logits=fake, att=att,
                               att_s=att_s, h_other=h_other, weights=w, theta_scale=3.0)
    assert mod["total"].shape == (3,)
    expect = (2 * mod["feature_pair"] + 3 * mod["hash_pair"] + 5 * mod["quantization"]
              + 7 * mod["label"] + 11 * mod["adversarial"] + 13 * mod["attention"]
              + 17 * mod["balance"])
    np.testing.assert_allclose(mod["total"].numpy(), expect.numpy(), rtol=1e-6)
    np.testing.assert_allclose(mod["adversarial"].numpy(),
                               losses.generator_adversarial(fake).numpy())
    np.testing.assert_allclose(
        mod["attention"].numpy(),
        losses.attention_loss(att, att_s, out["hash"], h_other, theta_scale=3.0).numpy())

    # DCMH-like: no feature buffer, no adversary, no attention -> those terms are absent.
    plain = losses.modality_loss(out, labels, s, None, hbuf, b,
                                 weights=losses.LossWeights(balance=0.0))
    assert set(plain) == {"hash_pair", "quantization", "label", "total"}
    # The direct image<->text term joins only with a code buffer and a weight.
    crossed = losses.modality_loss(out, labels, s, None, hbuf, b, cross_buffer=hbuf,
                                   weights=losses.LossWeights(balance=0.0, cross_pair=2.0))
    np.testing.assert_allclose(crossed["cross_pair"].numpy(),
                               losses.pairwise_nll(out["hash"], hbuf, s).numpy())
    np.testing.assert_allclose(crossed["total"].numpy(),
                               (plain["total"] + 2 * crossed["cross_pair"]).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="att_s and h_other"):
        losses.modality_loss(out, labels, s, fbuf, hbuf, b, att=att)


def test_per_bit_hash_theta_equals_fixed_at_32_bits_and_scales_with_the_length():
    assert losses.hash_theta_scale("fixed", 64) == 0.5
    assert losses.hash_theta_scale("per_bit", 32) == 0.5
    assert losses.hash_theta_scale("per_bit", 64) == 0.25
    assert losses.hash_theta_scale("per_bit", 16) == 1.0
    with pytest.raises(ValueError, match="hash_theta"):
        losses.hash_theta_scale("sqrt", 32)
    rng = np.random.default_rng(5)
    h = tf.constant(np.sign(rng.normal(size=(3, 64))), tf.float32)
    buf = tf.constant(np.sign(rng.normal(size=(4, 64))), tf.float32)
    s = tf.constant(rng.integers(0, 2, (3, 4)), tf.float32)
    # Theta = 0.25 h.h' is the fixed rule's 0.5 on h / 2.
    np.testing.assert_allclose(losses.pairwise_nll(h, buf, s, scale=0.25).numpy(),
                               losses.pairwise_nll(h / 2, buf, s).numpy(), rtol=1e-6)
    # The scale reaches the code terms only: the feature term keeps SSAH's 0.5.
    out = {"feature": h, "hash": h, "label_pred": tf.zeros((3, 2))}
    labels = tf.zeros((3, 2))
    w = losses.LossWeights(balance=0.0, cross_pair=1.0)
    got = losses.modality_loss(out, labels, s, buf, buf, h, cross_buffer=buf, weights=w,
                               hash_scale=0.25)
    ref = losses.modality_loss(out, labels, s, buf, buf, h, cross_buffer=buf, weights=w)
    np.testing.assert_allclose(got["feature_pair"].numpy(), ref["feature_pair"].numpy())
    for term in ("hash_pair", "cross_pair"):
        np.testing.assert_allclose(got[term].numpy(),
                                   losses.pairwise_nll(h, buf, s, scale=0.25).numpy(), rtol=1e-6)
    lab = losses.labnet_loss(out, labels, s, buf, buf, h, weights=w, hash_scale=0.25)
    np.testing.assert_allclose(lab["hash_pair"].numpy(), got["hash_pair"].numpy(), rtol=1e-6)


def test_bit_balance_gradient_is_that_of_the_squared_batch_mean():
    h = tf.Variable(np.random.default_rng(3).uniform(-1, 1, (6, 5)).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        per_anchor = tf.reduce_mean(losses.bit_balance(h))
        direct = tf.reduce_mean(tf.square(tf.reduce_mean(h, axis=0)))
    np.testing.assert_allclose(per_anchor.numpy(), direct.numpy(), rtol=1e-5)
    np.testing.assert_allclose(tape.gradient(per_anchor, h).numpy(),
                               tape.gradient(direct, h).numpy(), rtol=1e-5, atol=1e-7)


def test_loss_weights_from_config():
    w = losses.LossWeights.from_config(replace(Config(), alpha=0.5, gamma=2.0, mu=0.1))
    assert (w.alpha, w.gamma, w.mu) == (0.5, 2.0, 0.1)
