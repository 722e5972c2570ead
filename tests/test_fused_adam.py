"""--fused_adam: ResourceApplyAdam gives Keras Adam's update (same rule, epsilon and slots),
under MirroredStrategy, LossScaleOptimizer and per-epoch rates, and resumes checkpoints."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from udsph_tf.modes.train import make_trainer, train_and_evaluate
from udsph_tf.training.optimizers import FusedAdam, make_optimizer
from udsph_tf.training.testing import (assert_resume_equals_one_session, last_checkpoint_values,
                                       shared_strategy, tiny_config,
                                       tiny_data, tiny_split)

SHAPES = [(24, 16), (16,), (16, 4)]
STEPS = 12


def _problem(seed=0):
    """Initial weights and a gradient sequence spanning 1e-4 .. 10 in scale."""
    rng = np.random.default_rng(seed)
    init = [rng.normal(size=s).astype(np.float32) for s in SHAPES]
    grads = [[(rng.normal(size=s) * 10 ** rng.uniform(-4, 1)).astype(np.float32)
              for s in SHAPES] for _ in range(STEPS)]
    return init, grads


def _inner(opt):
    return opt.inner_optimizer if isinstance(opt, keras.optimizers.LossScaleOptimizer) else opt


def _train(fused, replicas=1, loss_scale=False, overflow_at=None, **adam):
    """Apply the gradient sequence in a tf.function through strategy.run, as the steps do;
    the rate changes after half the steps (as Task.set_learning_rates does per epoch)."""
    init, grads = _problem()
    strategy = shared_strategy(replicas)
    with strategy.scope():
        variables = [tf.Variable(x) for x in init]
        opt = make_optimizer("imgnet", 1e-2, fused=fused, loss_scale=loss_scale)
        if adam:
            opt = (FusedAdam if fused else keras.optimizers.Adam)(
                learning_rate=1e-2, name="adam_imgnet", **adam)
        opt.build(variables)

    @tf.function(autograph=False)
    def step(gs):
        def replica(*g):
            # Each replica holds 1/n of the gradient; the optimizer all-reduces the sum.
            scale = opt.scale_loss(1.0) if loss_scale else 1.0
            opt.apply_gradients([(x * scale / replicas, v) for x, v in zip(g, variables)])
        strategy.run(replica, args=tuple(gs))

    for i, gs in enumerate(grads):
        if i == STEPS // 2:
            opt.learning_rate.assign(3e-3)
        if i == overflow_at:
            gs = [np.full_like(g, np.inf) for g in gs]
        step([tf.constant(g) for g in gs])
    slots = {v.path: v.numpy() for v in _inner(opt).variables}
    return [v.numpy() for v in variables], slots, opt


def _numpy_adam(lr=1e-2, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """The documented rule in float64: epsilon added to sqrt(v) of the uncorrected moment."""
    init, grads = _problem()
    w = [x.astype(np.float64) for x in init]
    m = [np.zeros_like(x) for x in w]
    v = [np.zeros_like(x) for x in w]
    for t, gs in enumerate(grads, start=1):
        rate = lr if t <= STEPS // 2 else 3e-3
        alpha = rate * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
        for i, g in enumerate(gs):
            m[i] += (g - m[i]) * (1 - beta_1)
            v[i] += (g * g - v[i]) * (1 - beta_2)
            w[i] -= alpha * m[i] / (np.sqrt(v[i]) + epsilon)
    return w


def _close(actual, expected, rtol, name):
    scale = max(float(np.max(np.abs(expected))), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=name)


def test_fused_adam_equals_keras_adam_after_steps():
    keras_w, keras_slots, _ = _train(fused=False)
    fused_w, fused_slots, opt = _train(fused=True)
    assert isinstance(opt, FusedAdam)
    for i, (a, b) in enumerate(zip(fused_w, keras_w)):
        _close(a, b, 1e-6, f"variable {i}")
    assert fused_slots.keys() == keras_slots.keys()  # same slot names: checkpoints resume
    for name, b in keras_slots.items():
        # Keras multiplies v's update by float32(1 - 0.999) = 0.0010000000475, the kernel by
        # 1 - float32(0.999) = 0.00099998713: v differs by 1.3e-5 relative (optimizers.py).
        _close(fused_slots[name], b, 3e-5 if "velocity" in name else 1e-6, name)
    for a, b in zip(keras_w, _numpy_adam()):
        _close(a, b, 1e-5, "keras vs the float64 rule")


def test_fused_adam_epsilon_placement_matches_keras_with_exact_coefficients():
    """With 1 - beta exact in float32 and a large epsilon (its placement matters), the kernel
    and Keras agree to rounding in every variable and slot, and both follow the rule."""
    adam = dict(beta_1=0.5, beta_2=0.75, epsilon=1e-2)
    keras_w, keras_slots, _ = _train(fused=False, **adam)
    fused_w, fused_slots, _ = _train(fused=True, **adam)
    for a, b in zip(fused_w, keras_w):
        _close(a, b, 1e-6, "variable")
    for name, b in keras_slots.items():
        _close(fused_slots[name], b, 1e-6, name)
    for a, b in zip(fused_w, _numpy_adam(**adam)):
        _close(a, b, 1e-5, "fused vs the float64 rule")


def _needs_two_devices():
    if len(tf.config.list_logical_devices("CPU")) < 2:
        pytest.skip("needs two logical CPU devices (tests/conftest.py sets them up)")


def test_fused_adam_two_replicas_equal_one_device():
    _needs_two_devices()
    one, one_slots, _ = _train(fused=True, replicas=1)
    two, two_slots, _ = _train(fused=True, replicas=2)
    for a, b in zip(two, one):
        _close(a, b, 1e-6, "variable")
    for name, b in one_slots.items():
        _close(two_slots[name], b, 1e-5, name)


def test_fused_adam_under_loss_scaling_skips_overflow_like_keras():
    """LossScaleOptimizer(FusedAdam): unscales, skips the step whose gradients overflowed
    (halving the scale), and otherwise takes Keras Adam's steps."""
    keras_w, _, keras_opt = _train(fused=False, loss_scale=True, overflow_at=3)
    fused_w, _, fused_opt = _train(fused=True, loss_scale=True, overflow_at=3)
    assert isinstance(fused_opt.inner_optimizer, FusedAdam)
    # The overflowing step was skipped: one update fewer.
    assert int(fused_opt.inner_optimizer.iterations.numpy()) == STEPS - 1
    assert float(fused_opt.dynamic_scale.numpy()) == float(keras_opt.dynamic_scale.numpy())
    for a, b in zip(fused_w, keras_w):
        assert np.all(np.isfinite(a))
        _close(a, b, 1e-6, "variable")


