"""Tiny generated runs for tests and benchmarks of the training loop (no files, seconds to
train)."""

import dataclasses

import numpy as np

from udsph_tf.config import Config, replace
from udsph_tf.data.types import CrossModalData, Split


def tiny_data(n=96, image_dim=16, tag_dim=24, num_labels=5, seed=0):
    """Image features and tag BoWs that both depend on random labels, so hashing can learn."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, num_labels)) < 0.3).astype(np.uint8)
    labels[labels.sum(1) == 0, rng.integers(0, num_labels)] = 1
    img_proj = rng.normal(size=(num_labels, image_dim))
    images = (labels @ img_proj + 0.3 * rng.normal(size=(n, image_dim))).astype(np.float32)
    tag_proj = rng.random((num_labels, tag_dim)) < 0.25
    tags = ((labels @ tag_proj + (rng.random((n, tag_dim)) < 0.05)) > 0).astype(np.float32)
    return CrossModalData(name="tiny", images=images, tags=tags, labels=labels,
                          ids=np.arange(n))


def tiny_region_data(grid=2, n=96, seed=5, **kwargs):
    """tiny_data with the image side laid out as --region_grid gives it: (n, grid*grid + 1, d),
    the cells (the global vector plus noise, so they differ from image to image and from each
    other) then the global vector in the last row."""
    base = tiny_data(n=n, **kwargs)
    rng = np.random.default_rng(seed)
    cells = base.images[:, None, :] + 0.5 * rng.standard_normal(
        (n, grid * grid, base.images.shape[1]))
    images = np.concatenate([cells, base.images[:, None, :]], axis=1).astype(np.float32)
    return dataclasses.replace(base, images=images)


def tiny_split(n=96, num_query=16, num_val=16, seed=0):
    perm = np.random.default_rng(seed).permutation(n)
    query, database = perm[:num_query], perm[num_query:]
    return Split(query_idx=query, database_idx=database, train_idx=database[num_val:],
                 val_idx=database[:num_val], seed=seed).check(n)


def tiny_config(workdir, **changes):
    """Small widths and few steps; every change on top is a Config field."""
    base = Config(workdir=str(workdir), bits=8, feature_dim=16, labnet_hidden=32,
                  imgnet_hidden=32, txtnet_hidden=32, txt_scales="5,3", disc_hidden="16",
                  attention_dim=8, epochs=2, batch_size=16, lr_lab=1e-3, lr_img=1e-3,
                  lr_txt=1e-3, lr_disc=1e-3, progress=False, keep_checkpoints=2)
    if hasattr(base, "token_dim"):
        changes.setdefault("token_dim", 8)
    # One pass of full batches per network: these runs test the loop, not learning quality.
    changes.setdefault("min_pass_steps", 0)
    changes.setdefault("lab_passes", 1)
    changes.setdefault("refit", False)  # no second training phase (tests/test_refit.py)
    return replace(base, **changes)


_STRATEGIES = {}


def shared_strategy(num_replicas):
    """One MirroredStrategy per replica count for the whole process.

    Separate strategies on the same devices restart their collective instance keys and then
    clash in all_gather ("Collective instance N expected type ..."), so tests share them.
    """
    import tensorflow as tf
    if num_replicas not in _STRATEGIES:
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][:num_replicas]
        if len(devices) < num_replicas:
            raise ValueError(f"{num_replicas} replicas asked, {len(devices)} CPU devices exist")
        _STRATEGIES[num_replicas] = tf.distribute.MirroredStrategy(devices)
    return _STRATEGIES[num_replicas]


def checkpoint_values(prefix):
    """Every tensor of a checkpoint by name (save_counter left out: it counts saves, not state)."""
    import tensorflow as tf
    reader = tf.train.load_checkpoint(prefix)
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if "save_counter" not in k}


def last_checkpoint_values(workdir):
    """checkpoint_values of the newest resumable checkpoint in `workdir`/ckpt."""
    import os
    import tensorflow as tf
    return checkpoint_values(tf.train.latest_checkpoint(os.path.join(str(workdir), "ckpt")))


def assert_resume_equals_one_session(run, root, **changes):
    """`run(workdir, **fields)` for 2 epochs at once and for 1 + 1 in two sessions (both
    deterministic) under `root`: the last checkpoints must be equal tensor for tensor and the
    test MAPs identical. Returns (the one-session metrics, its checkpoint values)."""
    full = run(root / "full", epochs=2, deterministic=True, **changes)
    run(root / "split", epochs=1, deterministic=True, **changes)
    resumed = run(root / "split", epochs=2, deterministic=True, **changes)
    a, b = last_checkpoint_values(root / "full"), last_checkpoint_values(root / "split")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert full["test"]["map_i2t"] == resumed["test"]["map_i2t"]
    assert full["test"]["map_t2i"] == resumed["test"]["map_t2i"]
    return full, a
