"""Tests of the UDSPH networks: shapes, ranges, the text fusion, tokens, attention, gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from udsph_tf import losses
from udsph_tf.config import Config, replace
from udsph_tf.models import (CrossModalAttention, Discriminator, FeatureInput, ImgNet, LabNet,
                             TxtNet, build_models)
from udsph_tf.models.txtnet import MultiScaleFusion

BITS, LABELS = 8, 5


def _check_heads(out, n):
    h, lp = out["hash"].numpy(), out["label_pred"].numpy()
    assert h.shape == (n, BITS) and lp.shape == (n, LABELS)
    assert np.all(np.abs(h) < 1) and np.all((lp > 0) & (lp < 1))
    assert np.all(out["feature"].numpy() >= 0)  # ReLU feature


def test_labnet_shapes_and_ranges():
    net = LabNet(LABELS, BITS, hidden=32, feature_dim=16)
    labels = (np.random.default_rng(0).random((6, LABELS)) > 0.5).astype(np.float32)
    out = net(labels)
    assert out["feature"].shape == (6, 16)
    _check_heads(out, 6)


@pytest.mark.parametrize("shape,regions,expect", [
    ((20,), 0, (1, 20)),        # global vector = one region
    ((3, 20), 0, (3, 20)),      # region features
    ((20,), 4, (4, 5)),         # flat region features read as R x d
])
def test_imgnet_global_and_region_input(shape, regions, expect):
    x = np.random.default_rng(1).standard_normal((6,) + shape).astype(np.float32)
    net = ImgNet(BITS, LABELS, hidden=32, feature_dim=16,
                 image_input=FeatureInput(shape, regions=regions))
    out = net(x)
    _check_heads(out, 6)
    assert out["regions"].shape == (6,) + expect
    np.testing.assert_allclose(out["regions"].numpy(), x.reshape((6,) + expect))


def test_imgnet_default_input_pools_regions_and_projects():
    x = np.random.default_rng(2).standard_normal((4, 3, 10)).astype(np.float32)
    net = ImgNet(BITS, LABELS, hidden=32, feature_dim=16, region_dim=7, dropout=0.5)
    out = net(x)
    assert out["regions"].shape == (4, 3, 7)
    # The global path sees the mean of the regions: same outputs as a global-vector ImgNet.
    _, pooled = net.image_input(x)
    np.testing.assert_allclose(pooled.numpy(), x.mean(axis=1), rtol=1e-6)
    # Dropout is active in training only.
    np.testing.assert_allclose(net(x)["hash"].numpy(), out["hash"].numpy())
    assert not np.allclose(net(x, training=True)["feature"].numpy(), out["feature"].numpy())


@pytest.mark.parametrize("shape,regions,match", [
    ((20,), 3, "not divisible"), ((4, 20), 3, "4 regions"), ((8, 8, 3), 0, "backbone")])
def test_feature_input_rejects_bad_shapes(shape, regions, match):
    with pytest.raises(ValueError, match=match):
        FeatureInput(shape, regions=regions)


def _resize_ref(y, size):
    """numpy bilinear resize of (n, L) to (n, size) with half-pixel centres (tf.image.resize)."""
    n, length = y.shape
    src = np.clip((np.arange(size) + 0.5) * length / size - 0.5, 0, None)
    lo = np.minimum(np.floor(src).astype(int), length - 1)
    hi = np.minimum(lo + 1, length - 1)
    frac = src - lo
    return y[:, lo] * (1 - frac) + y[:, hi] * frac


def test_multiscale_fusion_small_vocab_matches_numpy():
    vocab, scales = 12, (50, 5, 3)   # 50 > vocab is clamped to 12
    fusion = MultiScaleFusion(vocab, scales)
    bow = (np.random.default_rng(3).random((4, vocab)) > 0.5).astype(np.float32)
    out = fusion(bow).numpy()
    assert fusion.windows == [12, 5, 3]
    assert out.shape == (4, vocab * 4)
    channels = out.reshape(4, vocab, 4)
    np.testing.assert_array_equal(channels[:, :, 0], bow)
    for k, (w, conv) in enumerate(zip(fusion.windows, fusion.convs), start=1):
        kernel, bias = (v.numpy().ravel()[0] for v in conv.weights)
        length = vocab // w  # 'valid' pooling drops the tail
        pooled = bow[:, :length * w].reshape(4, length, w).mean(-1)
        expect = _resize_ref(np.maximum(kernel * pooled + bias, 0), vocab)
        np.testing.assert_allclose(channels[:, :, k], expect, rtol=1e-5, atol=1e-6)


def test_txtnet_outputs_tokens_and_mask():
    vocab = 12
    net = TxtNet(vocab, BITS, LABELS, hidden=32, feature_dim=16, scales=(5, 3), max_tokens=4,
                 token_dim=6)
    bow = np.zeros((3, vocab), np.float32)
    bow[0, [1, 4, 7, 9, 11]] = 1   # five tags: the four lowest indices win the tie
    bow[1, [2, 10]] = 1            # two tags: two padding tokens
    out = net(bow)                 # row 2: no tags at all
    _check_heads(out, 3)
    assert out["tokens"].shape == (3, 4, 6)
    np.testing.assert_array_equal(out["token_mask"].numpy(),
                                  [[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]])
    table = net.embedding.embeddings.numpy()
    np.testing.assert_allclose(out["tokens"].numpy()[0], table[[1, 4, 7, 9]])
    np.testing.assert_allclose(out["tokens"].numpy()[1, :2], table[[2, 10]])
    assert not out["tokens"].numpy()[1, 2:].any() and not out["tokens"].numpy()[2].any()
    with pytest.raises(ValueError, match="width 12"):
        net(np.zeros((2, 13), np.float32))


def test_txtnet_without_fusion():
    net = TxtNet(12, BITS, LABELS, hidden=32, feature_dim=16, scales=(), max_tokens=40)
    out = net(np.ones((2, 12), np.float32))
    assert net.fusion is None and out["tokens"].shape[1] == 12  # max_tokens capped at vocab


def test_txtnet_without_a_hidden_layer_feeds_the_text_to_the_feature_layer():
    net = TxtNet(12, BITS, LABELS, hidden=0, feature_dim=16, scales=(), max_tokens=4)
    bow = np.eye(12, dtype=np.float32)[:3]
    out = net(bow)
    _check_heads(out, 3)
    assert net.hidden is None and net.feature.kernel.shape == (12, 16)
    want = np.maximum(bow @ net.feature.kernel.numpy() + net.feature.bias.numpy(), 0)
    np.testing.assert_allclose(out["feature"].numpy(), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="hidden width must be >= 0"):
        TxtNet(12, BITS, LABELS, hidden=-1)


def test_discriminator_logits():
    disc = Discriminator((16, 8))
    assert disc(np.ones((5, 12), np.float32)).shape == (5, 1)
    assert [layer.units for layer in disc.hidden_layers] == [16, 8]


# ---- attention ----------------------------------------------------------------------------

def _l2n(x):
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-8)


def _softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def _scan_reference(att, regions, tokens, mask):
    """SCAN's xattn_score_t2i / _i2t written out per pair (materialising attended vectors)."""
    v = _l2n(att.region_proj(regions).numpy().astype(np.float64))
    w = _l2n(att.token_proj(tokens).numpy().astype(np.float64))
    lam, lse = att.lambda_softmax, att.lambda_lse

    def pool(sims):
        if att.pool == "mean":
            return sims.mean()
        return np.log(np.exp(lse * sims).sum()) / lse

    def cosine(a, b):
        return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) *
                                            np.linalg.norm(b, axis=-1), 1e-8)

    def clip_norm(attn):  # attn (context, query): LeakyReLU(0.1), l2norm over the query axis
        attn = np.where(attn > 0, attn, 0.1 * attn)
        return attn / (np.linalg.norm(attn, axis=1, keepdims=True) + 1e-8)

    out = np.zeros((len(v), len(w)))
    for i in range(len(v)):
        for t in range(len(w)):
            words = w[t][mask[t]]
            if not len(words):
                continue
            scores = []
            if att.direction in ("both", "t2i"):
                a = clip_norm(v[i] @ words.T).T                 # (M, R)
                ctx = np.stack([_softmax(lam * row) @ v[i] for row in a])
                scores.append(pool(cosine(words, ctx)))
            if att.direction in ("both", "i2t"):
                a = clip_norm(words @ v[i].T).T                 # (R, M)
                ctx = np.stack([_softmax(lam * row) @ words for row in a])
                scores.append(pool(cosine(v[i], ctx)))
            out[i, t] = np.mean(scores)
    return out


