"""Checkpoint files: weights-only best/, damaged checkpoints, interrupted-save leftovers, timing."""

import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from udsph_tf.training.checkpointing import (CheckpointUnreadableError, RunCheckpoint,
                                             restore_weights)


class Net(keras.Model):
    """Dense + batch norm (non-trainable moving statistics) + an optional extra statistic."""

    def __init__(self, extra=False):
        super().__init__()
        self.hidden = keras.layers.Dense(16)
        self.norm = keras.layers.BatchNormalization()
        self.out = keras.layers.Dense(4)
        if extra:
            self.mu = self.add_weight(shape=(6,), initializer="zeros", trainable=False,
                                      name="mu")

    def call(self, x, training=False):
        return self.out(self.norm(self.hidden(x), training=training))


def _state(root, keep=2, seed=0, extra=False):
    """A RunCheckpoint over two small networks, an Adam optimizer and a buffer, every value
    drawn from `seed` (moving statistics and Adam slots included)."""
    rng = np.random.default_rng(seed)
    img, txt = Net(extra=extra), Net()
    img(tf.zeros([2, 6]))
    txt(tf.zeros([2, 6]))
    opt = keras.optimizers.Adam(name="adam_img")
    opt.build(img.trainable_variables)
    buffers = {"B": tf.Variable(tf.ones([40, 4]), trainable=False, name="B")}
    ckpt = RunCheckpoint(str(root), {"imgnet": img, "txtnet": txt, "labnet": None},
                         {"imgnet": opt}, buffers, split_seed=3, keep=keep)
    for v in [*img.variables, *txt.variables, *opt.variables, buffers["B"]]:
        v.assign(rng.normal(size=v.shape).astype(v.dtype.as_numpy_dtype
                                                 if hasattr(v.dtype, "as_numpy_dtype")
                                                 else v.dtype))
    return ckpt, {"imgnet": img, "txtnet": txt, "opt": opt, "B": buffers["B"]}


def _values(parts):
    out = {}
    for name in ("imgnet", "txtnet"):
        # Keyed by position: variable paths carry per-instance model names (net, net_1, ...).
        out.update({f"{name}/{i}": v.numpy() for i, v in enumerate(parts[name].variables)})
    out.update({f"opt/{i}": v.numpy() for i, v in enumerate(parts["opt"].variables)})
    out["B"] = parts["B"].numpy()
    return out


def _assert_equal(a, b, keys=None):
    for k in keys or a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _saved_pair(root, keep=2):
    """ckpt/ with two checkpoints (steps 1 and 2) of different values; returns both values."""
    ckpt, parts = _state(root, keep=keep, seed=1)
    ckpt.step.assign(1)
    ckpt.epoch.assign(1)
    ckpt.save_latest()
    first = _values(parts)
    _, parts2 = _state(root / "scratch", seed=2)
    for name in ("imgnet", "txtnet", "opt"):
        for v, w in zip(parts[name].variables, parts2[name].variables):
            v.assign(w)
    ckpt.step.assign(2)
    ckpt.epoch.assign(2)
    ckpt.save_latest()
    return first, _values(parts)


def _data_file(prefix):
    (path,) = glob.glob(prefix + ".data-*")
    return path


def test_best_holds_the_weights_and_scalars_only(tmp_path):
    ckpt, parts = _state(tmp_path)
    ckpt.step.assign(7)
    ckpt.best_score.assign(0.5)
    ckpt.best_epoch.assign(2)
    best, latest = ckpt.save_best(), ckpt.save_latest()
    keys = set(tf.train.load_checkpoint(best).get_variable_to_shape_map())
    roots = {k.split("/")[0] for k in keys}
    assert roots == {"model_imgnet", "model_txtnet", "step", "epoch", "best_score",
                     "best_epoch", "split_seed", "save_counter", "_CHECKPOINTABLE_OBJECT_GRAPH"}
    assert any("moving_mean" in k for k in keys) and any("moving_variance" in k for k in keys)
    full = {k.split("/")[0] for k in tf.train.load_checkpoint(latest).get_variable_to_shape_map()}
    assert {"opt_imgnet", "buf_B"} <= full
    assert os.path.getsize(_data_file(best)) < os.path.getsize(_data_file(latest)) / 2

    # A fresh process: restore_best brings back every network variable and the scalars only.
    fresh, fresh_parts = _state(tmp_path / "other", seed=9)
    untouched = _values(fresh_parts)
    fresh.best = ckpt.best
    assert fresh.restore_best() == best
    want, got = _values(parts), _values(fresh_parts)
    net_keys = [k for k in want if k.startswith(("imgnet/", "txtnet/"))]
    _assert_equal(want, got, net_keys)
    _assert_equal(untouched, got, [k for k in want if k not in net_keys])  # opt, buffers
    assert (int(fresh.step), int(fresh.best_epoch), float(fresh.best_score)) == (7, 2, 0.5)
    assert int(fresh.split_seed) == 3


