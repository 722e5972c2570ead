"""UDSPH losses as plain functions of tensors, each returning one value per anchor (batch row).

Every function returns a per-anchor vector (n,) so that the trainer averages over the global
batch exactly once (tf.nn.compute_average_loss); pairwise terms are first averaged over the
buffer (column) axis. Weights (alpha, gamma, beta, eta, delta, mu) therefore weigh per-pair
means against per-bit / per-label means, not SSAH's raw sums.
"""

import dataclasses

import tensorflow as tf

from udsph_tf.config import Config

PAIRWISE_FORMS = ("likelihood", "ssah_squared")
HASH_THETAS = ("fixed", "per_bit")
_CONFIG_DEFAULTS = Config()  # the weights' defaults are the flags' (written once, in config.py)


SIMILARITIES = ("binary", "cosine")


def similarity(labels_a, labels_b, kind="binary"):
    """S (n_a, n_b) float32 in [0, 1]. binary: 1 where two label rows share at least one label,
    else 0. cosine: the cosine of the two label rows, a graded S that ranks pairs sharing more
    labels above pairs sharing fewer; on single-label data it equals binary exactly."""
    a = tf.cast(labels_a, tf.float32)
    b = tf.cast(labels_b, tf.float32)
    shared = tf.matmul(a, b, transpose_b=True)
    if kind == "binary":
        return tf.cast(shared > 0, tf.float32)
    if kind == "cosine":
        norms = tf.sqrt(tf.reduce_sum(a, 1))[:, None] * tf.sqrt(tf.reduce_sum(b, 1))[None, :]
        # Rows are 0/1, so |l|^2 = sum(l); min(., 1) drops rounding above 1 on equal rows.
        return tf.minimum(tf.math.divide_no_nan(shared, norms), 1.0)
    raise ValueError(f"similarity must be one of {SIMILARITIES}, got {kind!r}")


def _pairwise_from_theta(theta, s, form):
    if form == "likelihood":
        # -log p(S | Theta) = log(1 + e^Theta) - S * Theta; softplus never overflows.
        return tf.nn.softplus(theta) - s * theta
    if form == "ssah_squared":
        # SSAH's released code: tf.nn.l2_loss(S * Theta - log(1 + e^Theta)) per pair.
        return 0.5 * tf.square(s * theta - tf.nn.softplus(theta))
    raise ValueError(f"pairwise form must be one of {PAIRWISE_FORMS}, got {form!r}")


def hash_theta_scale(kind, bits):
    """The factor c of Theta = c * h @ h'^T in the code (hash) likelihoods (--hash_theta).

    fixed: 0.5 (SSAH, DCMH) at every length, so Theta spans +-K/2 and the term's sharpness and
    its weight against the per-bit quantisation grow with K. per_bit: 16 / K, equal to 0.5 at
    32 bits (where the loss weights were chosen) and the same Theta per fraction of bits
    agreeing at every length.
    """
    if kind == "fixed":
        return 0.5
    if kind == "per_bit":
        return 16.0 / float(bits)
    raise ValueError(f"hash_theta must be one of {HASH_THETAS}, got {kind!r}")


def pairwise_nll(x, y_buffer, s, form="likelihood", scale=0.5):
    """Per-anchor (n,) mean over the buffer of the pairwise term on Theta = scale * x @ y^T.

    x (n, k) anchors, y_buffer (N, k), s (n, N) 0/1. form "likelihood" is the negative
    log-likelihood log(1 + e^Theta) - S Theta (SSAH paper, DCMH); "ssah_squared" is the
    squared error of SSAH's released code, an option only. scale: 0.5 as in SSAH, or
    hash_theta_scale's for codes.
    """
    x = tf.cast(x, tf.float32)
    theta = scale * tf.matmul(x, tf.cast(y_buffer, tf.float32), transpose_b=True)
    return tf.reduce_mean(_pairwise_from_theta(theta, tf.cast(s, tf.float32), form), axis=1)


def quantization(b, h):
    """Per-anchor ||b - h||^2 / K: the squared distance to the binary code, divided by the bits."""
    b = tf.cast(b, tf.float32)
    return tf.reduce_mean(tf.square(b - tf.cast(h, tf.float32)), axis=1)


def label_prediction(labels, label_pred):
    """Per-anchor ||L - L_hat||^2 / C (squared error, SSAH's label loss, averaged over labels)."""
    labels = tf.cast(labels, tf.float32)
    return tf.reduce_mean(tf.square(labels - tf.cast(label_pred, tf.float32)), axis=1)


