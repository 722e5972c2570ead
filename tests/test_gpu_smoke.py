"""GPU smoke test: a few training steps on the default data place the loop on the GPU.

Skipped, with the reason, where TensorFlow sees no GPU (this project's CPU machines and CI);
run it on a GPU machine after `pip install -e '.[test,gpu]'` (README, GPU)."""

import numpy as np
import pytest
import tensorflow as tf

GPUS = tf.config.list_physical_devices("GPU")
pytestmark = pytest.mark.skipif(
    not GPUS, reason=f"no GPU visible to TensorFlow {tf.__version__} "
                     f"(built with CUDA: {tf.test.is_built_with_cuda()}); "
                     "install the GPU build with `pip install -e '.[gpu]'` on a GPU machine")


def test_default_data_steps_run_on_the_gpu(tmp_path):
    import keras
    from udsph_tf.config import Config
    from udsph_tf.training.strategy import make_strategy
    from udsph_tf.modes.train import make_trainer

    config = Config(workdir=str(tmp_path / "run"), epochs=1, progress=False)
    try:
        trainer = make_trainer(config, strategy=make_strategy(0)).task  # every visible GPU
        # --mixed_precision=auto is mixed_float16 on GPUs; the heads and losses stay float32.
        assert keras.mixed_precision.dtype_policy().name == "mixed_float16"
        for net in trainer.networks:
            variables = trainer.steps.train_variables(net)
            for v in variables:
                for value in getattr(v, "values", (v,)):  # a MirroredVariable's replicas
                    assert "GPU" in value.device.upper(), (net, v.name, value.device)
        for name, buffer in trainer.buffers.items():
            assert "GPU" in buffer.device.upper(), (name, buffer.device)
        trainer.fill_buffers()
        gpu = [d.name for d in tf.config.list_logical_devices("GPU")][0]
        tf.config.experimental.reset_memory_stats(gpu)
        resident = tf.config.experimental.get_memory_info(gpu)["current"]  # weights, buffers
        before = {n: b.numpy().copy() for n, b in trainer.buffers.items() if n.endswith("_H")}
        for net in trainer.networks:
            step = trainer.steps.step(net)
            iterator = iter(trainer.dataset(seed=0))
            for _ in range(3):
                logs = step(next(iterator))
            assert np.isfinite(float(logs["total"])), net
        # The steps' activations and gradients were allocated on the GPU (a 4,096-wide layer's
        # gradient alone is tens of MB; steps placed on the CPU would leave the peak where the
        # resident weights and buffers put it) ...
        assert tf.config.experimental.get_memory_info(gpu)["peak"] - resident > 8 * 2**20
        # ... and their outputs were written into the GPU-resident buffers.
        assert any(not np.array_equal(before[n], trainer.buffers[n].numpy()) for n in before)
        assert trainer.buffers["img_H"].dtype == tf.float32
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
