"""Input handling of issue 10: normalisation fitted on training rows, the text front-ends."""

import dataclasses
import json

import numpy as np
import pytest

from udsph_tf.config import Config, replace
from udsph_tf.models import ATTENTION_SKIPPED, attention_mode, build_models, resolve_input_spec
from udsph_tf.modes.train import train_and_evaluate
from udsph_tf.training.testing import tiny_config, tiny_data, tiny_split
from udsph_tf.models.normalization import InputNormalizer, resolve_text_encoder


def test_standard_normaliser_uses_the_rows_it_was_fitted_on():
    rng = np.random.default_rng(0)
    train = rng.gamma(2.0, 3.0, (200, 6)).astype(np.float32)
    train[:, 5] = 4.0  # a constant column maps to 0, not to inf
    norm = InputNormalizer("standard", 6).fit(train)
    z = norm(train).numpy()
    np.testing.assert_allclose(z[:, :5].mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(z[:, :5].std(0), 1, atol=1e-3)
    np.testing.assert_array_equal(z[:, 5], 0)
    other = rng.gamma(2.0, 3.0, (10, 6)).astype(np.float32)
    np.testing.assert_allclose(norm(other).numpy()[:, 0],
                               (other[:, 0] - train[:, 0].mean()) / train[:, 0].std(), rtol=1e-4)


def test_l2_modes_and_region_inputs():
    x = np.abs(np.random.default_rng(1).normal(size=(30, 4, 8))).astype(np.float32)
    unit = InputNormalizer("l2", 8).fit(x)(x).numpy()
    np.testing.assert_allclose(np.linalg.norm(unit, axis=-1), 1, rtol=1e-4)
    z = InputNormalizer("l2_standard", 8).fit(x)(x).numpy().reshape(-1, 8)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-4)
    with pytest.raises(ValueError, match="normaliser built for width 8"):
        InputNormalizer("standard", 8).fit(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="normalisation must be one of"):
        InputNormalizer("zscore", 8)


@pytest.mark.parametrize("text, expected", [
    (np.eye(20)[np.arange(40) % 20], "bow"),                      # sparse 0/1 tags
    (np.random.default_rng(0).dirichlet(np.ones(10), 40), "dense"),  # topic proportions
    (np.random.default_rng(0).normal(size=(40, 16)), "dense"),      # embeddings, negatives
])
def test_auto_text_encoder_rule(text, expected):
    assert resolve_text_encoder("auto", text) == expected
    assert resolve_text_encoder("bow", text) == "bow"


def test_input_spec_defaults():
    spec = resolve_input_spec(Config(), np.random.default_rng(0).normal(size=(10, 4)))
    hold = {"hold_constant_columns": Config().hold_constant_columns}
    assert spec == {"image_norm": "standard", "text_encoder": "dense", "text_norm": "standard",
                    **hold}
    spec = resolve_input_spec(replace(Config(), image_norm="none"), np.eye(4))
    assert spec == {"image_norm": "none", "text_encoder": "bow", "text_norm": "none", **hold}


def test_dense_text_network_takes_negative_values_and_skips_the_attention():
    config = replace(Config(), labnet_hidden=16, imgnet_hidden=16, txtnet_hidden=16,
                     feature_dim=8, bits=8, disc_hidden="8", attention_dim=8, token_dim=8)
    spec = {"image_norm": "standard", "text_encoder": "dense", "text_norm": "standard"}
    models = build_models(config, (6,), 12, 3, spec)
    text = np.random.default_rng(0).normal(size=(5, 12)).astype(np.float32)
    models["txtnet"].normalizer.fit(text)
    out = models["txtnet"](text)
    assert out["hash"].shape == (5, 8) and np.isfinite(out["hash"].numpy()).all()
    assert models["txtnet"].fusion is None  # multi-scale pooling is for bags of words only
    # No words, so no attention and no projections into its space (models.attention_mode).
    assert attention_mode(config, spec) == ATTENTION_SKIPPED
    assert models["attention"] is None
    assert models["txtnet"].token_proj is None and models["imgnet"].region_proj is None
    bow = dict(spec, text_encoder="bow")
    assert attention_mode(config, bow) == "scan"
    assert attention_mode(replace(config, attention="none"), spec) == "none"