# --- the training loop with --fused_adam ---------------------------------------------------

def _task(tmp_path, **changes):
    config = tiny_config(tmp_path, batch_size=16, **changes)
    task = make_trainer(config, strategy=shared_strategy(1), data=tiny_data(),
                        split=tiny_split()).task
    return task


def test_task_builds_fused_optimizers_only_with_the_flag(tmp_path):
    plain = _task(tmp_path / "plain")
    fused = _task(tmp_path / "fused", fused_adam=True)
    scaled = _task(tmp_path / "fp16", fused_adam=True, mixed_precision="fp16")
    keras.mixed_precision.set_dtype_policy("float32")
    assert not any(isinstance(o, FusedAdam) for o in plain.optimizers.values())
    assert all(isinstance(o, FusedAdam) for o in fused.optimizers.values())
    assert all(isinstance(o.inner_optimizer, FusedAdam) for o in scaled.optimizers.values())
    # Same slot names, so a checkpoint of either resumes in the other.
    for net in plain.optimizers:
        assert [v.path for v in plain.optimizers[net].variables] == \
            [v.path for v in fused.optimizers[net].variables], net


@pytest.mark.parametrize("precision", ["off", "fp16"])
def test_task_steps_with_fused_adam_equal_keras_adam(tmp_path, precision):
    """One step of every network from the same weights and batch: the same weights after."""
    tasks = [_task(tmp_path / str(fused), fused_adam=fused, mixed_precision=precision)
             for fused in (False, True)]
    keras.mixed_precision.set_dtype_policy("float32")
    plain, fused = tasks
    for name, model in plain.models.items():
        if model is not None:
            fused.models[name].set_weights(model.get_weights())
    rows = np.arange(16)
    d = plain.train_data
    batch = {"images": d.images[rows], "tags": d.tags[rows].astype(np.float32),
             "labels": d.labels[rows], "index": rows.astype(np.int64)}
    for task in tasks:
        task.fill_buffers()
        for net in task.networks:
            task.steps.step(net)({k: tf.constant(v) for k, v in batch.items()})
    for name, model in plain.models.items():
        if model is None:
            continue
        for a, b in zip(fused.models[name].weights, model.weights):
            # Adam's first step is lr * g / (|g| + eps) per entry: 1e-3 where g is not tiny.
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name}/{b.path}")


