"""Fast pieces of export/search without a trained run: tag parsing, recorded flags, caches."""

import json
import os

import numpy as np
import pytest

from udsph_tf.config import Config
from udsph_tf.data.types import CrossModalData
from udsph_tf import run_identity
from udsph_tf.export import codes
from udsph_tf.training.checkpointing import selected_checkpoint
from udsph_tf.modes.search import query_mode, tags_to_bow

VOCAB = ["sky", "clouds", "cloud", "Sunset", "tree"]


def test_tags_to_bow_exact_and_case_insensitive():
    bow, words = tags_to_bow("sky, sunset ,TREE", VOCAB, 5)
    np.testing.assert_array_equal(bow, [[1, 0, 0, 1, 1]])
    assert words == ["sky", "sunset", "TREE"]


@pytest.mark.parametrize("query,vocab,dim,message", [
    ("clods", VOCAB, 5, "'clods' (close: clouds, cloud)"),
    ("qqqq", VOCAB, 5, "'qqqq' (no close match)"),
    (",,", VOCAB, 5, "holds no tag"),
    ("sky", None, 5, "no tag vocabulary"),
    ("sky", VOCAB, 6, "5 names but the tag input has 6 columns"),
])
def test_tags_to_bow_errors(query, vocab, dim, message):
    with pytest.raises(ValueError) as err:
        tags_to_bow(query, vocab, dim)
    assert message in str(err.value)


def test_query_mode_needs_exactly_one_query():
    assert query_mode(Config(query_tags="sky")) == "--query_tags"
    assert query_mode(Config(query_image_row=0)) == "--query_image_row"
    assert query_mode(Config(query_image_file="a.jpg")) == "--query_image_file"
    with pytest.raises(ValueError, match="exactly one query"):
        query_mode(Config(query_tags="sky", query_image_file="a.jpg"))


def test_run_config_fills_recorded_fields_and_refuses_contradicting_flags(tmp_path):
    recorded = Config(workdir="elsewhere", bits=64, dataset="mirflickr730", data_dir="/d",
                      txt_scales="", top_k=3)
    (tmp_path / "metrics.json").write_text(json.dumps({"config": vars(recorded)}))
    cfg = run_identity.resolve(Config(workdir=str(tmp_path), top_k=7))
    assert (cfg.bits, cfg.dataset, cfg.data_dir, cfg.txt_scales) == (64, "mirflickr730", "/d", "")
    assert cfg.top_k == 7 and cfg.workdir == str(tmp_path)  # search/export flags stay the user's
    # A flag that contradicts the record is refused (run_identity), not silently used.
    with pytest.raises(ValueError, match="trained with --bits=64, the flags say --bits=16"):
        run_identity.resolve(Config(workdir=str(tmp_path), bits=16))
    assert run_identity.resolve(Config(workdir=str(tmp_path / "new"))) == \
        Config(workdir=str(tmp_path / "new"))  # no record: unchanged
    (tmp_path / "metrics.json").write_text("{broken")
    with pytest.raises(ValueError, match="unreadable run record"):
        run_identity.resolve(Config(workdir=str(tmp_path)))


def test_selected_checkpoint_missing_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no selected checkpoint.*train first"):
        selected_checkpoint(str(tmp_path))


def test_latest_export(tmp_path):
    assert codes.latest_export(str(tmp_path), "run") is None
    for version in (1, 3):
        for name in ("image_encoder", "text_encoder"):
            os.makedirs(tmp_path / "run" / name / str(version))
    os.makedirs(tmp_path / "run" / "image_encoder" / "4")  # incomplete: no text encoder 4
    image_dir, text_dir, version = codes.latest_export(str(tmp_path), "run")
    assert version == 3 and image_dir.endswith(os.path.join("image_encoder", "3"))
    assert codes.latest_export(str(tmp_path), "run", 1)[2] == 1
    with pytest.raises(FileNotFoundError, match="version 4 of run 'run' not found"):
        codes.latest_export(str(tmp_path), "run", 4)


class _FakeEncoders:
    """Deterministic stand-in: hash = first K input columns centred (tests the cache only)."""

    def __init__(self, source):
        self.source = source
        self.calls = 0

    def hash(self, modality, x):
        self.calls += 1
        return np.asarray(x, np.float32)[:, :8] - 0.5


def test_cached_database_is_reused_then_rebuilt_on_new_source(tmp_path):
    rng = np.random.default_rng(0)
    data = CrossModalData(name="t", images=rng.random((20, 8), dtype=np.float32),
                          tags=rng.random((20, 8), dtype=np.float32),
                          labels=np.eye(4, dtype=np.float32)[rng.integers(0, 4, 20)],
                          ids=np.arange(100, 120))
    rows = np.arange(5, 20)
    path = str(tmp_path / "codes" / "image.npz")
    enc = _FakeEncoders("checkpoint:best-1")
    db, reused = codes.cached_database(path, enc, data, rows, "image", "run", 8)
    assert not reused and enc.calls == 1 and list(db.ids) == list(range(105, 120))
    db2, reused = codes.cached_database(path, enc, data, rows, "image", "run", 8)
    assert reused and enc.calls == 1 and np.array_equal(db2.packed, db.packed)
    newer = _FakeEncoders("checkpoint:best-2")
    _, reused = codes.cached_database(path, newer, data, rows, "image", "run", 8)
    assert not reused and newer.calls == 1
    _, reused = codes.cached_database(path, newer, data, rows[1:], "image", "run", 8)
    assert not reused  # other rows: rebuilt
    with open(path, "wb") as f:
        f.write(b"not an npz")
    _, reused = codes.cached_database(path, newer, data, rows, "image", "run", 8)
    assert not reused  # a corrupt cache is rebuilt, not trusted
