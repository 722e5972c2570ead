"""Choice of the tf.distribute strategy: MirroredStrategy locally, MultiWorker from TF_CONFIG."""

import json
import os
import tempfile

import tensorflow as tf


def _split_cpu(num_replicas):
    """Give a CPU-only machine `num_replicas` logical devices (only before TF initialises)."""
    cpus = tf.config.list_physical_devices("CPU")
    if tf.config.list_physical_devices("GPU") or not cpus:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_replicas)
    except RuntimeError:
        pass  # devices already initialised (e.g. by tests); use what exists


def tf_config():
    """The parsed TF_CONFIG environment variable, or None when it is unset or empty."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON: {err}") from err
    if "cluster" not in parsed or "task" not in parsed:
        raise ValueError("TF_CONFIG needs 'cluster' and 'task' keys, got "
                         f"{sorted(parsed)}")
    return parsed


def make_strategy(num_replicas=0):
    """MultiWorkerMirroredStrategy when TF_CONFIG names a cluster, else MirroredStrategy.

    num_replicas: local replicas; 0 = every local device (on a CPU-only machine N > 1 splits
    the CPU into N logical devices, which must happen before TensorFlow initialises).
    """
    if num_replicas < 0:
        raise ValueError(f"num_replicas must be >= 0, got {num_replicas}")
    if tf_config() is not None:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if num_replicas > 1:
        _split_cpu(num_replicas)
    devices = [d.name for d in tf.config.list_logical_devices("GPU")] or \
        [d.name for d in tf.config.list_logical_devices("CPU")]
    if num_replicas:
        if num_replicas > len(devices):
            raise ValueError(f"num_replicas={num_replicas} but only {len(devices)} local "
                             f"devices exist: {devices}")
        devices = devices[:num_replicas]
    return tf.distribute.MirroredStrategy(devices)


def is_chief(strategy):
    """True on the worker that writes checkpoints and summaries (always true locally)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    # Without an explicit chief, worker 0 is the chief (TF's convention).
    cluster = resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in cluster


def worker_dir(workdir, strategy):
    """Where this worker saves: workdir on the chief, a throw-away temp dir elsewhere.

    Every MultiWorker worker must call save (it is a collective), but only the chief's copy is kept.
    """
    if is_chief(strategy):
        return workdir
    resolver = strategy.cluster_resolver
    return os.path.join(tempfile.gettempdir(),
                        f"udsph_worker_{resolver.task_type}_{resolver.task_id}_{os.getpid()}")


def num_workers(strategy):
    """Workers of a multi-worker strategy (1 for a local one)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    cluster = resolver.cluster_spec().as_dict()
    return max(1, len(cluster.get("worker", [])) + len(cluster.get("chief", [])))
