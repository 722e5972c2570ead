"""User errors of export, search and splits: the UserError class, and a message that starts
with the flag or file at fault (main.py prints it as `error: <message>`, exit status 2)."""

import os
import pathlib
import subprocess
import sys

import pytest
import tensorflow as tf

from udsph_tf import errors
from udsph_tf.config import Config
from udsph_tf.data.types import Split
from udsph_tf import run_identity
from udsph_tf.export import layout, restore
from udsph_tf.modes.export import restore_encoders
from udsph_tf.training.checkpointing import selected_checkpoint
from udsph_tf.models import build_models
from udsph_tf.modes import search as cli
from udsph_tf.training.checkpointing import model_objects
from udsph_tf.training.testing import tiny_config, tiny_data, tiny_split

REPO = pathlib.Path(__file__).resolve().parents[1]
VOCAB = ["sky", "clouds", "cloud", "Sunset", "tree"]


def _raises(cls, start, fn, *args, **kwargs):
    """fn(...) raises exactly a `cls` (a UserError) whose message starts with `start`."""
    with pytest.raises(cls) as err:
        fn(*args, **kwargs)
    assert isinstance(err.value, errors.UserError)
    assert str(err.value).startswith(start), str(err.value)
    return str(err.value)


# --- export/restore.py ----------------------------------------------------------------------

def test_no_selected_checkpoint_is_a_missing_file(tmp_path):
    # No --workdir prefix here: run_identity.require_trained_run adds it (eval/export/search).
    message = _raises(errors.MissingFileError, "no selected checkpoint in ",
                      selected_checkpoint, str(tmp_path))
    assert str(tmp_path / "best") in message and "train first" in message


@pytest.mark.parametrize("record", ["metrics.json", "inputs.json"])
def test_unreadable_run_record_is_a_data_error(tmp_path, record):
    (tmp_path / record).write_text("{broken")
    read = (run_identity.recorded_metrics_config if record == "metrics.json"
            else restore.recorded_input_spec)
    _raises(errors.DataError, f"{tmp_path / record}: unreadable run record", read,
            str(tmp_path))


def test_raw_image_run_is_a_config_error():
    err = restore.raw_image_run_error("photos", "export")
    assert isinstance(err, errors.ConfigError)
    assert str(err).startswith("--image_dir: export needs a run trained on image features")
    assert "(photos)" in str(err) and "--mode=extract" in str(err)


def test_checkpoint_of_other_flags_is_a_config_error(tmp_path):
    data = tiny_data()
    shapes = (data.images.shape[1:], data.tag_dim, data.num_labels)
    models = build_models(tiny_config(tmp_path, bits=8), *shapes)
    prefix = tf.train.Checkpoint(**model_objects(
        {"imgnet": models["imgnet"], "txtnet": models["txtnet"]})).write(
            str(tmp_path / "weights"))
    message = _raises(errors.ConfigError, f"{prefix}: checkpoint does not match the networks "
                      "built from the flags (bits=16", restore_encoders,
                      tiny_config(tmp_path, bits=16), *shapes, checkpoint_path=prefix)
    assert "tag_dim=24" in message


# --- modes/search.py --------------------------------------------------------------------------

@pytest.mark.parametrize("query,vocab,dim,cls,start", [
    ("clods,sky", VOCAB, 5, errors.ConfigError, "--query_tags: unknown tag(s) 'clods' (close: "),
    (",,", VOCAB, 5, errors.ConfigError, "--query_tags=',,' holds no tag"),
    ("sky", None, 5, errors.DataError, "--query_tags: this dataset has no tag vocabulary"),
    ("sky", VOCAB, 6, errors.DataError,
     "--data_dir: the tag vocabulary has 5 names but the tag input has 6 columns"),
])
def test_query_tag_errors(query, vocab, dim, cls, start):
    _raises(cls, start, cli.tags_to_bow, query, vocab, dim)


def test_bad_top_k_is_a_config_error():
    # Refused before any data set is read.
    _raises(errors.ConfigError, "--top_k must be >= 1, got 0", cli.search,
            Config(mode="search", query_tags="sky", top_k=0))


def test_photo_query_of_a_feature_run_needs_a_backbone():
    _raises(errors.ConfigError, "--query_image_file=p.jpg: the run was trained on precomputed",
            cli.image_file_features, Config(backbone="features"), "p.jpg", (16,))


def test_search_without_export_or_checkpoint_is_a_missing_file(tmp_path):
    workdir, exports = tmp_path / "run", tmp_path / "exports"
    config = Config(mode="search", workdir=str(workdir), export_dir=str(exports),
                    query_tags="sky")
    message = _raises(errors.MissingFileError,
                      f"--workdir={workdir}: nothing to search with: no export of run 'run' "
                      f"under --export_dir={exports}", cli.encoders_and_databases,
                      config, config, tiny_data(), tiny_split(), "run")
    assert "no selected checkpoint" in message and "train first" in message
    assert not workdir.exists()


