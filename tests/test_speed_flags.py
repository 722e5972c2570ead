"""Issue 13's speed flags: --mixed_precision / --jit_compile / --fused_adam parse, the dtype
policy each one resolves to, a bfloat16 run keeping its buffers and losses float32, per-epoch
timing in the history, and the MIRFlickr-scale bench's generated image features."""

import importlib.util
import pathlib
import types

import keras
import numpy as np
import pytest
from absl import flags as absl_flags

import flags as udsph_flags
from udsph_tf.config import Config
from udsph_tf.modes.train import make_trainer, train_and_evaluate
from udsph_tf.training.steps import precision_policy
from udsph_tf.training.testing import shared_strategy, tiny_config, tiny_data, tiny_split

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _parse(*argv):
    values = absl_flags.FlagValues()
    udsph_flags.define_flags(values)
    values(["main.py", *argv])
    return udsph_flags.config_from_flags(values)


def test_speed_flags_parse_with_their_defaults():
    config = _parse()
    assert config.mixed_precision == "auto" and config.jit_compile is False
    assert config.fused_adam is False
    config = _parse("--mixed_precision=bf16", "--jit_compile", "--fused_adam")
    assert config.mixed_precision == "bf16" and config.jit_compile is True
    assert config.fused_adam is True
    with pytest.raises(absl_flags.IllegalFlagValueError):
        _parse("--mixed_precision=int8")


def _fake_strategy(*devices):
    return types.SimpleNamespace(extended=types.SimpleNamespace(worker_devices=devices))


@pytest.mark.parametrize("mode,devices,policy", [
    ("auto", ("/job:localhost/replica:0/task:0/device:CPU:0",), "float32"),
    ("auto", ("/job:localhost/replica:0/task:0/device:GPU:0",
              "/job:localhost/replica:0/task:0/device:GPU:1"), "mixed_float16"),
    ("off", ("/job:localhost/replica:0/task:0/device:GPU:0",), "float32"),
    ("bf16", ("/job:localhost/replica:0/task:0/device:CPU:0",), "mixed_bfloat16"),
    ("fp16", ("/job:localhost/replica:0/task:0/device:CPU:0",), "mixed_float16"),
])
def test_precision_policy_resolution(mode, devices, policy):
    config = Config(mixed_precision=mode)
    assert precision_policy(config, _fake_strategy(*devices)) == policy


def test_auto_precision_on_this_cpu_strategy_is_float32():
    assert precision_policy(Config(), shared_strategy(1)) == "float32"


@pytest.mark.slow
def test_bf16_run_keeps_float32_state_and_times_each_part(tmp_path):
    try:
        metrics = train_and_evaluate(
            tiny_config(tmp_path / "bf16", mixed_precision="bf16", epochs=1),
            strategy=shared_strategy(1), data=tiny_data(), split=tiny_split())
        assert keras.mixed_precision.dtype_policy().name == "mixed_bfloat16"
        # The next run's Trainer sets its own policy (process-wide in Keras).
        train_and_evaluate(tiny_config(tmp_path / "f32", epochs=1),
                           strategy=shared_strategy(1), data=tiny_data(), split=tiny_split())
        assert keras.mixed_precision.dtype_policy().name == "float32"
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    entry = metrics["history"][-1]
    assert all(np.isfinite(v) for v in entry["loss"].values())
    assert set(entry["step_seconds"]) == {"labnet", "disc", "imgnet", "txtnet"}
    for key in ("input_seconds", "refresh_seconds", "validation_seconds", "checkpoint_seconds"):
        assert entry[key] >= 0
    assert sum(entry["step_seconds"].values()) <= entry["seconds"]
    assert metrics["test"]["map_i2t"] > 0


def _bench_module():
    spec = importlib.util.spec_from_file_location(
        "mirflickr_scale", REPO_ROOT / "bench" / "mirflickr_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_image_features_carry_the_labels_signal():
    bench = _bench_module()
    rng = np.random.default_rng(1)
    labels = (rng.random((600, 6)) < 0.3).astype(np.uint8)
    labels[labels.sum(1) == 0, 0] = 1
    feats = bench.make_image_features(labels, image_dim=128, seed=3, chunk=250)
    assert feats.shape == (600, 128) and feats.dtype == np.float32
    assert feats.min() == 0.0 and 0.2 < (feats > 0).mean() < 0.8  # ReLU, like CNN fc7
    np.testing.assert_array_equal(feats, bench.make_image_features(labels, image_dim=128,
                                                                   seed=3, chunk=250))
    # A least-squares read-out fitted on 400 items predicts the other 200 items' labels.
    x = np.hstack([feats, np.ones((600, 1), np.float32)])
    w = np.linalg.lstsq(x[:400], labels[:400].astype(np.float32), rcond=None)[0]
    scores, truth = x[400:] @ w, labels[400:].astype(bool)
    assert scores[truth].mean() - scores[~truth].mean() > 0.15  # 0.25-0.34 over seeds
    # Features of other items' labels carry nothing about these labels.
    shuffled = bench.make_image_features(labels[rng.permutation(600)], image_dim=128, seed=3)
    xs = np.hstack([shuffled, np.ones((600, 1), np.float32)])
    w = np.linalg.lstsq(xs[:400], labels[:400].astype(np.float32), rcond=None)[0]
    scores = xs[400:] @ w
    assert abs(scores[truth].mean() - scores[~truth].mean()) < 0.08  # |.| <= 0.04


@pytest.mark.slow
def test_fp16_wraps_the_optimizers_in_loss_scaling_and_steps_stay_finite(tmp_path):
    try:
        trainer = make_trainer(tiny_config(tmp_path, mixed_precision="fp16"),
                               strategy=shared_strategy(1), data=tiny_data(),
                               split=tiny_split()).task
        assert all(isinstance(o, keras.optimizers.LossScaleOptimizer)
                   for o in trainer.optimizers.values())
        trainer.fill_buffers()
        for net in trainer.networks:
            logs = trainer.steps.step(net)(next(iter(trainer.dataset(seed=0))))
            assert np.isfinite(float(logs["total"])), net
        assert all(b.dtype == "float32" for b in trainer.buffers.values())
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
