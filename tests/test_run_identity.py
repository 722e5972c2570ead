"""Runs that cannot be mixed up: run.json, resume/eval/export/search against the record."""

import dataclasses
import io
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from absl import flags as absl_flags

import flags as udsph_flags
from udsph_tf import errors, run_identity
from udsph_tf.config import Config, config_fields, replace
from udsph_tf.data import split_from_config
from udsph_tf.export import read_metadata
from udsph_tf.modes.export import export_from_checkpoint
from udsph_tf.modes.evaluate import evaluate
from udsph_tf.modes.search import search
from udsph_tf.modes.train import make_trainer, train_and_evaluate
from udsph_tf.training.testing import shared_strategy, tiny_config, tiny_data, tiny_split

REPO = pathlib.Path(__file__).resolve().parents[1]
# The split comes from the config (seed 5, not the default 0), so eval must take it from the
# record to see the same queries.
RUN = dict(epochs=1, split_seed=5, num_query=16, num_train=64, num_val=16)


# --- fingerprints and flag resolution (no training) -----------------------------------------

def test_data_fingerprint_is_stable_and_sees_content_and_split():
    data, split = tiny_data(), tiny_split()
    fp = run_identity.data_fingerprint(data, split)
    assert fp == run_identity.data_fingerprint(tiny_data(), tiny_split())
    assert fp["arrays"]["images"]["shape"] == [96, 16] and fp["split"]["seed"] == 0
    assert run_identity.data_differences(fp, fp) == []
    images = data.images.copy()
    images[7, 3] += 1e-3
    other = run_identity.data_fingerprint(dataclasses.replace(data, images=images), split)
    (diff,) = run_identity.data_differences(fp, other)
    assert diff.startswith("images 96x16 float32 sha1 ") and ", now 96x16 float32 sha1 " in diff
    moved = run_identity.data_differences(fp, run_identity.data_fingerprint(data,
                                                                            tiny_split(seed=5)))
    assert len(moved) == 1 and moved[0].startswith("split (seed 0, seeded")
    assert "now (seed 5, seeded" in moved[0]


def test_big_arrays_hash_a_fixed_strided_sample(tmp_path, monkeypatch):
    monkeypatch.setattr(run_identity, "SAMPLE_ABOVE_BYTES", 4096)
    monkeypatch.setattr(run_identity, "SAMPLE_BYTES", 1024)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "big.npy", rng.random((1000, 8), dtype=np.float32))  # 32 kB, 32 B rows
    big = np.load(tmp_path / "big.npy", mmap_mode="r")
    digest = run_identity.array_digest(big)
    assert digest["rows_hashed"] == 32 and digest == run_identity.array_digest(np.array(big))
    changed = np.array(big)
    changed[0, 0] += 1  # row 0 is always in the sample
    assert run_identity.array_digest(changed)["sha1"] != digest["sha1"]
    # The shape is hashed too: the same bytes seen as other rows are other data.
    assert run_identity.array_digest(np.array(big).reshape(500, 16))["sha1"] != digest["sha1"]
    small = run_identity.array_digest(np.ones((4, 3), np.float32))
    assert small["rows_hashed"] == 4


def _record_run(workdir, config, data=None, split=None):
    os.makedirs(workdir, exist_ok=True)
    fp = run_identity.data_fingerprint(data or tiny_data(), split or tiny_split(), config)
    run_identity.write_record(str(workdir), run_identity.new_record(config, fp))


