"""tf.data input functions that serve one device, MirroredStrategy and multi-worker alike."""

from typing import Callable, Dict, Optional

import numpy as np
import tensorflow as tf

# Above this many bytes the rows are gathered from the numpy arrays per batch instead of
# being copied into TF constants: a dataset graph holding >2 GB of constants cannot be
# serialised, which tf.distribute does when it places datasets on devices.
TENSOR_GATHER_MAX_BYTES = 256 * 2 ** 20
# numpy_function holds the GIL, so parallel calls beyond two gain nothing and can contend for
# it (bench/data_pipeline.py compares this with AUTOTUNE).
NUMPY_PARALLEL_CALLS = 2


def _normalise(arrays: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    if not arrays:
        raise ValueError("make_dataset_fn: no arrays given")
    if "index" in arrays:
        raise ValueError("make_dataset_fn: 'index' is reserved for the row position")
    out = {}
    for name, arr in arrays.items():
        arr = np.asarray(arr)
        if arr.dtype.kind == "U":  # TF strings are bytes
            arr = np.char.encode(arr, "utf-8")
        if arr.dtype.kind == "O":
            raise ValueError(f"make_dataset_fn: array {name!r} has dtype object; give a "
                             "numeric or string array")
        if arr.ndim == 0:
            raise ValueError(f"make_dataset_fn: array {name!r} is a scalar, need one row per item")
        out[name] = arr
    lengths = {name: len(a) for name, a in out.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"make_dataset_fn: arrays have different row counts: {lengths}")
    return out


def make_dataset_fn(arrays: Dict[str, np.ndarray], global_batch_size: int, *,
                    shuffle: bool = True, seed: int = 0, repeat: bool = False,
                    drop_remainder: bool = False, gather: str = "auto"
                    ) -> Callable[[Optional[tf.distribute.InputContext]], tf.data.Dataset]:
    """A `dataset_fn(input_context)` yielding dicts of the arrays' rows plus "index" (int64
    row position in the arrays, for per-item buffers).

    Batches are per replica (`get_per_replica_batch_size`); with several input pipelines
    (multi-worker) each pipeline reads its own shard of the rows, so one pass over all
    pipelines sees every row once. gather: "tensor" (rows copied into TF), "numpy" (rows
    gathered from the numpy arrays per batch; no copy, any size) or "auto" (by size).
    """
    arrays = _normalise(arrays)
    if int(global_batch_size) < 1:
        raise ValueError(f"make_dataset_fn: global_batch_size must be >= 1, got "
                         f"{global_batch_size}")
    num_rows = len(next(iter(arrays.values())))
    total_bytes = sum(a.nbytes for a in arrays.values())
    if gather == "auto":
        gather = "tensor" if total_bytes <= TENSOR_GATHER_MAX_BYTES else "numpy"
    if gather not in ("tensor", "numpy"):
        raise ValueError(f"make_dataset_fn: gather must be auto, tensor or numpy, not {gather!r}")
    names = list(arrays)
    specs = {n: tf.TensorSpec([None] + list(a.shape[1:]), tf.as_dtype(a.dtype))
             for n, a in arrays.items()}

    # One host copy shared by every call of dataset_fn, made at the first call: creating
    # tensors earlier could initialise TF before a MultiWorkerMirroredStrategy is set up.
    tensors = {}

    def dataset_fn(input_context: Optional[tf.distribute.InputContext] = None):
        batch = int(global_batch_size)
        ds = tf.data.Dataset.range(num_rows)
        if input_context is not None:
            if global_batch_size % input_context.num_replicas_in_sync:
                raise ValueError(f"global batch size {global_batch_size} is not divisible by "
                                 f"the {input_context.num_replicas_in_sync} replicas")
            batch = input_context.get_per_replica_batch_size(global_batch_size)
            if input_context.num_input_pipelines > 1:
                ds = ds.shard(input_context.num_input_pipelines,
                              input_context.input_pipeline_id)
        if shuffle:
            # Indices only, so a full-size buffer costs 8 bytes a row: a uniform shuffle.
            ds = ds.shuffle(num_rows, seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch, drop_remainder=drop_remainder)
        if repeat:
            ds = ds.repeat()

        if gather == "tensor":
            if not tensors:
                with tf.device("/cpu:0"):
                    tensors.update({n: tf.constant(a) for n, a in arrays.items()})

            def take(idx):
                out = {n: tf.gather(t, idx) for n, t in tensors.items()}
                out["index"] = idx
                return out
        else:
            def take(idx):
                def rows(i):
                    return [arrays[n][i] for n in names]
                values = tf.numpy_function(rows, [idx], [specs[n].dtype for n in names],
                                           stateful=False)
                out = {}
                for n, v in zip(names, values):
                    v.set_shape(specs[n].shape)
                    out[n] = v
                out["index"] = idx
                return out
        parallel = tf.data.AUTOTUNE if gather == "tensor" else NUMPY_PARALLEL_CALLS
        return ds.map(take, num_parallel_calls=parallel,
                      deterministic=True).prefetch(tf.data.AUTOTUNE)

    return dataset_fn
