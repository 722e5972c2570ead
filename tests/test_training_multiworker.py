"""MultiWorkerMirroredStrategy from TF_CONFIG: two local worker processes train together."""

import glob
import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
ARGS = ["--bits=8", "--feature_dim=16", "--labnet_hidden=32", "--imgnet_hidden=32",
        "--txtnet_hidden=32", "--txt_scales=5", "--disc_hidden=16", "--attention_dim=8",
        "--batch_size=32", "--num_query=64", "--num_train=256", "--num_val=64", "--epochs=1",
        "--noprogress", "--verbosity=-1",
        # One pass of each network = the full batches of each worker's shard (asserted).
        "--min_pass_steps=0", "--lab_passes=1", "--norefit"]


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_train_and_only_the_chief_writes(tmp_path):
    workdir = tmp_path / "run"
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO),
                   TMPDIR=str(tmp_path),
                   TF_CONFIG=json.dumps({"cluster": cluster,
                                         "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen(
            [sys.executable, str(REPO / "main.py"), f"--workdir={workdir}", *ARGS], cwd=REPO,
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=240)
            outputs.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for code, out, err in outputs:
        assert code == 0, err[-3000:]
        assert "test MAP@all (8 bits, 64 queries" in out
    assert (workdir / "metrics.json").exists()
    assert len(glob.glob(str(workdir / "train" / "events.out.tfevents.*"))) == 1
    assert len(glob.glob(str(workdir / "eval" / "events.out.tfevents.*"))) == 1
    assert (workdir / "ckpt" / "checkpoint").exists() and (workdir / "best" / "checkpoint").exists()
    # The non-chief saved to a temporary folder (saving is collective) and removed it.
    assert not glob.glob(str(tmp_path / "udsph_worker_*"))
    with open(workdir / "metrics.json") as f:
        m = json.load(f)
    # Global steps of one epoch: 4 networks x the full global batches of the training items.
    assert m["history"][0]["step"] == 4 * (m["split_sizes"]["train"] // 32)