def test_a_network_variable_missing_from_the_file_is_refused(tmp_path):
    ckpt, _ = _state(tmp_path)
    path = ckpt.save_best()
    richer = Net(extra=True)  # e.g. normalisation statistics added after the run was saved
    richer(tf.zeros([2, 6]))
    with pytest.raises(ValueError, match="lacks variables.*mu"):
        restore_weights(path, {"imgnet": richer})


def test_a_best_written_by_an_older_version_with_the_full_state_still_restores(tmp_path):
    ckpt, parts = _state(tmp_path)
    legacy = tf.train.CheckpointManager(ckpt.checkpoint, str(tmp_path / "best"), max_to_keep=1,
                                        checkpoint_name="best")
    legacy.save(checkpoint_number=4)
    fresh, fresh_parts = _state(tmp_path / "other", seed=5)
    fresh.best = tf.train.CheckpointManager(fresh.weights, str(tmp_path / "best"), 1,
                                            checkpoint_name="best")
    fresh.restore_best()
    _assert_equal({k: v for k, v in _values(parts).items() if k.startswith("imgnet")},
                  _values(fresh_parts))


def _truncate(prefix):
    path = _data_file(prefix)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    return os.path.basename(path)


def _truncate_index(prefix):
    with open(prefix + ".index", "r+b") as f:
        f.truncate(10)
    return os.path.basename(prefix) + ".index"


def _flip_a_byte(prefix):
    path = _data_file(prefix)
    with open(path, "r+b") as f:
        f.seek(64)
        b = f.read(1)
        f.seek(64)
        f.write(bytes([b[0] ^ 0xFF]))
    return os.path.basename(path)


def _remove_data(prefix):
    path = _data_file(prefix)
    os.remove(path)
    return os.path.basename(path)


@pytest.mark.parametrize("damage", [_truncate, _truncate_index, _flip_a_byte, _remove_data])
def test_a_damaged_latest_falls_back_to_the_older_one_naming_the_file(tmp_path, capsys, damage):
    first, _ = _saved_pair(tmp_path)
    bad = damage(str(tmp_path / "ckpt" / "ckpt-2"))
    fresh, parts = _state(tmp_path, seed=7)
    assert fresh.restore_latest() == str(tmp_path / "ckpt" / "ckpt-1")
    assert int(fresh.epoch) == 1
    _assert_equal(first, _values(parts))
    err = capsys.readouterr().err
    assert f"{bad}" in err and "unreadable" in err and "older checkpoint" in err


def test_training_on_after_a_fallback_replaces_the_damaged_checkpoint(tmp_path, capsys):
    _saved_pair(tmp_path)
    _truncate(str(tmp_path / "ckpt" / "ckpt-2"))
    fresh, _ = _state(tmp_path, seed=7)
    fresh.restore_latest()
    fresh.step.assign(2)  # the epoch trained again ends at the same step
    fresh.save_latest()
    assert "unreadable" in capsys.readouterr().err
    again, _ = _state(tmp_path, seed=8)
    assert again.restore_latest() == str(tmp_path / "ckpt" / "ckpt-2")
    assert "unreadable" not in capsys.readouterr().err


def test_no_readable_checkpoint_is_a_clear_error_naming_every_file(tmp_path):
    _saved_pair(tmp_path)
    bad2 = _truncate(str(tmp_path / "ckpt" / "ckpt-2"))
    bad1 = _truncate_index(str(tmp_path / "ckpt" / "ckpt-1"))
    fresh, _ = _state(tmp_path, seed=7)
    with pytest.raises(CheckpointUnreadableError, match="no readable checkpoint") as err:
        fresh.restore_latest()
    assert bad2 in str(err.value) and bad1 in str(err.value)
    assert "Delete that directory" in str(err.value)


def test_keep_one_has_nothing_to_fall_back_to_and_says_so(tmp_path):
    ckpt, _ = _state(tmp_path, keep=1)
    for step in (1, 2, 3):
        ckpt.step.assign(step)
        ckpt.save_latest()
    assert sorted(os.listdir(tmp_path / "ckpt")) == [
        "checkpoint", "ckpt-3.data-00000-of-00001", "ckpt-3.index"]
    bad = _truncate(str(tmp_path / "ckpt" / "ckpt-3"))
    fresh, _ = _state(tmp_path, keep=1, seed=7)
    with pytest.raises(CheckpointUnreadableError, match=bad + ".*keep_checkpoints >= 2"):
        fresh.restore_latest()


