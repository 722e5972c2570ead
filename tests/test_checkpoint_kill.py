"""SIGKILL inside a checkpoint save (main.py in subprocesses): the run resumes and ends exactly
as an uninterrupted one; what the kill left behind is cleaned; a log gets plain progress lines.

The child runs main.py behind a test-only wrapper that records every step of TensorFlow's save
protocol (merge of the written shards, update of the `checkpoint` index, deletion of the
previous checkpoint) and, at the chosen step, stops inside the save until it is killed.
"""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
# Small networks and splits of the embedded default data (as tests/test_main.py); the default
# --keep_checkpoints (1) and the progress display (stderr is a pipe here) stay on.
SMALL = ["--bits=8", "--feature_dim=16", "--labnet_hidden=32", "--imgnet_hidden=32",
         "--txtnet_hidden=32", "--txt_scales=5", "--disc_hidden=16", "--attention_dim=8",
         "--batch_size=32", "--num_query=64", "--num_train=256", "--num_val=64",
         "--verbosity=-1", "--epochs=2", "--deterministic",
         "--min_pass_steps=0", "--lab_passes=1",
         "--norefit"]  # the loop's mechanics, not its quality

WRAPPER = r'''
import os, runpy, sys, time
from tensorflow.python.checkpoint import checkpoint_management as cm
from tensorflow.python.ops import gen_io_ops

workdir = os.environ["UDSPH_TEST_WORKDIR"]
events = open(os.environ["UDSPH_TEST_SAVE_EVENTS"], "a", buffering=1)
pause_at = os.environ.get("UDSPH_TEST_PAUSE_AT", "")
counts = {}

def _path(x):
    x = x.numpy() if hasattr(x, "numpy") else x
    return x.decode() if isinstance(x, bytes) else str(x)

def _step(kind, path):
    area = os.path.relpath(os.path.abspath(path), workdir).split(os.sep)[0]  # ckpt or best
    name = f"{kind}:{area}"
    counts[name] = counts.get(name, 0) + 1
    event = f"{name}#{counts[name]}"
    events.write(event + "\n")
    if event == pause_at:
        events.write("PAUSED\n")
        time.sleep(600)  # inside the save, until SIGKILL

def _wrap(module, attr, kind, path_of):
    original = getattr(module, attr)
    def wrapper(*args, **kwargs):
        _step(kind, _path(path_of(args, kwargs)))
        return original(*args, **kwargs)
    setattr(module, attr, wrapper)

# Shards written to <prefix>_temp/, about to be merged into <prefix>.index/.data-*.
_wrap(gen_io_ops, "merge_v2_checkpoints", "merge",
      lambda a, k: a[1] if len(a) > 1 else k["destination_prefix"])
# Merged; the `checkpoint` index is about to name it (before and after the sweep).
_wrap(cm, "update_checkpoint_state_internal", "index", lambda a, k: a[0] if a else k["save_dir"])
# Named; a previous checkpoint beyond max_to_keep is about to be deleted.
_wrap(cm, "_delete_file_if_exists", "delete", lambda a, k: a[0] if a else k["filespec"])

sys.path.insert(0, os.getcwd())
sys.argv = ["main.py"] + sys.argv[1:]
runpy.run_path("main.py", run_name="__main__")
'''


def _env(workdir, events, pause_at=""):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO),
               UDSPH_TEST_WORKDIR=str(workdir), UDSPH_TEST_SAVE_EVENTS=str(events),
               UDSPH_TEST_PAUSE_AT=pause_at)
    env.pop("TF_CONFIG", None)
    return env


def _main(workdir, events, timeout=300):
    proc = subprocess.run([sys.executable, "-c", WRAPPER, f"--workdir={workdir}", *SMALL],
                          cwd=REPO, env=_env(workdir, events), capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"main.py exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def _kill_inside(workdir, events, pause_at):
    """Run until the save step `pause_at`, SIGKILL the run there."""
    proc = subprocess.Popen([sys.executable, "-c", WRAPPER, f"--workdir={workdir}", *SMALL],
                            cwd=REPO, env=_env(workdir, events, pause_at),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    try:
        while not (events.exists() and "PAUSED" in events.read_text()):
            assert proc.poll() is None, f"the run ended before {pause_at}"
            assert time.time() < deadline, f"no {pause_at} within 240 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def _arrays(directory):
    import tensorflow as tf
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(directory)))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if "save_counter" not in k}