def bit_balance(h, batch_mean=None):
    """Per-anchor bit-balance term whose batch mean is ||m||^2 / K, m the batch mean of h.

    Written per anchor as (2 h_i . m - m . m) / K with m held constant: the mean over the
    anchors is ||m||^2 / K, and the gradient with respect to each h_i is exactly that of
    ||m||^2 / K. `batch_mean` is m over the GLOBAL batch (the trainer all-reduces it across
    replicas, so N replicas take the single-device step); None uses this batch's own mean.
    0 when every bit is +1 for half of the batch: codes that use all 2^K corners.
    """
    h = tf.cast(h, tf.float32)
    m = tf.reduce_mean(h, axis=0) if batch_mean is None else tf.cast(batch_mean, tf.float32)
    m = tf.stop_gradient(m)
    k = float(h.shape[-1])
    return (2.0 * tf.linalg.matvec(h, m) - tf.reduce_sum(tf.square(m))) / k


def _logits_vector(logits, name):
    logits = tf.cast(logits, tf.float32)
    if logits.shape.rank == 2:
        if logits.shape[1] != 1:
            raise ValueError(f"{name} must be (n,) or (n, 1) logits, got {logits.shape}")
        logits = logits[:, 0]
    return logits


def generator_adversarial(fake_logits):
    """Per-anchor sigmoid cross-entropy of D(F_m) against the 'real' target: softplus(-logit).

    The gradient must reach the modality network through D(F_m); the trainer applies it to the
    ImgNet/TxtNet variables only (not the discriminator's), unlike SSAH's release.
    """
    return tf.nn.softplus(-_logits_vector(fake_logits, "fake_logits"))


def discriminator_loss(real_logits, fake_logits):
    """Per-anchor CE(D(F_l), real) + CE(D(F_m), fake) = softplus(-real) + softplus(fake).

    Pass the features stop-gradient'ed (or take gradients w.r.t. the discriminator only): this
    loss trains the discriminator and nothing else.
    """
    real = _logits_vector(real_logits, "real_logits")
    fake = _logits_vector(fake_logits, "fake_logits")
    if real.shape[0] is not None and fake.shape[0] is not None and real.shape[0] != fake.shape[0]:
        raise ValueError(f"real and fake logits must pair up per anchor, got {real.shape[0]} "
                         f"and {fake.shape[0]}")
    return tf.nn.softplus(-real) + tf.nn.softplus(fake)


def attention_loss(att, s, h_img, h_txt, theta_scale=5.0, consistency=1.0,
                   form="likelihood"):
    """Per-anchor (rows of att) local semantic correlation loss on the attention similarity.

    att (n, m) from CrossModalAttention (rows images, columns texts), s (n, m) 0/1, h_img (n, K),
    h_txt (m, K). Two terms, each averaged over the m columns:
    - the pairwise likelihood with Theta = theta_scale * att: A is a cosine-like score in about
      [-1, 1], so without the scale the likelihood could barely separate S = 0 from S = 1;
    - consistency * (h_img . h_txt / K - clip(A, -1, 1))^2, with A DETACHED: the attention,
      trained by the first term on labels, teaches the codes which pairs are locally
      correlated; letting this term move A would pull the attention towards untrained codes.
    For text anchors pass att^T, s^T, h_txt, h_img.
    """
    att = tf.cast(att, tf.float32)
    nll = tf.reduce_mean(_pairwise_from_theta(theta_scale * att, tf.cast(s, tf.float32), form),
                         axis=1)
    h_img = tf.cast(h_img, tf.float32)
    code_sim = tf.matmul(h_img, tf.cast(h_txt, tf.float32), transpose_b=True) / float(
        h_img.shape[-1])
    target = tf.stop_gradient(tf.clip_by_value(att, -1.0, 1.0))
    return nll + consistency * tf.reduce_mean(tf.square(code_sim - target), axis=1)


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """The weights of design.md: alpha (features), gamma (codes), beta (quantisation),
    eta (labels), delta (adversarial), mu (attention), and the optional bit balance and
    direct image<->text code likelihood (0 = off). Defaults are Config's."""
    alpha: float = _CONFIG_DEFAULTS.alpha
    gamma: float = _CONFIG_DEFAULTS.gamma
    beta: float = _CONFIG_DEFAULTS.beta
    eta: float = _CONFIG_DEFAULTS.eta
    delta: float = _CONFIG_DEFAULTS.delta
    mu: float = _CONFIG_DEFAULTS.mu
    balance: float = _CONFIG_DEFAULTS.balance
    cross_pair: float = _CONFIG_DEFAULTS.cross_pair

    @classmethod
    def from_config(cls, config):
        return cls(**{f.name: float(getattr(config, f.name)) for f in dataclasses.fields(cls)})