def test_an_unreadable_index_file_falls_back_to_the_checkpoints_on_disk(tmp_path, capsys):
    _, second = _saved_pair(tmp_path)
    (tmp_path / "ckpt" / "checkpoint").write_text("model_checkpoint_path: {{{ half-writ")
    fresh, parts = _state(tmp_path, seed=7)
    assert fresh.restore_latest() == str(tmp_path / "ckpt" / "ckpt-2")
    _assert_equal(second, _values(parts))
    assert "checkpoint is unreadable" in capsys.readouterr().err


def test_a_damaged_best_is_a_clear_error_naming_the_file(tmp_path):
    ckpt, _ = _state(tmp_path)
    path = ckpt.save_best()
    bad = _truncate(path)
    with pytest.raises(CheckpointUnreadableError, match=f"{path} is unreadable.*{bad}"):
        ckpt.restore_best()


def test_another_networks_checkpoint_is_refused_not_skipped_as_damaged(tmp_path):
    _saved_pair(tmp_path)
    other, _ = _state(tmp_path, seed=3, extra=True)
    with pytest.raises(AssertionError):
        other.restore_latest()


def test_interrupted_save_leftovers_are_removed_when_training_starts(tmp_path, capsys):
    _saved_pair(tmp_path)
    # What kill -9 leaves inside a save: TF's unmerged shards, an index temp file, and a
    # merged prefix the index never named (its .index cut short).
    for d, prefix in (("ckpt", "ckpt-3"), ("best", "best-3")):
        temp = tmp_path / d / f"{prefix}_temp"
        temp.mkdir(parents=True)
        (temp / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"x" * 4096)
    (tmp_path / "ckpt" / "checkpoint.tmp0123abcd").write_text("half")
    ckpt, _ = _state(tmp_path, seed=7)
    (tmp_path / "ckpt" / "ckpt-9.index").write_bytes(b"\0" * 7)
    (tmp_path / "ckpt" / "ckpt-9.data-00000-of-00001").write_bytes(b"\0" * 99)
    assert ckpt.restore_latest() == str(tmp_path / "ckpt" / "ckpt-2")
    err = capsys.readouterr().err
    for left in ("ckpt-3_temp", "best-3_temp", "checkpoint.tmp0123abcd"):
        assert left in err
    assert not glob.glob(str(tmp_path / "*" / "*_temp"))
    assert not glob.glob(str(tmp_path / "ckpt" / "checkpoint.tmp*"))
    ckpt.step.assign(3)
    ckpt.save_latest()  # keep=2: ckpt-2 and ckpt-3; the unnamed ckpt-9 goes too
    names = sorted(os.listdir(tmp_path / "ckpt"))
    assert names == ["checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index",
                     "ckpt-3.data-00000-of-00001", "ckpt-3.index"]


def test_checkpoint_writes_are_timed(tmp_path):
    ckpt, _ = _state(tmp_path)
    assert ckpt.take_write_seconds() == 0.0
    ckpt.save_best()
    ckpt.save_latest()
    seconds = ckpt.take_write_seconds()
    assert 0.0 < seconds < 60.0
    assert ckpt.take_write_seconds() == 0.0


def test_keep_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="keep_checkpoints must be >= 1"):
        _state(tmp_path, keep=0)


def test_dropout_random_state_is_not_a_weight_best_needs(tmp_path):
    # Dropout keeps a SeedGenerator state variable that tf.train does not reach; a weights-only
    # best/ of a --dropout run must still restore (it did not: "not tracked by the checkpoint").
    class DropNet(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(8)
            self.drop = keras.layers.Dropout(0.5)

        def call(self, x, training=False):
            return self.drop(self.hidden(x), training=training)

    net = DropNet()
    net(tf.zeros([2, 6]))
    assert any("seed_generator" in v.path for v in net.variables)
    ckpt = RunCheckpoint(str(tmp_path), {"imgnet": net}, {}, {}, split_seed=0, keep=1)
    path = ckpt.save_best()
    fresh = DropNet()
    fresh(tf.zeros([2, 6]))
    restore_weights(path, {"imgnet": fresh})
    np.testing.assert_array_equal(fresh.hidden.kernel.numpy(), net.hidden.kernel.numpy())
