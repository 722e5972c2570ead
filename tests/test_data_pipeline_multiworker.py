"""make_dataset_fn under a real two-worker MultiWorkerMirroredStrategy on 127.0.0.1."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

WORKER = r"""
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
sys.path.insert(0, sys.argv[1])
import numpy as np
import tensorflow as tf
from udsph_tf.data.pipeline import make_dataset_fn

strategy = tf.distribute.MultiWorkerMirroredStrategy()
arrays = {"x": np.arange(37 * 3, dtype=np.float32).reshape(37, 3)}
dist = strategy.distribute_datasets_from_function(make_dataset_fn(arrays, 8, seed=0))

@tf.function
def step(batch):
    # Each replica's rows must be the rows its indices name.
    return strategy.run(lambda b: (b["index"], b["x"][:, 0]), args=(batch,))

seen, sizes = [], []
iterator = iter(dist)
for _ in range(4):  # both workers have >= 4 full batches of 4 in their 18/19-row shard
    index, first_col = step(next(iterator))
    for i, c in zip(strategy.experimental_local_results(index),
                    strategy.experimental_local_results(first_col)):
        assert np.array_equal(c.numpy(), i.numpy() * 3.0), (i, c)
        seen += i.numpy().tolist()
        sizes.append(int(tf.size(i)))
rest = [int(v) for b in iterator for t in strategy.experimental_local_results(b["index"])
        for v in t.numpy()]
print("RESULT" + json.dumps({"replicas": strategy.num_replicas_in_sync, "seen": seen + rest,
                             "sizes": sizes}))
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_workers_read_disjoint_shards_that_cover_every_row(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    workers = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    procs = []
    for task in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": task}}))
        procs.append(subprocess.Popen([sys.executable, str(script), str(REPO_ROOT)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=110)
            assert p.returncode == 0, err[-3000:]
            line = [ln for ln in out.splitlines() if ln.startswith("RESULT")][-1]
            results.append(json.loads(line[len("RESULT"):]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(r["replicas"] == 2 for r in results)
    assert all(s == 4 for r in results for s in r["sizes"])  # global batch 8 over 2 replicas
    a, b = (set(r["seen"]) for r in results)
    assert not a & b  # each worker reads its own shard
    assert sorted(results[0]["seen"] + results[1]["seen"]) == list(range(37))