@pytest.mark.parametrize("direction", ["both", "t2i", "i2t"])
@pytest.mark.parametrize("pool", ["lse", "mean"])
def test_attention_matches_scan_reference(direction, pool):
    rng = np.random.default_rng(4)
    regions = rng.standard_normal((3, 4, 10)).astype(np.float32)
    tokens = rng.standard_normal((5, 6, 7)).astype(np.float32)
    mask = rng.random((5, 6)) > 0.4
    mask[0] = True
    mask[1] = False  # a text without tags
    att = CrossModalAttention(10, 7, dim=8, pool=pool, direction=direction)
    sim = att(regions, tokens, mask).numpy()
    assert sim.shape == (3, 5)
    np.testing.assert_allclose(sim, _scan_reference(att, regions, tokens, mask), atol=2e-5)
    assert not sim[:, 1].any()


def test_attention_padding_tokens_change_nothing():
    rng = np.random.default_rng(5)
    regions = rng.standard_normal((3, 2, 10)).astype(np.float32)
    tokens = rng.standard_normal((4, 3, 7)).astype(np.float32)
    mask = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]], bool)
    att = CrossModalAttention(10, 7, dim=8)
    base = att(regions, tokens, mask).numpy()
    # Extra padding tokens with arbitrary (non-zero) content, and garbage in existing padding.
    padded = np.concatenate([tokens, 100 * rng.standard_normal((4, 5, 7))], axis=1)
    padded[1, 2] = padded[2, 1:3] = 50.0
    pmask = np.concatenate([mask, np.zeros((4, 5), bool)], axis=1)
    np.testing.assert_allclose(att(regions, padded.astype(np.float32), pmask).numpy(), base,
                               rtol=1e-5, atol=1e-6)
    # A float 0/1 mask means the same as a bool mask.
    np.testing.assert_allclose(att(regions, tokens, mask.astype(np.float32)).numpy(), base)