def test_search_of_a_missing_export_version_is_a_missing_file(tmp_path):
    for name in ("image_encoder", "text_encoder"):
        os.makedirs(tmp_path / "run" / name / "1")
    config = Config(mode="search", workdir=str(tmp_path / "w"), export_dir=str(tmp_path),
                    export_version=3, query_tags="sky")
    message = _raises(errors.MissingFileError, "--export_version=3: export version 3 of run "
                      "'run' not found", cli.encoders_and_databases, config, config,
                      tiny_data(), tiny_split(), "run")
    assert "(have [1])" in message


# --- export/layout.py -----------------------------------------------------------------------

def test_layout_errors(tmp_path):
    _raises(errors.ConfigError, "--workdir=/: cannot derive a run name", layout.run_name_of,
            Config(workdir="/"))
    assert layout.run_name_of(Config(workdir="/", run_name="r")) == "r"
    _raises(errors.ConfigError, "--export_version must be >= 0, got -1",
            layout.choose_version, str(tmp_path), ["m"], -1)
    os.makedirs(tmp_path / "m" / "1")
    _raises(errors.ConfigError, "--export_version=1: version 1 already exists for ['m']",
            layout.choose_version, str(tmp_path), ["m"], 1)
    missing = tmp_path / "m" / "1" / "assets.extra" / layout.METADATA_FILE
    _raises(errors.MissingFileError, f"{missing} not found: not a udsph-tf export",
            layout.read_metadata, str(tmp_path / "m" / "1"))


# --- data/types.py: Split.check ------------------------------------------------------------

@pytest.mark.parametrize("parts,problem", [
    (dict(query_idx=[0, 9], database_idx=[1, 2]), "query_idx holds index 9 but the dataset "
                                                  "has only 4 rows"),
    (dict(query_idx=[0, 0], database_idx=[1, 2]), "query_idx holds duplicate indices"),
    (dict(query_idx=[0, 1], database_idx=[1, 2]), "query_idx and database_idx share 1 rows"),
    (dict(train_idx=[3]), "1 rows of train_idx are not in database_idx"),
    (dict(train_idx=[1], val_idx=[1]), "train_idx and val_idx share 1 rows"),
])
def test_split_check_is_a_data_error_naming_its_file(parts, problem):
    fields = dict(query_idx=[0], database_idx=[1, 2], train_idx=[1], val_idx=[2], seed=0)
    split = Split(**dict(fields, **parts))
    _raises(errors.DataError, f"/data/split.npz: {problem}", split.check, 4,
            "/data/split.npz")


# --- main.py --------------------------------------------------------------------------------

@pytest.mark.slow
def test_main_search_of_a_missing_export_is_one_error_line(tmp_path):
    """The whole path: a user error, status 2, no traceback, and nothing created."""
    workdir = tmp_path / "never_trained"
    environ = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    for name in ("TF_CONFIG", "UDSPH_TRACEBACK"):
        environ.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "main.py", "--mode=search", f"--workdir={workdir}",
         f"--export_dir={tmp_path / 'exports'}", "--query_tags=sky", "--noprogress"],
        cwd=REPO, env=environ, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(f"error: --workdir={workdir}: nothing to search with"), lines[0]
    assert not workdir.exists() and not (tmp_path / "exports").exists()


def test_subclasses_keep_the_builtin_callers_catch():
    assert issubclass(errors.ConfigError, ValueError)
    assert issubclass(errors.DataError, ValueError)
    assert issubclass(errors.MissingFileError, FileNotFoundError)
    assert all(issubclass(c, errors.UserError) for c in (
        errors.ConfigError, errors.DataError, errors.MissingFileError, errors.WorkdirError))


@pytest.mark.parametrize("change,start", [
    ({"bits": 0}, "--bits: must be >= 1, got 0"),
    ({"imgnet_hidden": -8}, "--imgnet_hidden: must be >= 1, got -8"),
    ({"region_grid": -1}, "--region_grid: must be >= 0, got -1"),
    ({"min_pass_steps": -5}, "--min_pass_steps: must be >= 0, got -5"),
    ({"lr_img": -1.0}, "--lr_img: a learning rate must be a finite number > 0, got -1.0"),
    ({"lr_txt": 0.0}, "--lr_txt: a learning rate must be a finite number > 0, got 0.0"),
    ({"lr_lab": float("nan")}, "--lr_lab: a learning rate must be a finite number > 0"),
    ({"delta": -1.0}, "--delta: a loss weight must be a finite number >= 0 (0 turns the term "
                      "off), got -1.0"),
    ({"mu": float("inf")}, "--mu: a loss weight must be a finite number >= 0"),
    ({"lr_decay": 0.0}, "--lr_decay: must be in (0, 1] (1 = no decay), got 0.0"),
    ({"txt_passes": -1}, "--txt_passes: txtnet passes must be >= 0, got -1"),
    ({"label_net": False}, "--adversarial needs --label_net"),
])
def test_values_no_run_can_use_are_refused_before_the_workdir_is_made(tmp_path, change, start):
    from udsph_tf import modes
    workdir = tmp_path / "run"
    config = tiny_config(workdir, **change)
    _raises(errors.ConfigError, start, modes.run, config)
    assert not workdir.exists()
    # The defaults and the edges that are allowed pass (0 turns a term off; 1 = no decay).
    from udsph_tf.config import check_values
    check_values(Config())
    check_values(tiny_config(workdir, delta=0.0, cross_pair=0.0, lr_decay=1.0, region_grid=0))