def _with_total(terms, weights):
    out = dict(terms)
    out["total"] = tf.add_n([weights[name] * value for name, value in terms.items()])
    return out


def _with_balance(terms, w, h, weights, batch_mean=None):
    if weights.balance:
        terms["balance"] = bit_balance(h, batch_mean)
        w["balance"] = weights.balance


def labnet_loss(outputs, labels, s, feature_buffer, hash_buffer, b,
                weights=LossWeights(), form="likelihood", batch_mean=None, hash_scale=0.5):
    """LabNet: alpha J(F_l, F_l buffer) + gamma J(H_l, H_l buffer) + beta ||B - H_l||^2
    + eta ||L - L_hat||^2; a dict of per-anchor components ("feature_pair", "hash_pair",
    "quantization", "label") and their weighted "total".

    outputs: LabNet's dict for the batch; s (n, N) similarity of the batch to the buffers;
    b (n, K) the batch rows of the binary code matrix B.
    """
    terms = {
        "feature_pair": pairwise_nll(outputs["feature"], feature_buffer, s, form),
        "hash_pair": pairwise_nll(outputs["hash"], hash_buffer, s, form, hash_scale),
        "quantization": quantization(b, outputs["hash"]),
        "label": label_prediction(labels, outputs["label_pred"]),
    }
    w = {"feature_pair": weights.alpha, "hash_pair": weights.gamma,
         "quantization": weights.beta, "label": weights.eta}
    _with_balance(terms, w, outputs["hash"], weights, batch_mean)
    return _with_total(terms, w)


def modality_loss(outputs, labels, s, feature_buffer, hash_buffer, b, fake_logits=None,
                  att=None, att_s=None, h_other=None, weights=LossWeights(),
                  form="likelihood", theta_scale=5.0, consistency=1.0, cross_buffer=None,
                  batch_mean=None, hash_scale=0.5):
    """ImgNet/TxtNet: alpha J(F_l buf, F_m) + gamma J(H_l buf, H_m) + beta ||B - H_m||^2
    + eta ||L - L_hat_m||^2 + delta adv(D_m(F_m) -> real) + mu J_att.

    outputs: the modality network's dict for the batch (anchors); feature_buffer/hash_buffer
    (N, .) the buffers the batch is compared with (LabNet's in UDSPH/SSAH; the other modality's
    codes in a DCMH-like run, with feature_buffer None to drop the alpha term);
    fake_logits D_m(F_m) (None: no adversary); att (n, m) attention similarity with this
    modality's items as rows, att_s its 0/1 similarity and h_other (m, K) the other modality's
    codes of those columns (None: no attention); cross_buffer (N, K) the other modality's
    code buffer for the direct image<->text term (weights.cross_pair; None: off). Returns the
    per-anchor components present ("feature_pair", "hash_pair", "quantization", "label",
    "adversarial", "attention", "cross_pair", "balance") and "total".
    """
    terms, w = {}, {}
    if feature_buffer is not None:
        terms["feature_pair"] = pairwise_nll(outputs["feature"], feature_buffer, s, form)
        w["feature_pair"] = weights.alpha
    terms["hash_pair"] = pairwise_nll(outputs["hash"], hash_buffer, s, form, hash_scale)
    w["hash_pair"] = weights.gamma
    terms["quantization"] = quantization(b, outputs["hash"])
    w["quantization"] = weights.beta
    terms["label"] = label_prediction(labels, outputs["label_pred"])
    w["label"] = weights.eta
    if fake_logits is not None:
        terms["adversarial"] = generator_adversarial(fake_logits)
        w["adversarial"] = weights.delta
    if att is not None:
        if att_s is None or h_other is None:
            raise ValueError("modality_loss: att needs att_s and h_other")
        terms["attention"] = attention_loss(att, att_s, outputs["hash"], h_other,
                                            theta_scale, consistency, form)
        w["attention"] = weights.mu
    if cross_buffer is not None and weights.cross_pair:
        terms["cross_pair"] = pairwise_nll(outputs["hash"], cross_buffer, s, form, hash_scale)
        w["cross_pair"] = weights.cross_pair
    _with_balance(terms, w, outputs["hash"], weights, batch_mean)
    return _with_total(terms, w)