def test_attention_global_vector_and_gradients():
    rng = np.random.default_rng(6)
    att = CrossModalAttention(10, 7, dim=8)
    regions = tf.constant(rng.standard_normal((3, 10)), tf.float32)  # global vectors
    tokens = tf.constant(rng.standard_normal((3, 4, 7)), tf.float32)
    mask_np = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]], bool)
    mask = tf.constant(mask_np)
    with tf.GradientTape() as tape:
        tape.watch(tokens)
        sim = att(regions, tokens, mask)
        total = tf.reduce_sum(sim)
    grads = tape.gradient(total, att.trainable_variables + [tokens])
    assert sim.shape == (3, 3)
    assert all(np.isfinite(g.numpy()).all() for g in grads)
    assert np.abs(grads[0].numpy()).sum() > 0
    # Padding tokens (and the text without tags) get exactly no gradient; valid tokens do.
    assert not grads[-1].numpy()[~mask_np].any()
    assert np.abs(grads[-1].numpy()[mask_np]).sum(-1).min() > 0


def test_attention_rejects_bad_arguments():
    with pytest.raises(ValueError, match="pool"):
        CrossModalAttention(4, 4, pool="max")
    with pytest.raises(ValueError, match="direction"):
        CrossModalAttention(4, 4, direction="up")
    att = CrossModalAttention(4, 3, dim=2)
    with pytest.raises(ValueError, match="width 4"):
        att(np.zeros((2, 1, 5), np.float32), np.zeros((2, 2, 3), np.float32))


# ---- the adversarial gradient (an SSAH defect not to reproduce) ----------------------------

