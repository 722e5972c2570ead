"""The trainer's checkpoints on tiny data: a weights-only best/ that evaluation and export
restore, checkpoint write times in the history, a damaged latest checkpoint on resume."""

import glob
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from udsph_tf.modes.export import restore_encoders
from udsph_tf.modes.evaluate import evaluate
from udsph_tf.modes.train import make_trainer, train_and_evaluate
from udsph_tf.training.checkpointing import CheckpointUnreadableError
from udsph_tf.training.testing import (checkpoint_values, shared_strategy, tiny_config,
                                       tiny_data, tiny_split)


def _run(workdir, **changes):
    return train_and_evaluate(tiny_config(workdir, **changes), strategy=shared_strategy(1),
                              data=tiny_data(), split=tiny_split())


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    return workdir, _run(workdir, epochs=2, keep_checkpoints=1)


def test_best_holds_every_network_and_no_optimizer_or_buffer(run):
    workdir, _ = run
    best = checkpoint_values(tf.train.latest_checkpoint(str(workdir / "best")))
    roots = {k.split("/")[0] for k in best}
    assert not {r for r in roots if r.startswith(("opt_", "buf_"))}
    assert {"model_imgnet", "model_txtnet", "model_labnet", "step", "epoch", "best_score",
            "best_epoch", "split_seed"} <= roots
    # Every variable of every built network is in best/, the input normalisation statistics
    # included. (In ckpt/ some of them are stored under the optimizer that also tracks them.)
    t = make_trainer(tiny_config(workdir, epochs=2), strategy=shared_strategy(1), data=tiny_data(),
                split=tiny_split())
    variables = {id(v): v for m in t.ckpt.models.values() for v in m.variables}
    model_keys = [k for k in best if k.startswith("model_")]
    assert len(model_keys) == len(variables)
    best_file, = glob.glob(str(workdir / "best" / "*.data-*"))
    latest_file, = glob.glob(str(workdir / "ckpt" / "*.data-*"))  # keep_checkpoints=1
    assert os.path.getsize(best_file) < os.path.getsize(latest_file) / 2


def test_each_epoch_records_its_checkpoint_write_time(run):
    workdir, metrics = run
    history = json.loads((workdir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(0 < h["checkpoint_seconds"] < 60 for h in history)
    assert [h["checkpoint_seconds"] for h in metrics["history"]] == \
        [h["checkpoint_seconds"] for h in history]


def test_eval_and_export_restore_the_weights_only_best(run):
    workdir, metrics = run
    config = tiny_config(workdir, epochs=2)
    again = evaluate(config, strategy=shared_strategy(1), data=tiny_data(), split=tiny_split())
    for key in ("map_i2t", "map_t2i", "selected_epoch"):
        assert again["test"][key] == metrics["test"][key]
    t = make_trainer(config, strategy=shared_strategy(1), data=tiny_data(), split=tiny_split())
    t.ckpt.restore_best()
    rows = tiny_split().query_idx
    hv, ht = t.task.encode(rows)
    data = tiny_data()
    imgnet, txtnet, path = restore_encoders(config, data.images.shape[1:], data.tag_dim,
                                            data.num_labels)
    assert path == tf.train.latest_checkpoint(str(workdir / "best"))
    np.testing.assert_allclose(imgnet(data.images[rows], training=False)["hash"].numpy(), hv,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(txtnet(data.tags[rows], training=False)["hash"].numpy(), ht,
                               rtol=1e-5, atol=1e-6)


def test_export_names_a_damaged_best(run, tmp_path):
    workdir, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    data_file, = glob.glob(str(copy / "best" / "*.data-*"))
    with open(data_file, "r+b") as f:
        f.truncate(100)
    data = tiny_data()
    with pytest.raises(CheckpointUnreadableError, match=f"{data_file} \\(100 bytes\\)"):
        restore_encoders(tiny_config(copy, epochs=2), data.images.shape[1:], data.tag_dim,
                         data.num_labels)


@pytest.mark.slow
def test_a_damaged_latest_resumes_from_the_older_one_and_ends_the_same(tmp_path, capsys):
    first = _run(tmp_path, epochs=2, keep_checkpoints=2, deterministic=True)
    latest = tf.train.latest_checkpoint(str(tmp_path / "ckpt"))
    want = checkpoint_values(latest)
    data_file, = glob.glob(latest + ".data-*")
    with open(data_file, "r+b") as f:
        f.truncate(1000)
    capsys.readouterr()
    again = _run(tmp_path, epochs=2, keep_checkpoints=2, deterministic=True)
    err = capsys.readouterr().err
    assert f"{data_file} (1,000 bytes)" in err and "resuming from the older checkpoint" in err
    got = checkpoint_values(tf.train.latest_checkpoint(str(tmp_path / "ckpt")))
    assert want.keys() == got.keys()
    for k in want:
        np.testing.assert_array_equal(want[k], got[k], err_msg=k)
    for key in ("map_i2t", "map_t2i", "selected_epoch"):
        assert again["test"][key] == first["test"][key]