@pytest.mark.slow
def test_dense_text_run_says_once_that_the_attention_is_skipped(tmp_path, capfd):
    data = tiny_data()
    dense = dataclasses.replace(data, tags=np.random.default_rng(3).normal(
        size=(len(data.tags), 10)).astype(np.float32) + data.labels @ np.ones((5, 10)))
    config = tiny_config(tmp_path / "run", epochs=1, num_replicas=1)
    assert config.attention == "scan"
    metrics = train_and_evaluate(config, data=dense, split=tiny_split())
    err = capfd.readouterr().err
    assert err.count("attention: skipped (dense text") == 1, err[-2000:]
    assert metrics["inputs"]["text_encoder"] == "dense"
    assert metrics["attention"] == ATTENTION_SKIPPED
    with open(tmp_path / "run" / "metrics.json") as f:
        assert json.load(f)["attention"] == ATTENTION_SKIPPED


def test_hold_constant_columns_holds_unseen_tags_at_their_training_value():
    train = np.array([[1, 0, 0, 1], [0, 1, 0, 1], [1, 1, 0, 1]], np.float32)
    norm = InputNormalizer("none", 4, hold_constant=True).fit(train)
    # Column 2 (a tag no training row has) is held at 0, column 3 (always 1) at 1.
    np.testing.assert_array_equal(np.asarray(norm(np.array([[1, 0, 1, 0]], np.float32))),
                                  [[1, 0, 0, 1]])
    z = InputNormalizer("standard", 4, hold_constant=True).fit(train)
    held = np.asarray(z(np.array([[1, 0, 5, 7]], np.float32)))
    np.testing.assert_allclose(held[0, 2:], [0, 0], atol=1e-6)  # training value -> 0 after z

    config = replace(Config(), bits=8, hold_constant_columns=True, text_encoder="bow",
                     txtnet_hidden=16, feature_dim=8, labnet_hidden=16, imgnet_hidden=16)
    spec = resolve_input_spec(config, train)
    assert spec["hold_constant_columns"] and spec["text_norm"] == "none"
    txtnet = build_models(config, (6,), 4, 3, spec)["txtnet"]
    txtnet.normalizer.fit(train)
    seen, with_unseen = train[:1], train[:1] + np.array([[0, 0, 1, 0]], np.float32)
    a, b = txtnet(seen), txtnet(with_unseen)
    np.testing.assert_allclose(np.asarray(a["hash"]), np.asarray(b["hash"]), atol=1e-6)
    assert int(np.asarray(b["token_mask"]).sum()) == int(np.asarray(a["token_mask"]).sum())
    # Off (the default): the unseen tag reaches the network.
    plain = build_models(replace(config, hold_constant_columns=False), (6,), 4, 3)["txtnet"]
    assert plain.normalizer is None


def test_tag_dropout_drops_whole_tags_in_training_steps_only():
    from udsph_tf.models.txtnet import TxtNet
    bow = np.zeros((64, 40), np.float32)
    bow[:, :10] = np.arange(1, 11, dtype=np.float32)  # counts: a rescaled tag would show
    net = TxtNet(40, 8, 3, hidden=16, feature_dim=8, tag_dropout=0.4)
    dropped = np.asarray(net.drop_tags(bow))
    kept = dropped[:, :10] != 0
    assert np.all((dropped == 0) | (dropped == bow))  # each tag kept as it was, or gone
    assert 0.5 < kept.mean() < 0.7  # 640 tags, keep rate 0.6
    trained = np.asarray(net(bow, training=True)["token_mask"]).sum(1)
    assert trained.min() < 10 and trained.max() <= 10  # tokens are the kept tags
    np.testing.assert_array_equal(np.asarray(net(bow)["token_mask"]).sum(1), 10)  # inference
    # Dense text has coordinates, not tags: the option does not apply to it.
    dense = TxtNet(40, 8, 3, hidden=16, feature_dim=8, tag_dropout=0.4, encoder="dense")
    np.testing.assert_allclose(np.asarray(dense(bow, training=True)["hash"]),
                               np.asarray(dense(bow)["hash"]), atol=1e-6)
    with pytest.raises(ValueError, match="tag dropout"):
        TxtNet(40, 8, 3, tag_dropout=1.0)


@pytest.mark.parametrize("flag", ["tag_dropout", "dropout"])
def test_dropout_flags_outside_0_1_are_refused(tmp_path, flag):
    from udsph_tf.errors import ConfigError
    config = tiny_config(tmp_path / "run", epochs=1, num_replicas=1, **{flag: 1.5})
    with pytest.raises(ConfigError, match=f"--{flag}: must be in"):
        train_and_evaluate(config, data=tiny_data(), split=tiny_split())
