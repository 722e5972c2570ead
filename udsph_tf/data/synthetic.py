"""The embedded `default` dataset: generated, deterministic, with MIRFlickr-like statistics."""

import numpy as np
from scipy.special import ndtri

from udsph_tf.data.types import CrossModalData


def _label_frequencies(num_labels: int) -> np.ndarray:
    # MIRFlickr's 24 concepts run from 42% of the items down to 1% (3.78 per item): an
    # exponential fall-off plus a floor reproduces that shape.
    k = np.arange(num_labels)
    return 0.47 * np.exp(-k * (24.0 / num_labels) / 7.5) + 0.008


def generate_default(seed: int = 0, num_items: int = 4000, *, num_labels: int = 24,
                     tag_dim: int = 1386, image_dim: int = 512, latent_dim: int = 6,
                     tags_per_label: float = 1.3, noise_tags: float = 1.0,
                     image_noise: float = 3.0) -> CrossModalData:
    """MIRFlickr-like cross-modal data; the same seed always gives identical arrays.

    Labels: correlated (a Gaussian latent thresholded per label), skewed frequencies, none empty.
    Tags: sparse 0/1; each label owns a pool of popular-biased tags, plus random noise tags.
    Images: non-negative features from a non-linear map of the labels and latent, plus noise.
    """
    if num_items < 1 or num_labels < 1 or tag_dim < num_labels or image_dim < 1:
        raise ValueError(f"generate_default: bad sizes num_items={num_items}, "
                         f"num_labels={num_labels}, tag_dim={tag_dim}, image_dim={image_dim}")
    rng = np.random.default_rng(seed)
    freq = rng.permutation(_label_frequencies(num_labels))

    # Labels: u = W z + e, thresholded at the quantile that gives each label its frequency.
    z = rng.standard_normal((num_items, latent_dim))
    w = rng.normal(0.0, 0.6, (latent_dim, num_labels))
    scale = np.sqrt((w ** 2).sum(0) + 1.0)
    u = (z @ w + rng.standard_normal((num_items, num_labels))) / scale
    margin = u - ndtri(1.0 - freq)
    labels = margin > 0
    empty = ~labels.any(1)
    labels[np.nonzero(empty)[0], margin[empty].argmax(1)] = True  # no empty rows, as released

    # Tags: popularity is Zipf-like; each label's pool favours popular tags, as real tags do.
    popularity = 1.0 / np.arange(1, tag_dim + 1) ** 0.8
    popularity = rng.permutation(popularity / popularity.sum())
    pool_size = min(30, tag_dim)
    pools = [rng.choice(tag_dim, pool_size, replace=False, p=popularity)
             for _ in range(num_labels)]
    # hits: how many of the item's labels own each tag; P(tag) by table lookup (cheap).
    hits = np.zeros((num_items, tag_dim), np.intp)
    for c, pool in enumerate(pools):
        hits[:, pool] += labels[:, c:c + 1]
    miss_label = ((1.0 - tags_per_label / pool_size) ** np.arange(num_labels + 1)).astype(
        np.float32)
    miss_noise = (1.0 - np.minimum(1.0, noise_tags * popularity)).astype(np.float32)
    tags = rng.random((num_items, tag_dim), dtype=np.float32) >= miss_label[hits] * miss_noise
    for i in np.nonzero(~tags.any(1))[0]:  # every released item has at least one tag
        tags[i, rng.choice(np.concatenate([pools[c] for c in np.nonzero(labels[i])[0]]))] = True

    # Images: a random two-layer ReLU map of (labels, latent) -> non-negative CNN-like features.
    hidden = 64
    a = rng.standard_normal((num_labels, hidden)) / np.sqrt(3.8)  # ~unit variance at 3.8 labels
    b = rng.standard_normal((latent_dim, hidden)) * 0.3
    h = np.tanh(labels.astype(np.float64) @ a + z @ b
                + 0.5 * rng.standard_normal((num_items, hidden)))
    w2 = rng.standard_normal((hidden, image_dim)) / np.sqrt(hidden)
    images = np.maximum(0.0, 2.0 * h @ w2 + image_noise * rng.standard_normal(
        (num_items, image_dim)))

    return CrossModalData(
        name="default", images=images.astype(np.float32), tags=tags.astype(np.float32),
        labels=labels.astype(np.float32), ids=np.arange(num_items, dtype=np.int64),
        tag_vocab=[f"tag{j:04d}" for j in range(tag_dim)],
        label_names=[f"concept{c:02d}" for c in range(num_labels)])
