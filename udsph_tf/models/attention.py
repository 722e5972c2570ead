"""SCAN stacked cross attention between image regions and tag tokens: a batch similarity matrix."""

import keras
import tensorflow as tf

_EPS = 1e-8  # SCAN's epsilon in its l2norm and cosine_similarity


def _l2_normalize(x, axis):
    # SCAN: x / (||x|| + eps); a zero vector (a masked token) stays zero.
    return x / (tf.norm(x, axis=axis, keepdims=True) + _EPS)


class CrossModalAttention(keras.layers.Layer):
    """Similarity A (n_i, n_t) of every image of one batch with every text of another (SCAN).

    Regions (n_i, R, dr) and tokens (n_t, M, dt) are projected to `dim` and l2-normalised.
    With project=False the layer has no variables: the inputs are already in the `dim`-wide
    common space (build_models: ImgNet and TxtNet own the region and word projections, so the
    attention loss trains the hashing networks); dr and dt must then equal `dim`.
    t2i: each valid token attends over the image's regions with softmax(lambda_softmax * c),
    where c is SCAN's 'clipped_l2norm' cosine (LeakyReLU(0.1), then l2-normalised over the
    query axis); the token is compared by cosine with its attended region vector, and the
    token scores are pooled over the valid tokens with LogSumExp(lambda_lse) (SCAN: the log of
    a sum, not of a mean, so A can exceed 1 by up to log(M)/lambda_lse) or their mean.
    i2t is symmetric: each region attends over the valid tokens. "both" averages the two.
    Padding tokens (mask False) take no part: not as queries, not as context, not in the norm.
    A text with no valid token gets similarity 0.

    Memory: the attended vectors (n_i, n_t, M, dim) are never formed. The cosine with an
    attended vector a^T V needs only a^T c (its dot product with the query) and a^T G a with
    G = V V^T the (R, R) or (M, M) Gram matrix of one item, so the largest tensors are
    (n_i, n_t, R, M).
    """

    def __init__(self, region_dim, token_dim, dim=256, lambda_softmax=9.0, lambda_lse=6.0,
                 pool="lse", direction="both", clipped_l2norm=True, project=True, **kwargs):
        super().__init__(**kwargs)
        if pool not in ("lse", "mean"):
            raise ValueError(f"attention pool must be 'lse' or 'mean', got {pool!r}")
        if direction not in ("both", "t2i", "i2t"):
            raise ValueError(f"attention direction must be both, t2i or i2t, got {direction!r}")
        self.region_dim, self.token_dim, self.dim = int(region_dim), int(token_dim), int(dim)
        self.lambda_softmax, self.lambda_lse = float(lambda_softmax), float(lambda_lse)
        self.pool, self.direction, self.clipped_l2norm = pool, direction, bool(clipped_l2norm)
        self.project_inputs = bool(project)
        if not project and not self.region_dim == self.token_dim == self.dim:
            raise ValueError(f"attention without its own projections needs regions and tokens "
                             f"of width dim={self.dim}, got {self.region_dim} and "
                             f"{self.token_dim}")
        self.region_proj = keras.layers.Dense(dim, name="region_proj") if project else None
        self.token_proj = keras.layers.Dense(dim, name="token_proj") if project else None

    def project(self, regions, tokens, token_mask=None):
        """(v (n_i, R, dim), w (n_t, M, dim), mask (n_t, M) bool), float32; w 0 where masked."""
        if regions.shape.rank == 2:
            regions = regions[:, None, :]  # a global vector is one region
        if regions.shape[-1] != self.region_dim or tokens.shape[-1] != self.token_dim:
            raise ValueError(f"attention built for regions of width {self.region_dim} and "
                             f"tokens of width {self.token_dim}, got {regions.shape} and "
                             f"{tokens.shape}")
        if token_mask is None:
            mask = tf.ones(tf.shape(tokens)[:2], tf.bool)
        else:
            mask = tf.cast(token_mask, tf.bool) if token_mask.dtype == tf.bool else token_mask > 0
        if self.project_inputs:
            regions, tokens = self.region_proj(regions), self.token_proj(tokens)
        v = _l2_normalize(tf.cast(regions, tf.float32), -1)
        w = _l2_normalize(tf.cast(tokens, tf.float32), -1)
        w = w * tf.cast(mask, tf.float32)[:, :, None]
        return v, w, mask

    def _cosines(self, regions, tokens, token_mask):
        v, w, mask = self.project(tf.convert_to_tensor(regions), tf.convert_to_tensor(tokens),
                                  None if token_mask is None else tf.convert_to_tensor(token_mask))
        cos = tf.einsum("ird,tmd->itrm", v, w)           # (n_i, n_t, R, M); 0 at padding
        maskf = tf.cast(mask, tf.float32)[None, :, None, :]  # (1, n_t, 1, M)
        return v, w, mask, cos, maskf

    def attention_weights(self, regions, tokens, token_mask=None):
        """{"t2i": (n_i, n_t, R, M) softmax over regions R for each token, "i2t": (n_i, n_t,
        R, M) softmax over the valid tokens M for each region}: what `call` attends with."""
        _, _, _, cos, maskf = self._cosines(regions, tokens, token_mask)
        return {"t2i": self._t2i_weights(cos, maskf), "i2t": self._i2t_weights(cos, maskf)}

    def call(self, regions, tokens, token_mask=None):
        v, w, mask, cos, maskf = self._cosines(regions, tokens, token_mask)
        scores = []
        if self.direction in ("both", "t2i"):
            scores.append(self._t2i(cos, v, mask, maskf))
        if self.direction in ("both", "i2t"):
            scores.append(self._i2t(cos, w, mask, maskf))
        sim = tf.add_n(scores) / float(len(scores))
        has_token = tf.reduce_any(mask, axis=1)[None, :]
        return tf.where(has_token, sim, tf.zeros_like(sim))

    def _clip_norm(self, cos, axis, maskf):
        if not self.clipped_l2norm:
            return cos
        # LeakyReLU keeps padding at 0, so the norm over tokens counts only valid ones.
        return _l2_normalize(tf.nn.leaky_relu(cos, alpha=0.1) * maskf, axis)

    def _t2i_weights(self, cos, maskf):
        # Tokens are queries, regions the context: softmax over R for every token.
        logits = self.lambda_softmax * self._clip_norm(cos, 3, maskf)
        return tf.nn.softmax(logits, axis=2)                     # (n_i, n_t, R, M) over R

    def _i2t_weights(self, cos, maskf):
        # Regions are queries, tokens the context: softmax over the valid tokens of each text.
        logits = self.lambda_softmax * self._clip_norm(cos, 2, 1.0)
        logits = tf.where(maskf > 0, logits, tf.fill(tf.shape(logits), -1e9))
        return tf.nn.softmax(logits, axis=3)                     # (n_i, n_t, R, M) over M

    def _t2i(self, cos, v, mask, maskf):
        attn = self._t2i_weights(cos, maskf)
        dot = tf.reduce_sum(attn * cos, axis=2)                  # (n_i, n_t, M): w . (attn V)
        gram = tf.einsum("ird,isd->irs", v, v)                   # (n_i, R, R)
        attn_m = tf.transpose(attn, [0, 1, 3, 2])                # (n_i, n_t, M, R)
        sq = tf.reduce_sum(tf.einsum("itmr,irs->itms", attn_m, gram) * attn_m, axis=3)
        row_sim = dot / tf.sqrt(tf.maximum(sq, _EPS * _EPS))     # |w| = 1 for valid tokens
        return self._pool(row_sim, tf.broadcast_to(mask[None], tf.shape(row_sim)))

    def _i2t(self, cos, w, mask, maskf):
        attn = self._i2t_weights(cos, maskf)
        dot = tf.reduce_sum(attn * cos, axis=3)                  # (n_i, n_t, R)
        gram = tf.einsum("tmd,tkd->tmk", w, w)                   # (n_t, M, M)
        sq = tf.reduce_sum(tf.einsum("itrm,tmk->itrk", attn, gram) * attn, axis=3)
        row_sim = dot / tf.sqrt(tf.maximum(sq, _EPS * _EPS))
        return self._pool(row_sim, tf.ones_like(row_sim, tf.bool))

    def _pool(self, row_sim, valid):
        if self.pool == "mean":
            validf = tf.cast(valid, row_sim.dtype)
            return tf.reduce_sum(row_sim * validf, -1) / tf.maximum(
                tf.reduce_sum(validf, -1), 1.0)
        scaled = tf.where(valid, self.lambda_lse * row_sim, tf.fill(tf.shape(row_sim), -1e9))
        return tf.reduce_logsumexp(scaled, axis=-1) / self.lambda_lse
