"""The generated default dataset: deterministic, MIRFlickr-like, learnable but not trivial."""

import time

import numpy as np
from sklearn.linear_model import Ridge
from sklearn.metrics import average_precision_score

from udsph_tf.data import generate_default


def _macro_ap(x, labels, n_train=3000):
    scores = Ridge(alpha=10.0).fit(x[:n_train], labels[:n_train]).predict(x[n_train:])
    test = labels[n_train:]
    return float(np.mean([average_precision_score(test[:, c], scores[:, c])
                          for c in range(labels.shape[1])]))


def test_same_seed_same_arrays_other_seed_differs():
    a, b, c = generate_default(seed=5), generate_default(seed=5), generate_default(seed=6)
    for field in ("images", "tags", "labels", "ids"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.labels, c.labels)


def test_shapes_and_dtypes():
    d = generate_default()
    assert d.name == "default" and d.num_items == 4000
    assert d.images.shape == (4000, 512) and d.images.dtype == np.float32
    assert d.tags.shape == (4000, 1386) and d.tags.dtype == np.float32
    assert d.labels.shape == (4000, 24) and d.labels.dtype == np.float32
    assert set(np.unique(d.tags)) <= {0.0, 1.0} and set(np.unique(d.labels)) == {0.0, 1.0}
    assert len(d.tag_vocab) == 1386 and len(d.label_names) == 24


def test_mirflickr_like_statistics():
    d = generate_default()
    per_item = d.labels.sum(1)
    assert per_item.min() >= 1  # no empty label rows
    assert 3.0 <= per_item.mean() <= 4.5  # MIRFlickr: 3.78
    freq = np.sort(d.labels.mean(0))[::-1]
    assert freq[0] > 0.35 and freq[-1] < 0.05  # a few very common labels, many rare ones
    assert (freq < 0.15).sum() >= 10
    tags_per_item = d.tags.sum(1)
    assert tags_per_item.min() >= 1 and 2 <= tags_per_item.mean() <= 12  # MIRFlickr: 4.6
    assert d.tags.mean() < 0.01  # sparse
    assert (d.images >= 0).all()  # ReLU-like CNN features


def test_tags_depend_on_labels():
    """Items sharing a label share tags far more often than random pairs do."""
    d = generate_default(num_items=2000)
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, 2000, (2, 20000))
    shared_label = (d.labels[i] * d.labels[j]).sum(1) > 0
    shared_tag = (d.tags[i] * d.tags[j]).sum(1) > 0
    assert shared_tag[shared_label].mean() > 1.5 * shared_tag[~shared_label].mean()


def test_learnable_but_not_trivial():
    d = generate_default()
    chance = float(d.labels[3000:].mean())  # the AP of a random ranking
    img_ap, tag_ap = _macro_ap(d.images, d.labels), _macro_ap(d.tags, d.labels)
    assert chance < 0.2
    assert 0.5 < img_ap < 0.95, img_ap
    assert 0.4 < tag_ap < 0.95, tag_ap


def test_generation_is_fast():
    generate_default(seed=1)  # first call pays one-off BLAS/thread start-up
    # CPU time, not wall time: the test machine is shared, and waiting for a core is not ours.
    start = time.process_time()
    generate_default(seed=2)
    assert time.process_time() - start < 1.0
