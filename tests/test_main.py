"""main.py end to end in subprocesses: train/eval modes, real MIRFlickr labels.

SIGKILL and resume: tests/test_checkpoint_kill.py (a kill between two saves is its
`ckpt_shards_unmerged` case: epoch 1's checkpoint named, epoch 2 trained, then killed)."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
# Small networks and splits of the embedded default data: seconds per epoch.
SMALL = ["--bits=8", "--feature_dim=16", "--labnet_hidden=32", "--imgnet_hidden=32",
         "--txtnet_hidden=32", "--txt_scales=5", "--disc_hidden=16", "--attention_dim=8",
         "--batch_size=32", "--num_query=64", "--num_train=256", "--num_val=64",
         "--noprogress", "--verbosity=-1",
         "--min_pass_steps=0", "--lab_passes=1",
         "--norefit"]  # the loop's mechanics, not its quality


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    env.pop("TF_CONFIG", None)
    return env


def _main(*args, check=True, timeout=300):
    proc = subprocess.run([sys.executable, str(REPO / "main.py"), *args], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"main.py {args} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def _metrics(workdir):
    with open(os.path.join(workdir, "metrics.json")) as f:
        return json.load(f)


@pytest.mark.slow
def test_eval_mode_without_a_trained_run_names_the_problem(tmp_path):
    proc = _main("--mode=eval", f"--workdir={tmp_path}", *SMALL, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"error: --workdir={tmp_path}: no selected checkpoint" in proc.stderr


@pytest.mark.slow
def test_train_then_eval_mode(tmp_path):
    proc = _main(f"--workdir={tmp_path}", "--epochs=2", *SMALL)
    assert "test MAP@all (8 bits" in proc.stdout and "chance" in proc.stdout
    m = _metrics(tmp_path)
    assert m["test"]["split"] == "query" and m["test"]["n_queries"] == 64
    first = (m["test"]["map_i2t"], m["test"]["map_t2i"])
    proc = _main("--mode=eval", f"--workdir={tmp_path}", "--epochs=2", *SMALL)
    m2 = _metrics(tmp_path)
    assert (m2["test"]["map_i2t"], m2["test"]["map_t2i"]) == first


@pytest.mark.slow
@pytest.mark.realdata
def test_mirflickr_with_real_labels_and_tags_and_a_feature_file(tmp_path, mirflickr_dir):
    features = np.random.default_rng(0).random((20015, 64), dtype=np.float32)
    np.save(tmp_path / "feat.npy", features)
    proc = _main("--dataset=mirflickr", "--bits=32", f"--data_dir={mirflickr_dir}",
                 f"--image_file={tmp_path / 'feat.npy'}", f"--workdir={tmp_path / 'run'}",
                 "--epochs=1", "--feature_dim=16", "--labnet_hidden=32", "--imgnet_hidden=32",
                 "--txtnet_hidden=32", "--disc_hidden=16", "--attention_dim=8",
                 "--batch_size=128", "--num_train=256", "--num_val=64", "--noprogress",
                 # Two steps a network: this test is about reading and evaluating the
                 # standard split, not training (80 cycled steps a pass took half its time).
                 "--min_pass_steps=0", "--lab_passes=1",
                 "--verbosity=-1", "--norefit", timeout=600)
    assert "test MAP@all (32 bits, 2000 queries" in proc.stdout
    m = _metrics(tmp_path / "run")
    assert m["dataset"] == "mirflickr" and m["split_sizes"]["database"] == 18015