def test_resolve_takes_the_record_and_refuses_given_contradictions(tmp_path, capsys):
    w = str(tmp_path)
    _record_run(w, tiny_config(w, bits=64, split_seed=5, image_file="/data/a.npy"))
    # Nothing given: every recorded model/data field; budget fields stay the caller's.
    cfg = run_identity.resolve(Config(workdir=w, epochs=9, top_k=3), explicit={"epochs", "top_k"})
    assert (cfg.bits, cfg.split_seed, cfg.feature_dim, cfg.txt_scales) == (64, 5, 16, "5,3")
    assert (cfg.epochs, cfg.top_k, cfg.progress) == (9, 3, True)
    # Given and equal: fine. Given and different: one error listing all of them, even a
    # value equal to the default (--bits=32 must not be silently replaced by 64).
    run_identity.resolve(Config(workdir=w, bits=64), explicit={"bits"})
    with pytest.raises(errors.ConfigError) as err:
        run_identity.resolve(Config(workdir=w, bits=32, attention="none", split_seed=5),
                             explicit={"bits", "attention", "split_seed"})
    assert str(err.value) == (
        f"--workdir={w}: this run was trained with --bits=64 --attention=scan, the flags say "
        "--bits=32 --attention=none; drop these flags (the run's recorded values are used) or "
        "use another --workdir")
    with pytest.raises(errors.ConfigError, match="use another --workdir or the same flags$"):
        run_identity.resolve(Config(workdir=w, label_net=False), explicit={"label_net"},
                             resuming=True)
    # A resume without flags says which recorded values are in force (a default may differ).
    assert run_identity.resolve(Config(workdir=w), explicit=set(), resuming=True).bits == 64
    note = capsys.readouterr().err
    assert note.startswith(f"note: --workdir={w} resumes with its recorded ") and \
        " --bits=64 " in note and " --split_seed=5 " in note
    # Library callers (explicit=None): a non-default value counts as given.
    with pytest.raises(errors.ConfigError, match="--split_seed=5, the flags say --split_seed=3"):
        run_identity.resolve(Config(workdir=w, split_seed=3))
    # A data path may move: the data fingerprint decides when the data is loaded.
    cfg = run_identity.resolve(Config(workdir=w, image_file="/moved/a.npy"),
                               explicit={"image_file"})
    assert cfg.image_file == "/moved/a.npy" and cfg.bits == 64
    # search: --backbone names the photo extractor, not the run's input.
    cfg = run_identity.config_for_mode(Config(mode="search", workdir=w, backbone="vgg16"),
                                       {"mode", "workdir", "backbone"})
    assert cfg.backbone == "vgg16" and cfg.bits == 64


def test_runs_without_run_json_fall_back_to_metrics_json(tmp_path):
    w = str(tmp_path)
    recorded = dataclasses.asdict(Config(workdir="old", bits=16, image_file="/a.npy"))
    (tmp_path / "metrics.json").write_text(json.dumps({"config": recorded}))
    assert run_identity.resolve(Config(workdir=w)).bits == 16
    # No fingerprint to check moved data against: a path change is a contradiction.
    with pytest.raises(errors.ConfigError, match="--image_file=/a.npy, the flags say "
                                                 "--image_file=/b.npy"):
        run_identity.resolve(Config(workdir=w, image_file="/b.npy"), explicit={"image_file"})
    assert run_identity.resolve(Config(workdir=str(tmp_path / "none"))) == \
        Config(workdir=str(tmp_path / "none"))


def test_budget_fields_are_config_fields_and_documented():
    names = {f.name for f in config_fields()}
    doc = (REPO / "docs" / "reliability.md").read_text()
    for name in run_identity.BUDGET_FIELDS + run_identity.LOCATION_FIELDS:
        assert name in names, name
        assert f"`{name}`" in doc, name


def test_given_flags_are_the_ones_on_the_command_line():
    values = absl_flags.FlagValues()
    udsph_flags.define_flags(values)
    values(["main.py", "--bits=32", "--noprogress", "--mode=eval"])
    assert udsph_flags.given_flags(values) == {"bits", "progress", "mode"}


# --- a trained tiny run ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("identity") / "run")
    config = tiny_config(workdir, **RUN)
    metrics = train_and_evaluate(config, strategy=shared_strategy(1), data=tiny_data())
    return {"workdir": workdir, "config": config, "metrics": metrics}


