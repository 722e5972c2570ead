"""End to end on a tiny trained run: export from the checkpoint, `--mode=search`, main.py."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from udsph_tf.config import Config, replace
from udsph_tf.export import MODEL_NAMES, latest_export, read_metadata
from udsph_tf.modes.export import export_from_checkpoint, load_run
from udsph_tf.codes import to_codes
from udsph_tf.retrieval import CodeDatabase, HammingIndex, pack_codes
from udsph_tf.modes.search import search, tags_to_bow
from udsph_tf.modes.train import train_and_evaluate
from udsph_tf.training.testing import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow  # one real (tiny) training run, ~30-60 s on a shared 2-core box


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A few training steps on the embedded default data; flags recorded in metrics.json."""
    root = tmp_path_factory.mktemp("search")
    workdir = str(root / "tinyrun")
    # tiny_config keeps the multi-scale fusion, so export proves its convs are checkpointed.
    config = tiny_config(workdir, dataset="default", num_query=40, num_train=64, num_val=32,
                         batch_size=32, epochs=1, num_replicas=1, bits=16)
    train_and_evaluate(config)
    # What a user types afterwards: only the workdir and the mode's own flags.
    base = Config(workdir=workdir, export_dir=str(root / "export"), top_k=10)
    return {"root": root, "workdir": workdir, "train_config": config, "base": base}


def _search(run, **flags):
    out = io.StringIO()
    result = search(replace(run["base"], mode="search", **flags), out=out)
    return result, out.getvalue()


def test_search_by_tags_from_checkpoint_matches_manual_ranking(run):
    assert latest_export(run["base"].export_dir, "tinyrun") is None  # not exported yet
    result, text = _search(run, query_tags="tag0003, TAG0010")
    assert result.direction == "text->image" and len(result.ids) == 10
    assert result.code_source.startswith("checkpoint:best-")
    assert "text->image search for tags tag0003, TAG0010" in text and "rank" in text
    assert len([ln for ln in text.splitlines() if ln.strip()[:1].isdigit()]) == 10
    # The same ranking by hand: restored networks, database split, numpy index.
    loaded = load_run(run["base"])
    data, split = loaded.data, loaded.split
    img_codes = to_codes(loaded.imgnet(data.images[split.database_idx])["hash"].numpy())
    bow, _ = tags_to_bow("tag0003,tag0010", data.tag_vocab, data.tag_dim)
    q = pack_codes(to_codes(loaded.txtnet(bow)["hash"].numpy()))
    ids, dist = HammingIndex.build(pack_codes(img_codes), "numpy",
                                   ids=data.ids[split.database_idx]).search_ids(q, 10)
    np.testing.assert_array_equal(result.ids, ids[0])
    np.testing.assert_array_equal(result.distances, dist[0])
    assert (np.diff(result.distances) >= 0).all()
    # The database was cached in the workdir and is reused by the next search.
    cache = os.path.join(run["workdir"], "codes", "image.npz")
    mtime = os.path.getmtime(cache)
    _search(run, query_tags="tag0003")
    assert os.path.getmtime(cache) == mtime
    assert CodeDatabase.load(cache).run_name == "tinyrun"


def test_search_by_image_row(run):
    result, text = _search(run, query_image_row=5, top_k=4)
    assert result.direction == "image->text" and len(result.ids) == 4
    assert "image row 5" in text and "|  tags" in text  # texts shown with their tags
    assert all(isinstance(name, str) and name.startswith("concept") for name in result.labels[0])


@pytest.mark.parametrize("flags,message", [
    (dict(query_tags="tag001,skyy"), "'tag001' (close: tag1001"),
    (dict(query_tags="tag001,skyy"), "'skyy' (no close match)"),
    (dict(query_tags=" , "), "holds no tag"),
    (dict(), "needs exactly one query"),
    (dict(query_tags="tag0001", query_image_row=1), "needs exactly one query"),
    (dict(query_image_row=99999), "out of range"),
    (dict(query_image_file="photo.jpg"), "--backbone=efficientnet_lite0"),
    (dict(query_tags="tag0001", top_k=0), "--top_k must be >= 1"),
])
def test_search_errors(run, flags, message):
    with pytest.raises(ValueError) as err:
        _search(run, **flags)
    assert message in str(err.value)


