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


def generate_single_label(seed: int = 0, num_items: int = 2866, *, num_classes: int = 10,
                          image_dim: int = 128, topic_dim: int = 10, words_per_image: int = 40,
                          image_signal: float = 0.03, modes_per_class: int = 3,
                          text_concentration: float = 2.0, text_signal: float = 0.8,
                          class_concentration: float | None = None) -> CrossModalData:
    """Family (a): single-label classes, histogram images, dense topic-proportion text.

    Images are bag-of-visual-words histograms (rows sum to 1, many zeros): `words_per_image`
    draws from a mixture of a class-specific and a shared background word distribution, with
    weight `image_signal` on the class part (a weak image modality). Texts are topic
    proportions (rows sum to 1, dense, no zeros): each class is a union of `modes_per_class`
    sparse topic profiles (a category spans several subjects), and a text is a Dirichlet draw
    whose mean puts `text_signal` on one of its class's profiles. The text carries the labels
    well but not linearly (a class is several clusters of the simplex). One label per item.
    Classes are equally likely, or, with `class_concentration` c, drawn with proportions from a
    Dirichlet(c) (unequal class sizes, as real category data sets have; smaller c, more skew).
    """
    if num_items < num_classes or num_classes < 2 or image_dim < 2 or topic_dim < 2:
        raise ValueError(f"generate_single_label: bad sizes num_items={num_items}, "
                         f"num_classes={num_classes}, image_dim={image_dim}, "
                         f"topic_dim={topic_dim}")
    rng = np.random.default_rng(seed)
    if class_concentration is None:
        classes = rng.integers(0, num_classes, num_items)
    else:
        if not class_concentration > 0:
            raise ValueError(f"generate_single_label: class_concentration must be > 0, "
                             f"got {class_concentration}")
        proportions = rng.dirichlet(np.full(num_classes, float(class_concentration)))
        classes = rng.choice(num_classes, num_items, p=proportions)
    labels = np.zeros((num_items, num_classes), np.float32)
    labels[np.arange(num_items), classes] = 1.0

    background = rng.dirichlet(np.full(image_dim, 0.3))
    class_words = rng.dirichlet(np.full(image_dim, 0.1), size=num_classes)
    word_p = (1 - image_signal) * background + image_signal * class_words[classes]
    counts = np.stack([rng.multinomial(words_per_image, p) for p in word_p])
    images = counts / counts.sum(1, keepdims=True)

    profiles = rng.dirichlet(np.full(topic_dim, 0.3), size=(num_classes, modes_per_class))
    modes = rng.integers(0, modes_per_class, num_items)
    mean = (1 - text_signal) / topic_dim + text_signal * profiles[classes, modes]
    texts = np.stack([rng.dirichlet(text_concentration * topic_dim * m) for m in mean])
    texts = np.maximum(texts, 1e-6)
    texts /= texts.sum(1, keepdims=True)  # topic proportions: strictly positive, sum to 1
    return CrossModalData(
        name="synthetic_single", images=images.astype(np.float32),
        tags=texts.astype(np.float32), labels=labels,
        ids=np.arange(num_items, dtype=np.int64),
        tag_vocab=[f"topic{j:02d}" for j in range(topic_dim)],
        label_names=[f"class{c:02d}" for c in range(num_classes)])


def generate_dense_text(seed: int = 0, num_items: int = 4000, *, embed_dim: int = 64,
                        word_noise: float = 0.6) -> CrossModalData:
    """Family (b): the default's labels and images, text as a dense real embedding.

    Each text is the mean of 'word vectors' of its tags (random Gaussian vectors, with the
    tags of one label sharing a direction) plus noise, then centred: dense, with negative
    values, like sentence embeddings or averaged word vectors.
    """
    base = generate_default(seed, num_items)
    rng = np.random.default_rng([seed, 2])
    tag_dim, num_labels = base.tag_dim, base.num_labels
    label_dirs = rng.standard_normal((num_labels, embed_dim))
    # A tag's vector leans towards the label whose items use it most (as word meanings do).
    owner = np.argmax(base.labels.T @ base.tags + 1e-3 * rng.random((num_labels, tag_dim)), 0)
    words = label_dirs[owner] + word_noise * rng.standard_normal((tag_dim, embed_dim)) * 2.0
    counts = np.maximum(base.tags.sum(1, keepdims=True), 1.0)
    texts = base.tags @ words / counts + 0.3 * rng.standard_normal((num_items, embed_dim))
    texts -= texts.mean(0)
    return CrossModalData(
        name="synthetic_dense", images=base.images, tags=texts.astype(np.float32),
        labels=base.labels, ids=base.ids,
        tag_vocab=[f"dim{j:02d}" for j in range(embed_dim)], label_names=base.label_names)


# Generated datasets by --dataset name: each a family of the learning-quality tests.
GENERATED = {"default": generate_default, "synthetic_single": generate_single_label,
             "synthetic_dense": generate_dense_text}