def test_generator_adversarial_gradient_reaches_imgnet_and_only_imgnet():
    rng = np.random.default_rng(7)
    imgnet = ImgNet(BITS, LABELS, hidden=16, feature_dim=12)
    disc = Discriminator((8, 4))
    x = rng.standard_normal((6, 10)).astype(np.float32)
    disc(imgnet(x)["feature"])
    disc_before = [v.numpy().copy() for v in disc.trainable_variables]
    img_before = [v.numpy().copy() for v in imgnet.trainable_variables]
    opt = keras.optimizers.SGD(0.1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(losses.generator_adversarial(disc(imgnet(x)["feature"])))
    grads = tape.gradient(loss, imgnet.trainable_variables)
    # Non-zero through the discriminator into the feature layers (SSAH fed numpy, so zero).
    feature_kernel = imgnet.feature.kernel
    g = dict(zip([v.path for v in imgnet.trainable_variables], grads))
    assert np.abs(g[feature_kernel.path].numpy()).sum() > 0
    assert np.abs(g[imgnet.hidden.kernel.path].numpy()).sum() > 0
    # The heads are not on the path F_m -> D; skip their None gradients.
    opt.apply_gradients([(gr, v) for gr, v in zip(grads, imgnet.trainable_variables)
                         if gr is not None])
    assert any(not np.allclose(a, v.numpy()) for a, v in zip(img_before,
                                                             imgnet.trainable_variables))
    for before, v in zip(disc_before, disc.trainable_variables):
        np.testing.assert_array_equal(before, v.numpy())
    # The discriminator's own loss on detached features sends nothing back into ImgNet.
    with tf.GradientTape() as tape:
        feat = tf.stop_gradient(imgnet(x)["feature"])
        dloss = tf.reduce_mean(losses.discriminator_loss(disc(feat), disc(feat)))
    assert all(gr is None for gr in tape.gradient(dloss, imgnet.trainable_variables))


# ---- build_models ------------------------------------------------------------------------

def _small_config(**changes):
    base = replace(Config(), bits=BITS, labnet_hidden=16, imgnet_hidden=16, txtnet_hidden=16,
                   feature_dim=12, disc_hidden="8,4", attention_dim=8, txt_scales="5,3")
    return replace(base, **changes)


def test_build_models_full():
    models = build_models(_small_config(), (10,), 20, LABELS)
    assert set(models) == {"labnet", "imgnet", "txtnet", "disc_img", "disc_txt", "attention"}
    assert all(m is not None for m in models.values())
    # The attention has no variables of its own: ImgNet and TxtNet own its projections.
    assert all(models[k].trainable_variables for k in models if k != "attention")
    assert models["attention"].trainable_variables == []
    assert models["disc_img"] is not models["disc_txt"]
    img = models["imgnet"](np.ones((3, 10), np.float32))
    txt = models["txtnet"](np.ones((4, 20), np.float32))
    assert models["attention"](img["regions"], txt["tokens"], txt["token_mask"]).shape == (3, 4)


def test_checkpoint_reaches_every_variable_of_every_network():
    # tf.train.Checkpoint does not traverse layers held in plain Python lists inside Keras 3
    # layers; such weights would silently restore as random values after a resume or export.
    models = build_models(_small_config(image_regions=3), (3, 10), 20, LABELS)
    checkpoint = tf.train.Checkpoint(**{name: m for name, m in models.items()})
    reachable = {id(t) for t in tf.train.TrackableView(checkpoint).descendants()}
    missing = [v.path for m in models.values() for v in m.variables if id(v) not in reachable]
    assert missing == []


@pytest.mark.parametrize("changes,none", [
    ({"label_net": False}, {"labnet", "disc_img", "disc_txt"}),
    ({"adversarial": False}, {"disc_img", "disc_txt"}),
    ({"attention": "none"}, {"attention"}),
    ({"label_net": False, "adversarial": False, "attention": "none"},
     {"labnet", "disc_img", "disc_txt", "attention"}),
])
def test_build_models_switches(changes, none):
    models = build_models(_small_config(**changes), (10,), 20, LABELS)
    assert {k for k, m in models.items() if m is None} == none


def test_build_models_regions_and_bad_sizes():
    models = build_models(_small_config(image_regions=3), (3, 10), 20, LABELS)
    # Regions come out projected into the attention space (attention_dim=8).
    assert models["imgnet"](np.ones((2, 3, 10), np.float32))["regions"].shape == (2, 3, 8)
    with pytest.raises(ValueError, match="tag_dim"):
        build_models(_small_config(), (10,), 0, LABELS)


# ---- graph mode, mixed precision, real data ---------------------------------------------

def test_models_trace_with_unknown_batch():
    models = build_models(_small_config(), (10,), 20, LABELS)
    img_spec = tf.TensorSpec([None, 10], tf.float32)
    txt_spec = tf.TensorSpec([None, 20], tf.float32)

    @tf.function(input_signature=[img_spec, txt_spec])
    def forward(images, tags):
        img = models["imgnet"](images)
        txt = models["txtnet"](tags)
        return img["hash"], txt["hash"], models["attention"](img["regions"], txt["tokens"],
                                                             txt["token_mask"])

    tags = np.zeros((3, 20), np.float32)
    tags[:, :4] = 1
    h_img, h_txt, sim = forward(np.ones((2, 10), np.float32), tags)
    assert h_img.shape == (2, BITS) and h_txt.shape == (3, BITS) and sim.shape == (2, 3)


def test_mixed_precision_keeps_heads_float32():
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        models = build_models(_small_config(), (10,), 20, LABELS)
        img = models["imgnet"](np.ones((2, 10), np.float32))
        txt = models["txtnet"](np.ones((2, 20), np.float32))
        assert img["feature"].dtype == tf.float16
        assert img["hash"].dtype == tf.float32 and txt["label_pred"].dtype == tf.float32
        assert models["disc_img"](img["feature"]).dtype == tf.float32
        sim = models["attention"](img["regions"], txt["tokens"], txt["token_mask"])
        assert sim.dtype == tf.float32 and np.isfinite(sim.numpy()).all()
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


@pytest.mark.realdata
def test_txtnet_tokens_on_real_mirflickr_tags(mirflickr_dir):
    import scipy.io
    tags = scipy.io.loadmat(mirflickr_dir / "mirflickr25k-yall.mat")["YAll"][:300]
    tags = tags.astype(np.float32)
    net = TxtNet(tags.shape[1], 16, 24, hidden=32, feature_dim=16, max_tokens=32, token_dim=8)
    out = net(tags)
    assert out["feature"].shape == (300, 16)
    counts = tags.sum(1).astype(int)
    # Each text keeps its tags (up to 32), and exactly the tags it has.
    np.testing.assert_array_equal(out["token_mask"].numpy().sum(1), np.minimum(counts, 32))
    _, index = tf.math.top_k(tags, k=32)
    chosen = np.take_along_axis(tags, index.numpy(), axis=1)
    np.testing.assert_array_equal(chosen > 0, out["token_mask"].numpy())


# ---- attention reaches the hashing networks; weights over real regions ------------------

def _attention_term(models, images, tags, labels):
    img, txt = models["imgnet"](images, training=True), models["txtnet"](tags, training=True)
    att = models["attention"](img["regions"], txt["tokens"], txt["token_mask"])
    s = losses.similarity(labels, labels)
    return tf.reduce_mean(losses.attention_loss(att, s, img["hash"], txt["hash"])), att


@pytest.mark.parametrize("image_shape", [(10,), (4, 10)])
def test_attention_term_gradient_reaches_imgnet_and_txtnet(image_shape):
    models = build_models(_small_config(), image_shape, 20, LABELS)
    rng = np.random.default_rng(11)
    images = rng.standard_normal((6,) + image_shape).astype(np.float32)
    tags = (rng.random((6, 20)) < 0.3).astype(np.float32)
    tags[:, 0] = 1.0  # every text has a tag
    labels = (rng.random((6, LABELS)) < 0.4).astype(np.float32)
    imgnet, txtnet = models["imgnet"], models["txtnet"]
    with tf.GradientTape(persistent=True) as tape:
        term, att = _attention_term(models, images, tags, labels)
    assert np.isfinite(term.numpy()) and np.isfinite(att.numpy()).all()
    for net, names in ((imgnet, ("region_proj",)), (txtnet, ("token_proj", "tag_embedding"))):
        grads = dict(zip([v.path for v in net.trainable_variables],
                         tape.gradient(term, net.trainable_variables)))
        for name in names:
            reached = [p for p, g in grads.items() if name in p and g is not None
                       and np.abs(tf.convert_to_tensor(g).numpy()).sum() > 0]
            assert reached, f"no attention gradient reaches {net.name}'s {name}: {list(grads)}"


def test_attention_weights_over_several_regions_depend_on_them():
    rng = np.random.default_rng(12)
    att = CrossModalAttention(8, 8, dim=8, project=False)
    regions = rng.standard_normal((2, 4, 8)).astype(np.float32)
    tokens = rng.standard_normal((3, 5, 8)).astype(np.float32)
    mask = np.ones((3, 5), bool)
    t2i = att.attention_weights(regions, tokens, mask)["t2i"].numpy()  # (n_i, n_t, R, M)
    np.testing.assert_allclose(t2i.sum(axis=2), 1.0, rtol=1e-5)
    # Not uniform: each token prefers some regions over others.
    assert (t2i.max(axis=2) - t2i.min(axis=2)).min() > 1e-3
    assert np.abs(t2i - 0.25).max() > 0.1
    # Changing one region of image 0 changes image 0's weights, not image 1's.
    changed = regions.copy()
    changed[0, 2] = rng.standard_normal(8)
    t2i_changed = att.attention_weights(changed, tokens, mask)["t2i"].numpy()
    assert np.abs(t2i_changed[0] - t2i[0]).max() > 1e-2
    np.testing.assert_allclose(t2i_changed[1], t2i[1], rtol=1e-6)
    # One region: the softmax is identically 1 (why a global vector gives no attention).
    one = att.attention_weights(regions[:, :1], tokens, mask)["t2i"].numpy()
    np.testing.assert_allclose(one, 1.0)


def test_attention_without_projections_needs_the_common_width():
    with pytest.raises(ValueError, match="dim=8"):
        CrossModalAttention(10, 8, dim=8, project=False)
