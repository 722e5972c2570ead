"""tf.data input functions: rows, index, order, batching, sharding and MirroredStrategy."""

import numpy as np
import pytest
import tensorflow as tf

from udsph_tf.data.pipeline import make_dataset_fn, make_schedule_dataset_fn


def _arrays(n=37):
    rng = np.random.default_rng(0)
    return {"images": rng.standard_normal((n, 5)).astype(np.float32),
            "tags": (rng.random((n, 11)) < 0.3).astype(np.float32),
            "labels": np.eye(4, dtype=np.float32)[np.arange(n) % 4],
            "paths": np.array([f"im{i}.jpg" for i in range(n)])}


def _collect(ds):
    return [{k: v.numpy() for k, v in batch.items()} for batch in ds]


@pytest.mark.parametrize("gather", ["tensor", "numpy"])
def test_rows_match_index_and_one_pass_sees_every_row_once(gather):
    arrays = _arrays()
    batches = _collect(make_dataset_fn(arrays, 8, seed=1, gather=gather)())
    assert [len(b["index"]) for b in batches] == [8, 8, 8, 8, 5]
    index = np.concatenate([b["index"] for b in batches])
    assert sorted(index.tolist()) == list(range(37))
    assert index.tolist() != list(range(37))  # shuffled
    for b in batches:
        assert b["index"].dtype == np.int64
        for name in ("images", "tags", "labels"):
            np.testing.assert_array_equal(b[name], arrays[name][b["index"]])
        assert [p.decode() for p in b["paths"]] == [f"im{i}.jpg" for i in b["index"]]


def test_gather_modes_agree_and_seed_fixes_order():
    arrays = _arrays()
    a = _collect(make_dataset_fn(arrays, 8, seed=3, gather="tensor")())
    b = _collect(make_dataset_fn(arrays, 8, seed=3, gather="numpy")())
    c = _collect(make_dataset_fn(arrays, 8, seed=4, gather="numpy")())
    order = lambda bs: np.concatenate([x["index"] for x in bs]).tolist()  # noqa: E731
    assert order(a) == order(b) != order(c)
    np.testing.assert_array_equal(np.concatenate([x["images"] for x in a]),
                                  np.concatenate([x["images"] for x in b]))


def test_no_shuffle_keeps_order_and_drop_remainder():
    batches = _collect(make_dataset_fn(_arrays(), 8, shuffle=False, drop_remainder=True)())
    assert np.concatenate([b["index"] for b in batches]).tolist() == list(range(32))
    ds = make_dataset_fn(_arrays(), 8, drop_remainder=True)()
    assert ds.element_spec["images"].shape.as_list() == [8, 5]


def test_repeat_reshuffles_each_pass():
    ds = make_dataset_fn(_arrays(10), 10, seed=0, repeat=True)()
    first, second = [b["index"].numpy().tolist() for b in ds.take(2)]
    assert sorted(first) == sorted(second) == list(range(10))
    assert first != second


def _Context(pipelines, pipeline_id, replicas):
    """What tf.distribute passes to a dataset_fn on one of several workers."""
    return tf.distribute.InputContext(num_input_pipelines=pipelines,
                                      input_pipeline_id=pipeline_id,
                                      num_replicas_in_sync=replicas)


def test_input_pipelines_read_disjoint_shards():
    """Multi-worker: 2 workers x 2 replicas; each pipeline reads half the rows."""
    fn = make_dataset_fn(_arrays(), 8, seed=0)
    seen = []
    for pipeline_id in range(2):
        batches = _collect(fn(_Context(2, pipeline_id, 4)))
        assert max(len(b["index"]) for b in batches) == 2  # 8 global / 4 replicas
        seen.append(np.concatenate([b["index"] for b in batches]))
    assert np.intersect1d(seen[0], seen[1]).size == 0
    assert sorted(np.concatenate(seen).tolist()) == list(range(37))


@pytest.mark.parametrize("gather", ["tensor", "numpy"])
@pytest.mark.parametrize("context,repeat,steps", [(None, True, 6), (None, False, 4),
                                                   ("2x4", True, 3)])
def test_schedule_is_each_pass_of_its_own_pipeline_one_after_the_other(gather, context,
                                                                        repeat, steps):
    """Seven passes (an odd count: the joining tree has a lone branch) of 6 cycled or 4 full
    batches of 8, or on one of two pipelines feeding 4 replicas (2 elements a step)."""
    arrays = _arrays()
    ctx = _Context(2, 1, 4) if context else None
    per_step = 2 if context else 1
    seeds = [11, 5, 2 ** 31 - 2, 0, 7, 7, 3]
    joined = _collect(make_schedule_dataset_fn(arrays, 8, seeds, steps, repeat=repeat,
                                               gather=gather, keep_pass_seed=True)(ctx))
    alone = []
    for seed in seeds:
        one = make_dataset_fn(arrays, 8, seed=seed, repeat=repeat, drop_remainder=True,
                              gather=gather)(ctx)
        alone += [dict(b, pass_seed=np.full(len(b["index"]), seed))
                  for b in _collect(one.take(steps * per_step))]
    assert len(joined) == len(alone) == len(seeds) * steps * per_step
    for a, b in zip(joined, alone):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    plain = _collect(make_schedule_dataset_fn(arrays, 8, seeds[:2], steps, repeat=repeat,
                                              gather=gather)(ctx))
    assert "pass_seed" not in plain[0]
    with pytest.raises(ValueError, match="one seed a pass"):
        make_schedule_dataset_fn(arrays, 8, [], 4, repeat=False)


def test_bad_arguments():
    with pytest.raises(ValueError, match="different row counts"):
        make_dataset_fn({"a": np.zeros((3, 1)), "b": np.zeros((4, 1))}, 2)
    with pytest.raises(ValueError, match="'index' is reserved"):
        make_dataset_fn({"index": np.zeros(3)}, 2)
    with pytest.raises(ValueError, match="global_batch_size must be >= 1"):
        make_dataset_fn({"a": np.zeros(3)}, 0)
    with pytest.raises(ValueError, match="not divisible by the 4 replicas"):
        make_dataset_fn({"a": np.zeros(3)}, 6)(_Context(1, 0, 4))


def test_mirrored_strategy_splits_batches_over_two_replicas():
    devices = tf.config.list_logical_devices("CPU")
    if len(devices) < 2:
        pytest.skip("needs the two logical CPU devices of tests/conftest.py")
    strategy = tf.distribute.MirroredStrategy([d.name for d in devices[:2]])
    arrays = _arrays(37)
    dist = strategy.distribute_datasets_from_function(make_dataset_fn(arrays, 8, seed=2))

    @tf.function
    def step(batch):
        def replica_fn(b):
            # Each replica checks its own rows against the index it was given.
            return b["index"], tf.reduce_sum(b["images"], axis=1)
        return strategy.run(replica_fn, args=(batch,))

    seen, sizes = [], []
    for batch in dist:
        index, sums = step(batch)
        per_replica = strategy.experimental_local_results(index)
        sum_parts = strategy.experimental_local_results(sums)
        assert len(per_replica) == 2
        sizes.append([int(tf.size(x)) for x in per_replica])
        for idx, s in zip(per_replica, sum_parts):
            np.testing.assert_allclose(s.numpy(), arrays["images"][idx.numpy()].sum(1),
                                       rtol=1e-6)
            seen.extend(idx.numpy().tolist())
    assert sorted(seen) == list(range(37))  # every row exactly once per pass
    assert sizes[0] == [4, 4]  # a global batch of 8 is 4 per replica