def _files(workdir):
    """{relative path: bytes} of the run directory (nothing may change). TensorBoard event
    files are left out: make_trainer() opens its writers (an empty file each) before run()
    checks."""
    out = {}
    for root, _, names in os.walk(workdir):
        for name in names:
            if name.startswith("events.out.tfevents."):
                continue
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, workdir)] = f.read()
    return out


def test_run_json_records_config_data_and_split(trained):
    with open(os.path.join(trained["workdir"], "run.json")) as f:
        record = json.load(f)
    assert len(record["run_id"]) == 32 and record["config"]["bits"] == 8
    assert record["config"]["split_seed"] == 5
    split = split_from_config(trained["config"], tiny_data())
    assert record["data"] == json.loads(json.dumps(
        run_identity.data_fingerprint(tiny_data(), split, trained["config"])))
    assert record["data"]["split"]["sizes"] == {"query": 16, "database": 80, "train": 48,
                                                "val": 16}


def _refused_resume(trained, data=None, **changes):
    before = _files(trained["workdir"])
    with pytest.raises(errors.ConfigError) as err:
        train_and_evaluate(replace(trained["config"], **changes), strategy=shared_strategy(1),
                           data=data or tiny_data())
    assert _files(trained["workdir"]) == before  # run.json, inputs.json, checkpoints untouched
    return str(err.value)


def test_resume_refuses_another_model(trained):
    # Before run.json this resumed silently as an SSAH model with other loss weights.
    gamma = trained["config"].gamma
    message = _refused_resume(trained, attention="none", gamma=gamma + 1)
    w = trained["workdir"]
    assert message == (
        f"--workdir={w}: this run was trained with --attention=scan "
        f"{run_identity.flag_text('gamma', gamma)}, the flags say --attention=none "
        f"{run_identity.flag_text('gamma', gamma + 1)}; use another --workdir or the same flags")


def test_resume_refuses_other_features(trained):
    # Before run.json --image_file pointing at other features resumed on them.
    data = tiny_data()
    data = dataclasses.replace(data, images=data.images[::-1].copy())
    message = _refused_resume(trained, data=data, image_file="other.npy")
    assert message.startswith(f"--workdir={trained['workdir']}: this run was trained on other "
                              "data: images 96x16 float32 sha1 ")
    assert "(--image_file='' now --image_file=other.npy)" in message
    assert message.endswith("; use another --workdir or the same data")


def test_resume_refuses_other_bits_before_tensorflow_sees_the_checkpoint(trained):
    # Before run.json this was TensorFlow's shape-mismatch traceback from the restore.
    message = _refused_resume(trained, bits=16)
    assert "trained with --bits=8, the flags say --bits=16;" in message


def test_budget_changes_resume_the_same_run(trained):
    config = replace(trained["config"], epochs=5, eval_every=2, keep_checkpoints=3,
                     progress=True, num_replicas=1, export_dir="x", run_name="r", top_k=3,
                     deterministic=True)
    split = split_from_config(config, tiny_data())
    before = _files(trained["workdir"])
    record = run_identity.start_training(config, tiny_data(), split)
    with open(os.path.join(trained["workdir"], "run.json")) as f:
        assert record == json.load(f)
    assert _files(trained["workdir"]) == before


def test_eval_takes_the_recorded_model_and_split(trained):
    # Only the workdir: before run.json this evaluated a default-width model on the seed-0
    # queries (or failed on the shape mismatch).
    again = evaluate(Config(workdir=trained["workdir"]), strategy=shared_strategy(1),
                     data=tiny_data())
    assert again["split_seed"] == 5 and again["bits"] == 8
    for key in ("map_i2t", "map_t2i", "selected_epoch"):
        assert again["test"][key] == trained["metrics"]["test"][key]
    with pytest.raises(errors.ConfigError, match="trained with --split_seed=5, the flags say "
                                                 "--split_seed=3; drop these flags"):
        evaluate(Config(workdir=trained["workdir"], split_seed=3), strategy=shared_strategy(1),
                 data=tiny_data())
    other = tiny_data()
    other = dataclasses.replace(other, labels=other.labels[::-1].copy())
    with pytest.raises(errors.ConfigError, match="trained on other data: labels 96x5 uint8"):
        evaluate(Config(workdir=trained["workdir"]), strategy=shared_strategy(1), data=other)


