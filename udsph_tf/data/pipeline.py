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


class _RowGather:
    """Batches of row indices -> dicts of the arrays' rows plus "index", gathered from TF
    constants ("tensor", one host copy made at the first use and shared by every dataset of
    this object) or from the numpy arrays per batch ("numpy": no copy, any size)."""

    def __init__(self, arrays, gather):
        self.arrays = arrays
        total_bytes = sum(a.nbytes for a in arrays.values())
        if gather == "auto":
            gather = "tensor" if total_bytes <= TENSOR_GATHER_MAX_BYTES else "numpy"
        if gather not in ("tensor", "numpy"):
            raise ValueError(f"make_dataset_fn: gather must be auto, tensor or numpy, not "
                             f"{gather!r}")
        self.gather = gather
        self.names = list(arrays)
        self.specs = {n: tf.TensorSpec([None] + list(a.shape[1:]), tf.as_dtype(a.dtype))
                      for n, a in arrays.items()}
        # Made at the first dataset: creating tensors earlier could initialise TF before a
        # MultiWorkerMirroredStrategy is set up.
        self.tensors = {}
        self.parallel = tf.data.AUTOTUNE if gather == "tensor" else NUMPY_PARALLEL_CALLS

    def prepared(self):
        """self, its host copy made (call where the dataset is built, not inside a map)."""
        if self.gather == "tensor" and not self.tensors:
            with tf.device("/cpu:0"):
                self.tensors.update({n: tf.constant(a) for n, a in self.arrays.items()})
        return self

    def __call__(self, idx):
        if self.gather == "tensor":
            out = {n: tf.gather(t, idx) for n, t in self.tensors.items()}
        else:
            def rows(i):
                return [self.arrays[n][i] for n in self.names]
            values = tf.numpy_function(rows, [idx], [self.specs[n].dtype for n in self.names],
                                       stateful=False)
            out = {}
            for n, v in zip(self.names, values):
                v.set_shape(self.specs[n].shape)
                out[n] = v
        out["index"] = idx
        return out


def _checked(arrays, global_batch_size):
    arrays = _normalise(arrays)
    if int(global_batch_size) < 1:
        raise ValueError(f"make_dataset_fn: global_batch_size must be >= 1, got "
                         f"{global_batch_size}")
    return arrays


def _rows_of_this_pipeline(num_rows, global_batch_size, input_context):
    """(row indices this input pipeline reads, its per-replica batch size)."""
    batch = int(global_batch_size)
    ds = tf.data.Dataset.range(num_rows)
    if input_context is not None:
        if global_batch_size % input_context.num_replicas_in_sync:
            raise ValueError(f"global batch size {global_batch_size} is not divisible by "
                             f"the {input_context.num_replicas_in_sync} replicas")
        batch = input_context.get_per_replica_batch_size(global_batch_size)
        if input_context.num_input_pipelines > 1:
            ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    return ds, batch


def _pass_indices(num_rows, global_batch_size, input_context, seed, drop_remainder, repeat):
    """One pass's batches of row indices (shuffled by `seed` unless it is None)."""
    ds, batch = _rows_of_this_pipeline(num_rows, global_batch_size, input_context)
    if seed is not None:
        # Indices only, so a full-size buffer costs 8 bytes a row: a uniform shuffle.
        ds = ds.shuffle(num_rows, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch, drop_remainder=drop_remainder)
    return ds.repeat() if repeat else ds


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
    arrays = _checked(arrays, global_batch_size)
    num_rows = len(next(iter(arrays.values())))
    take = _RowGather(arrays, gather)

    def dataset_fn(input_context: Optional[tf.distribute.InputContext] = None):
        ds = _pass_indices(num_rows, global_batch_size, input_context, seed if shuffle else None,
                           drop_remainder, repeat)
        return ds.map(take.prepared(), num_parallel_calls=take.parallel,
                      deterministic=True).prefetch(tf.data.AUTOTUNE)

    return dataset_fn


def make_schedule_dataset_fn(arrays: Dict[str, np.ndarray], global_batch_size: int,
                             seeds, steps_per_pass: int, *, repeat: bool,
                             gather: str = "auto", keep_pass_seed: bool = False
                             ) -> Callable[[Optional[tf.distribute.InputContext]],
                                           tf.data.Dataset]:
    """The training batches of many passes as one `dataset_fn(input_context)`: pass k is
    `make_dataset_fn(arrays, global_batch_size, seed=seeds[k], repeat=repeat,
    drop_remainder=True)` cut to `steps_per_pass` global steps, the passes one after the
    other: the same batches from one input pipeline instead of one a pass (each pass's own
    set-up, iterator and deletion made MIRFlickr-730's input 7x dearer: bench/run_input.py).
    keep_pass_seed adds each batch's pass seed as "pass_seed" (raw-image augmentation draws
    from it)."""
    arrays = _checked(arrays, global_batch_size)
    num_rows = len(next(iter(arrays.values())))
    take = _RowGather(arrays, gather)
    seeds = [int(seed) for seed in seeds]
    if not seeds:
        raise ValueError("make_schedule_dataset_fn: need one seed a pass, got none")

    def dataset_fn(input_context: Optional[tf.distribute.InputContext] = None):
        # A pipeline's elements are per-replica batches: a step takes one per replica it feeds.
        per_step = (1 if input_context is None else
                    input_context.num_replicas_in_sync // input_context.num_input_pipelines)

        def one_pass(seed):
            # make_dataset_fn's indices (the rows are gathered once, after the passes are
            # joined), with a Python int seed, as there.
            ds = _pass_indices(num_rows, global_batch_size, input_context, seed, True, repeat)
            ds = ds.take(steps_per_pass * per_step)
            if keep_pass_seed:
                ds = ds.map(lambda idx: (idx, tf.fill(tf.shape(idx), tf.constant(seed,
                                                                               tf.int64))))
            return ds

        rows_of = take.prepared()

        def gather(idx, pass_seed=None):
            out = rows_of(idx)
            if pass_seed is not None:
                out["pass_seed"] = pass_seed
            return out

        ds = _concatenate([one_pass(seed) for seed in seeds])
        return ds.map(gather, num_parallel_calls=take.parallel,
                      deterministic=True).prefetch(tf.data.AUTOTUNE)

    return dataset_fn


def _concatenate(datasets):
    """The datasets one after the other, joined as a balanced tree (depth log2 n, not n)."""
    while len(datasets) > 1:
        pairs = [a.concatenate(b) for a, b in zip(datasets[0::2], datasets[1::2])]
        datasets = pairs + ([datasets[-1]] if len(datasets) % 2 else [])
    return datasets[0]
