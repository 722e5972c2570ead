"""Exported encoders refuse, by input name, what training refuses: wrong rank, NaN/inf, and
negative values in a bag of words (but not in dense text)."""

import numpy as np
import pytest
import tensorflow as tf

from udsph_tf.export.encoders import (image_encoder_module, reads_bag_of_words,
                                      text_encoder_module)
from udsph_tf.models import build_models
from udsph_tf.training.testing import tiny_config, tiny_data

DENSE_TEXT = {"image_norm": "standard", "text_encoder": "dense", "text_norm": "standard"}


def _saved_signatures(module, path):
    """Save `module` as a SavedModel and load it back: the checks must survive serialization
    and graph optimization, not only hold in the traced Python function."""
    tf.saved_model.save(module, str(path), signatures=module.signatures())
    return tf.saved_model.load(str(path)).signatures


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Image and text encoders of a bag-of-words run and of a dense-text run, as loaded
    SavedModel signatures, beside the in-process networks they came from."""
    config = tiny_config("unused", bits=16)
    data = tiny_data()
    root = tmp_path_factory.mktemp("serving_inputs")
    out = {"data": data}
    for kind, spec in (("bow", None), ("dense", DENSE_TEXT)):
        models = build_models(config, data.images.shape[1:], data.tag_dim, data.num_labels,
                              spec)
        txtnet = models["txtnet"]
        assert txtnet.encoder == kind
        vocab = [f"tag{j}" for j in range(data.tag_dim)] if kind == "bow" else None
        out[kind] = {
            "txtnet": txtnet,
            "text": _saved_signatures(text_encoder_module(txtnet, data.tag_dim, vocab),
                                      root / f"text_{kind}"),
        }
        if kind == "bow":
            out["image"] = _saved_signatures(
                image_encoder_module(models["imgnet"], data.images.shape[1:]), root / "image")
    return out


def _refused(sig, fragment, **inputs):
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        sig(**{k: tf.constant(v) for k, v in inputs.items()})
    # An Assert op prints its message C-escaped ('x' -> \'x\'); CheckNumerics does not.
    text = str(err.value).replace("\\'", "'")
    assert fragment in text, text[:2000]


@pytest.mark.parametrize("shape", [(16,), (3,), (), (2, 16, 1), (2, 1, 16)])
def test_image_encoder_refuses_another_rank(served, shape):
    # (16,) used to pass: tf.shape(x)[1:] is then empty, and an empty comparison is all-equal.
    _refused(served["image"]["serving_default"],
             "'image_features' must have 2 dimensions, shape [?, 16]",
             image_features=np.ones(shape, np.float32))


@pytest.mark.parametrize("kind", ["bow", "dense"])
def test_text_encoder_refuses_another_rank(served, kind):
    sig = served[kind]["text"]["serving_default"]
    _refused(sig, "'tags' must have 2 dimensions, shape [?, 24]",
             tags=np.ones((24,), np.float32))
    _refused(sig, "'tags' must have 2 dimensions", tags=np.ones((2, 24, 1), np.float32))


def test_tag_words_must_be_a_vector(served):
    _refused(served["bow"]["text"]["from_tag_words"], "'tag_words' must have 1 dimension",
             tag_words=np.array([["tag0", "tag1"]], object))


@pytest.mark.parametrize("kind", ["bow", "dense"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_text_encoder_refuses_non_finite(served, kind, bad):
    tags = np.array(served["data"].tags[:3])
    tags[1, 4] = bad
    _refused(served[kind]["text"]["serving_default"], "'tags' contains NaN or Inf", tags=tags)


def test_image_encoder_refuses_non_finite(served):
    images = np.array(served["data"].images[:3])
    images[2, 0] = np.inf
    _refused(served["image"]["serving_default"], "'image_features' contains NaN or Inf",
             image_features=images)


def test_bag_of_words_encoder_refuses_negative_tags(served):
    tags = np.array(served["data"].tags[:3])
    tags[0, 1] = -1.0
    _refused(served["bow"]["text"]["serving_default"], "'tags' holds negative values", tags=tags)
    # Counts above 1 are a valid bag of words.
    counts = np.array(served["data"].tags[:3]) * 2.0
    out = served["bow"]["text"]["serving_default"](tags=tf.constant(counts))
    assert out["codes"].shape == (3, 16)


def test_dense_text_encoder_takes_negative_values(served):
    """Sentence embeddings are negative half the time: the dense encoder serves them, with the
    codes of the in-process network."""
    rng = np.random.default_rng(0)
    tags = rng.normal(size=(5, served["data"].tag_dim)).astype(np.float32)
    assert (tags < 0).any()
    out = served["dense"]["text"]["serving_default"](tags=tf.constant(tags))
    ref = served["dense"]["txtnet"](tags, training=False)["hash"].numpy()
    np.testing.assert_allclose(out["hash"].numpy(), ref, rtol=1e-5, atol=1e-6)


def test_valid_inputs_still_pass(served):
    data = served["data"]
    out = served["image"]["serving_default"](image_features=tf.constant(data.images[:4]))
    assert out["codes"].shape == (4, 16)
    out = served["bow"]["text"]["from_tag_words"](tag_words=tf.constant(["tag0, tag3", "tag5"]))
    assert out["codes"].shape == (2, 16)


def test_reads_bag_of_words():
    class Old:  # a TxtNet from before the `encoder` attribute
        pass

    class Dense:
        encoder = "dense"

    assert reads_bag_of_words(Old()) and not reads_bag_of_words(Dense())