def test_eval_of_a_missing_run_creates_nothing(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(errors.MissingFileError, match="no such run directory"):
        evaluate(tiny_config(missing), strategy=shared_strategy(1), data=tiny_data(),
                 split=tiny_split())
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(errors.MissingFileError, match=f"--workdir={empty}: no selected "):
        evaluate(tiny_config(empty), strategy=shared_strategy(1), data=tiny_data(),
                 split=tiny_split())
    assert os.listdir(empty) == []  # no TensorBoard train/ or eval/ folders


# --- exports stamped with their run ----------------------------------------------------------

def _untrained_run(workdir, record=True):
    """A run with run.json, a checkpoint and a selected checkpoint, but no training (cheap);
    record=False: a checkpoint of a run older than run.json."""
    config = tiny_config(workdir, **RUN)
    t = make_trainer(config, strategy=shared_strategy(1), data=tiny_data())
    if record:  # what Trainer.run does first
        run_identity.start_training(config, t.task.data, t.task.split)
    t.task.fill_buffers()
    t.ckpt.save_latest()
    t.ckpt.save_best()
    return t


def test_checkpoints_older_than_run_json(tmp_path):
    t = _untrained_run(tmp_path / "run", record=False)
    config, run_json = t.config, tmp_path / "run" / "run.json"
    # No record at all (an old run killed before metrics.json): nothing to check, and no
    # guess is written down.
    run_identity.start_training(replace(config, bits=16), t.task.data, t.task.split)
    assert not run_json.exists()
    # metrics.json's config: checked; when it matches, run.json records the run from now on.
    (tmp_path / "run" / "metrics.json").write_text(json.dumps(
        {"config": dataclasses.asdict(config)}))
    with pytest.raises(errors.ConfigError, match="trained with --bits=8, the flags say "
                                                 "--bits=16; use another --workdir or the "
                                                 "same flags$"):
        run_identity.start_training(replace(config, bits=16), t.task.data, t.task.split)
    assert not run_json.exists()
    record = run_identity.start_training(replace(config, epochs=4), t.task.data, t.task.split)
    assert json.loads(run_json.read_text())["run_id"] == record["run_id"]


def _search(workdir, export_dir, **flags):
    config = Config(mode="search", workdir=str(workdir), export_dir=str(export_dir),
                    query_image_row=3, top_k=3, **flags)
    return search(config, data=tiny_data(), out=io.StringIO())


def test_exports_are_stamped_and_search_refuses_other_or_stale_ones(tmp_path):
    a, b, exports = tmp_path / "a" / "run", tmp_path / "b" / "run", tmp_path / "export"
    ta = _untrained_run(a)
    assert (a / "run.json").exists()
    reexport = f"python main.py --mode=export --workdir={a} --export_dir={exports}"
    result = export_from_checkpoint(Config(mode="export", workdir=str(a),
                                           export_dir=str(exports)), data=tiny_data())
    with open(a / "run.json") as f:
        run_id = json.load(f)["run_id"]
    step = int(ta.ckpt.step)
    for path in result.paths.values():
        stamp = read_metadata(path)["run"]
        assert stamp["run_id"] == run_id and stamp["workdir"] == str(a)
        assert stamp["checkpoint_step"] == step and os.path.basename(
            stamp["checkpoint"]) == f"best-{step}"
    assert _search(a, exports).code_source.startswith("exported version 1")

    # A second run with the same basename: its search must not use run a's encoders, and
    # its export must not land beside them.
    _untrained_run(b)
    with pytest.raises(errors.ConfigError) as err:
        _search(b, exports)
    image_dir = os.path.join(exports, "run", "image_encoder", "1")
    assert str(err.value).startswith(f"{image_dir}: exported from another run ({a}, run id ")
    assert (f"export this run under its own name: python main.py --mode=export --workdir={b} "
            f"--export_dir={exports} --run_name=NAME") in str(err.value)
    with pytest.raises(errors.ConfigError, match="holds exports of another run"):
        export_from_checkpoint(Config(mode="export", workdir=str(b), export_dir=str(exports)),
                               data=tiny_data())
    export_from_checkpoint(Config(mode="export", workdir=str(b), export_dir=str(exports),
                                  run_name="run_b"), data=tiny_data())
    assert _search(b, exports, run_name="run_b").code_source.startswith("exported version 1")

    # Training on in run a selects a newer checkpoint: its export is stale until re-exported.
    ta.ckpt.step.assign_add(7)
    ta.ckpt.save_best()
    with pytest.raises(errors.ConfigError) as err:
        _search(a, exports)
    assert str(err.value) == (
        f"{image_dir}: exported from best-{step} (step {step}), but the run's model is now "
        f"best-{step + 7} (step {step + 7}); re-export: {reexport}")
    export_from_checkpoint(Config(mode="export", workdir=str(a), export_dir=str(exports)),
                           data=tiny_data())
    assert _search(a, exports).code_source.startswith("exported version 2")

    # Retrained from scratch in the same workdir: a new run id, the old export is refused.
    for name in os.listdir(a / "ckpt"):
        os.remove(a / "ckpt" / name)
    run_identity.start_training(ta.config, ta.task.data, ta.task.split)
    with pytest.raises(errors.ConfigError, match="exported from an earlier training of "
                                                 f"--workdir={a}"):
        _search(a, exports)


def test_search_refuses_an_unstamped_export(tmp_path):
    run, exports = tmp_path / "run", tmp_path / "export"
    _untrained_run(run)
    result = export_from_checkpoint(Config(mode="export", workdir=str(run),
                                           export_dir=str(exports)), data=tiny_data())
    for path in result.paths.values():  # what an export of an earlier version looks like
        meta_path = os.path.join(path, "assets.extra", "udsph_export.json")
        with open(meta_path) as f:
            meta = json.load(f)
        meta.pop("run")
        with open(meta_path, "w") as f:
            json.dump(meta, f)
    with pytest.raises(errors.ConfigError, match="carries no run stamp .* re-export: python "
                                                 f"main.py --mode=export --workdir={run}"):
        _search(run, exports)


# --- main.py: one line, exit status 2, no traceback ------------------------------------------

def _main(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    env.pop("TF_CONFIG", None)
    return subprocess.run([sys.executable, str(REPO / "main.py"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_main_py_resume_with_other_flags_is_one_line(trained):
    w = trained["workdir"]
    proc = _main(f"--workdir={w}", "--bits=16", "--attention=none", "--epochs=3",
                 "--noprogress")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: --workdir={w}: this run was trained with --bits=8 --attention=scan, the flags "
        "say --bits=16 --attention=none; use another --workdir or the same flags")


@pytest.mark.slow
def test_main_py_eval_with_a_contradicting_split_seed_is_one_line(trained):
    w = trained["workdir"]
    before = _files(w)
    proc = _main("--mode=eval", f"--workdir={w}", "--split_seed=0")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: --workdir={w}: this run was trained with --split_seed=5, the flags say "
        "--split_seed=0; drop these flags (the run's recorded values are used) or use another "
        "--workdir")
    assert _files(w) == before  # metrics.json is not overwritten


def test_a_finished_run_without_its_checkpoint_is_not_overwritten(tmp_path):
    # Someone deleted ckpt/ to save space: a re-run must not start afresh over metrics.json.
    from udsph_tf.config import Config, replace
    from udsph_tf.run_identity import config_for_mode
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "metrics.json").write_text("{}")
    config = replace(Config(), workdir=str(workdir))
    with pytest.raises(ValueError, match=r"holds a finished run \(metrics.json\) but no "
                                         r"checkpoint to resume"):
        config_for_mode(config, set())
    assert (workdir / "metrics.json").read_text() == "{}"