def _metrics(workdir):
    with open(workdir / "metrics.json") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run: its final state, test figures, save steps and console."""
    root = tmp_path_factory.mktemp("ref")
    proc = _main(root / "run", root / "events.txt")
    steps = (root / "events.txt").read_text().split()
    return {"dir": root / "run", "steps": steps, "stderr": proc.stderr}


def _first_after(steps, marker, kind):
    """The first `kind` step (e.g. "index:ckpt") after the step `marker` in the run's order."""
    after = steps[steps.index(marker) + 1:]
    return next(s for s in after if s.startswith(kind + "#"))


# Where inside which save the kill lands (each scenario is one kill during a save):
SCENARIOS = {
    # the first save of the run (best/ after epoch 1): shards written, not merged
    "best_shards_unmerged": lambda steps: "merge:best#1",
    # the second rolling save: shards written, not merged (epoch 1's checkpoint named, epoch 2
    # trained: also the plain kill between two saves, which resumes from epoch 1)
    "ckpt_shards_unmerged": lambda steps: "merge:ckpt#2",
    # the second rolling save merged, the index not yet naming it
    "ckpt_merged_unnamed": lambda steps: _first_after(steps, "merge:ckpt#2", "index:ckpt"),
    # the second rolling save named, the first one (keep 1) being deleted
    "ckpt_previous_deleted": lambda steps: _first_after(steps, "merge:ckpt#2", "delete:ckpt"),
}


@pytest.mark.slow
def test_the_reference_run_logs_plain_progress_lines_and_keeps_one_checkpoint(reference):
    err = reference["stderr"]
    assert "\r" not in err and "\033[K" not in err
    bars = [line for line in err.splitlines() if "] " in line and line.startswith("epoch ")]
    assert 2 <= len(bars) <= 8, bars  # one per epoch (+ one per 10 s of a slow epoch)
    assert any(re.search(r" (\d+)/\1 100% ", line) for line in bars)
    ckpt = sorted(p.name for p in (reference["dir"] / "ckpt").iterdir())
    assert len([n for n in ckpt if n.endswith(".index")]) == 1, ckpt
    history = json.loads((reference["dir"] / "history.json").read_text())
    assert all(h["checkpoint_seconds"] > 0 for h in history)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_sigkill_inside_a_save_then_resume_matches_an_uninterrupted_run(
        reference, tmp_path, scenario):
    import tensorflow as tf
    pause_at = SCENARIOS[scenario](reference["steps"])
    assert pause_at in reference["steps"]
    cut, events = tmp_path / "cut", tmp_path / "events.txt"
    _kill_inside(cut, events, pause_at)
    assert not (cut / "metrics.json").exists()

    # The kill landed where the scenario says.
    temps = sorted(p.name for p in cut.glob("*/*_temp"))
    ckpt_dir = str(cut / "ckpt")
    if scenario.endswith("_unmerged"):
        assert temps, "no unmerged shards left by the kill"
    if scenario == "best_shards_unmerged":
        assert tf.train.latest_checkpoint(ckpt_dir) is None
    if scenario in ("ckpt_shards_unmerged", "ckpt_merged_unnamed"):
        named = tf.train.latest_checkpoint(ckpt_dir)
        merged = sorted(p.name for p in (cut / "ckpt").glob("ckpt-*.index"))
        assert named and os.path.basename(named) + ".index" in merged
        assert len(merged) == (2 if scenario == "ckpt_merged_unnamed" else 1), merged
    if scenario == "ckpt_previous_deleted":
        assert len(tf.train.get_checkpoint_state(ckpt_dir).all_model_checkpoint_paths) == 2

    resumed = _main(cut, tmp_path / "events2.txt")
    if scenario == "best_shards_unmerged":
        assert "resuming from" not in resumed.stderr  # nothing was saved yet: a fresh start
    else:
        assert "resuming from" in resumed.stderr
    for name in temps:
        assert f"removed {cut}" in resumed.stderr and name in resumed.stderr
    assert not list(cut.glob("*/*_temp")) and not list(cut.glob("*/checkpoint.tmp*"))

    ref = reference["dir"]
    for sub in ("ckpt", "best"):
        a, b = _arrays(ref / sub), _arrays(cut / sub)
        assert a.keys() == b.keys(), sub
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{sub}: {k}")
    ma, mb = _metrics(ref), _metrics(cut)
    for key in ("map_i2t", "map_t2i", "map_i2t_expected", "map_t2i_expected", "selected_epoch"):
        assert ma["test"][key] == mb["test"][key], key
    if scenario != "ckpt_previous_deleted":
        # Known gap (docs/checkpoints.md): history.json is written after the rolling save, so
        # a kill once the new checkpoint is named resumes without that epoch's entry.
        assert [h["epoch"] for h in mb["history"]] == [h["epoch"] for h in ma["history"]]