def _run(workdir, **changes):
    return train_and_evaluate(tiny_config(workdir, **changes), strategy=shared_strategy(1),
                              data=tiny_data(), split=tiny_split())


@pytest.mark.slow
def test_fused_run_resumes_and_keras_checkpoint_resumes_fused(tmp_path):
    """2 epochs with --fused_adam equal 1 + 1 resumed (bit for bit, deterministic), and a
    Keras-Adam checkpoint resumed with --fused_adam ends where 2 fused epochs end (to float
    rounding: the two Adams agree to rounding, test above)."""
    full, a = assert_resume_equals_one_session(_run, tmp_path, fused_adam=True)

    _run(tmp_path / "mixed", epochs=1, deterministic=True)
    mixed = _run(tmp_path / "mixed", epochs=2, deterministic=True, fused_adam=True)
    d = last_checkpoint_values(tmp_path / "mixed")
    assert d.keys() == a.keys()
    for k in a:
        if np.asarray(a[k]).dtype.kind not in "fiu" or "velocity" in k:
            continue  # the object graph; v: 1.3e-5 relative by construction (test above)
        np.testing.assert_allclose(d[k], a[k], rtol=1e-4, atol=1e-5, err_msg=k)
    assert mixed["test"]["map_i2t"] == pytest.approx(full["test"]["map_i2t"], abs=0.02)


def test_weight_decay_is_decoupled_and_the_same_fused_or_not(tmp_path):
    """--txt_weight_decay: w -= lr * decay * w before each Adam update (AdamW), in Keras's
    apply, so the fused update keeps it; only TxtNet's optimizer gets it."""
    keras_w, _, _ = _train(fused=False, weight_decay=0.5)
    fused_w, _, _ = _train(fused=True, weight_decay=0.5)
    plain_w, _, _ = _train(fused=False)
    init, grads = _problem()
    w = [x.astype(np.float64) for x in init]
    m = [np.zeros_like(x) for x in w]
    v = [np.zeros_like(x) for x in w]
    for t, gs in enumerate(grads, start=1):
        rate = 1e-2 if t <= STEPS // 2 else 3e-3
        alpha = rate * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        for i, g in enumerate(gs):
            w[i] -= rate * 0.5 * w[i]
            m[i] += (g - m[i]) * 0.1
            v[i] += (g * g - v[i]) * (1 - 0.999)
            w[i] -= alpha * m[i] / (np.sqrt(v[i]) + 1e-7)
    for a, b, c, plain in zip(keras_w, fused_w, w, plain_w):
        _close(a, c, 1e-5, "keras with decay vs the float64 rule")
        _close(b, c, 1e-5, "fused with decay vs the float64 rule")
        assert np.abs(a - plain).max() > 1e-4  # the decay did something
    task = make_trainer(tiny_config(tmp_path, txt_weight_decay=0.01, attention="none"),
                        strategy=shared_strategy(1), data=tiny_data(), split=tiny_split()).task
    decays = {net: _inner(opt).weight_decay for net, opt in task.optimizers.items()}
    assert decays.pop("txtnet") == pytest.approx(0.01)
    assert set(decays.values()) == {None}