def test_export_from_checkpoint_equals_in_process_and_serves_search(run):
    config = replace(run["base"], mode="export")
    result = export_from_checkpoint(config)
    assert result.version == 1 and sorted(result.paths) == sorted(MODEL_NAMES)
    meta = read_metadata(result.paths["image_to_text"])
    assert meta["run_name"] == "tinyrun" and meta["bits"] == 16
    assert os.path.basename(meta["checkpoint"]).startswith("best-")
    loaded = load_run(run["base"])
    data, split = loaded.data, loaded.split
    images, tags = data.images[split.query_idx[:6]], data.tags[split.query_idx[:6]]
    # Exported encoders == the restored in-process networks on the same inputs.
    for name, model, key, x in (("image_encoder", loaded.imgnet, "image_features", images),
                                ("text_encoder", loaded.txtnet, "tags", tags)):
        out = tf.saved_model.load(result.paths[name]).signatures["serving_default"](
            **{key: tf.constant(x)})
        ref = model(x, training=False)
        np.testing.assert_allclose(out["hash"].numpy(), ref["hash"].numpy(), atol=1e-5)
        np.testing.assert_allclose(out["label_scores"].numpy(), ref["label_pred"].numpy(),
                                   atol=1e-5)
        np.testing.assert_array_equal(out["codes"].numpy(), to_codes(ref["hash"].numpy()))
    # The text->image SavedModel answers like the CLI (which now uses the export).
    bow, _ = tags_to_bow("tag0003,tag0010", data.tag_vocab, data.tag_dim)
    served = tf.saved_model.load(result.paths["text_to_image"]).signatures["serving_default"](
        tags=tf.constant(bow))
    cli, text = _search(run, query_tags="tag0003,tag0010")
    assert cli.code_source.startswith("exported version 1")
    np.testing.assert_array_equal(served["ids"].numpy()[0], cli.ids)
    np.testing.assert_array_equal(served["distances"].numpy()[0], cli.distances)
    by_name = tf.saved_model.load(result.paths["text_to_image"]).signatures[
        "search_tag_words"](tag_words=tf.constant(["tag0003 tag0010"]))
    np.testing.assert_array_equal(by_name["ids"].numpy()[0], cli.ids)
    db = CodeDatabase.load(os.path.join(result.run_dir, "databases", "v1", "image.npz"))
    assert db.model_version == "1" and len(db) == len(split.database_idx)
    # A second export becomes version 2; the first one is left alone.
    assert export_from_checkpoint(config).version == 2
    assert os.path.isdir(result.paths["image_encoder"])


def test_main_py_search_with_recorded_flags(run):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
    res = subprocess.run(
        [sys.executable, os.path.join(REPO, "main.py"), "--mode=search",
         f"--workdir={run['workdir']}", f"--export_dir={run['root'] / 'nothing_exported'}",
         "--query_tags=tag0003", "--top_k=3", "--search_backend=numpy"],
        capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.splitlines()
    assert lines[0].startswith("text->image search for tags tag0003: top 3 of 3960")
    assert len([ln for ln in lines if ln.strip()[:1].isdigit()]) == 3


def test_main_py_export(run):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
    export_dir = run["root"] / "export_cli"
    res = subprocess.run(
        [sys.executable, os.path.join(REPO, "main.py"), "--mode=export",
         f"--workdir={run['workdir']}", f"--export_dir={export_dir}", "--run_name=cli",
         "--top_k=4"],
        capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "exported cli version 1" in res.stderr
    for name in MODEL_NAMES:
        assert os.path.exists(export_dir / "cli" / name / "1" / "saved_model.pb")
    assert read_metadata(str(export_dir / "cli" / "text_to_image" / "1"))["top_k"] == 4
    assert (export_dir / "cli" / "models.config").read_text().count("config {") == 4
