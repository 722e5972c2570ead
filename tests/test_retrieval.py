"""Tests of udsph_tf.retrieval: packing, exact Hamming top-k (numpy, FAISS), code databases."""

import sys

import numpy as np
import pytest

from udsph_tf import retrieval
from udsph_tf.retrieval import (CodeDatabase, HammingIndex, hamming_distances, hamming_topk,
                                pack_codes, unpack_codes)
from udsph_tf.retrieval import search as search_module


def random_codes(rng, n, bits, distinct=None):
    """+-1 codes; with `distinct`, rows are drawn from that many codes, so ties abound."""
    if distinct is None:
        return np.where(rng.random((n, bits)) < 0.5, 1, -1).astype(np.int8)
    pool = random_codes(rng, distinct, bits)
    return pool[rng.integers(0, distinct, n)]


def reference_topk(query_codes, db_codes, k):
    """Brute force from unpacked codes: d = (K - q.b) / 2, stable sort by (d, position)."""
    bits = query_codes.shape[1]
    dist = (bits - query_codes.astype(np.int64) @ db_codes.astype(np.int64).T) // 2
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(dist, order, axis=1)


# --- packing ------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [8, 16, 24, 32, 64, 72, 128])
def test_pack_unpack_round_trip(bits):
    codes = random_codes(np.random.default_rng(bits), 50, bits)
    packed = pack_codes(codes.astype(np.float32))
    assert packed.dtype == np.uint8 and packed.shape == (50, bits // 8)
    np.testing.assert_array_equal(unpack_codes(packed, bits), codes)


def test_pack_bit_order_is_big_endian_with_one_for_plus_one():
    codes = -np.ones((2, 16), np.int8)
    codes[0, 0] = 1     # first code bit -> most significant bit of byte 0
    codes[1, 15] = 1    # last code bit -> least significant bit of the last byte
    np.testing.assert_array_equal(pack_codes(codes), [[0x80, 0x00], [0x00, 0x01]])


@pytest.mark.parametrize("codes, message", [
    (np.zeros((2, 8)), "only \\+1 and -1.*item 0, bit 0"),
    (np.full((2, 8), 2), "only \\+1 and -1"),
    (np.full((1, 8), np.nan), "only \\+1 and -1"),
    (np.ones((2, 12)), "multiple of 8"),
    (np.ones((2, 0)), "multiple of 8"),
    (np.ones(8), "2-D"),
    (np.ones((2, 8), bool), "numeric"),
])
def test_pack_rejects_bad_codes(codes, message):
    with pytest.raises(ValueError, match=message):
        pack_codes(codes)


def test_unpack_rejects_wrong_bits_and_dtype():
    packed = pack_codes(np.ones((3, 32)))
    with pytest.raises(ValueError, match="4 bytes per item.*expected 64 bits"):
        unpack_codes(packed, 64)
    with pytest.raises(ValueError, match="multiple of 8"):
        unpack_codes(packed, 30)
    with pytest.raises(ValueError, match="uint8"):
        unpack_codes(packed.astype(np.int32), 32)


# --- exact numpy search ---------------------------------------------------------------------

@pytest.mark.parametrize("bits", [8, 16, 24, 32, 40, 64, 72])
def test_hamming_distances_match_inner_products(bits):
    rng = np.random.default_rng(bits)
    q, db = random_codes(rng, 9, bits), random_codes(rng, 40, bits)
    expected = (bits - q.astype(np.int64) @ db.T.astype(np.int64)) // 2
    np.testing.assert_array_equal(hamming_distances(pack_codes(q), pack_codes(db)), expected)


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiny tiles and database parts, so small inputs cross many chunk/part boundaries,
    and single queries stream too instead of taking the small-range threshold path."""
    monkeypatch.setattr(search_module, "_TILE", 64)
    monkeypatch.setattr(search_module, "_MIN_PART", 500)
    monkeypatch.setattr(search_module, "_SINGLE_SMALL", 0)


@pytest.mark.parametrize("bits", [16, 32, 64])
@pytest.mark.parametrize("distinct", [None, 12])
@pytest.mark.parametrize("num_threads", [1, 2])
def test_topk_matches_brute_force_with_ties(bits, distinct, num_threads, small_tiles):
    rng = np.random.default_rng(bits + (distinct or 0))
    db = random_codes(rng, 1500, bits, distinct)
    queries = random_codes(rng, 23, bits, distinct)
    for k in (1, 7, 100, 1500, 1600):   # 1600 > n: the whole database, ranked
        for query_block in (1, 5, 64):
            pos, dist = hamming_topk(pack_codes(queries), pack_codes(db), k,
                                     num_threads=num_threads, query_block=query_block)
            ref_pos, ref_dist = reference_topk(queries, db, min(k, len(db)))
            assert pos.dtype == np.int64 and dist.dtype == np.int32
            np.testing.assert_array_equal(pos, ref_pos)
            np.testing.assert_array_equal(dist, ref_dist)


@pytest.mark.parametrize("bits", [8, 24, 64, 72, 264])   # 264: distances above 255
@pytest.mark.parametrize("distinct", [None, 40])
def test_topk_default_tiles_and_single_query_path(bits, distinct):
    """Default tiles: batches stream, single queries take the threshold (histogram) path."""
    rng = np.random.default_rng(5)
    db = random_codes(rng, 3000, bits, distinct)
    queries = random_codes(rng, 40, bits, distinct)
    ref_pos, ref_dist = reference_topk(queries, db, 50)
    for num_threads in (1, 2):
        pos, dist = hamming_topk(pack_codes(queries), pack_codes(db), 50,
                                 num_threads=num_threads)
        np.testing.assert_array_equal(pos, ref_pos)
        np.testing.assert_array_equal(dist, ref_dist)
    for i in range(0, 40, 4):
        for k in (1, 50, 3000, 3001):
            pos, dist = hamming_topk(pack_codes(queries[i:i + 1]), pack_codes(db), k)
            one_pos, one_dist = reference_topk(queries[i:i + 1], db, min(k, 3000))
            np.testing.assert_array_equal(pos, one_pos)
            np.testing.assert_array_equal(dist, one_dist)


def test_topk_all_identical_codes_ranks_by_position(small_tiles):
    db = np.ones((700, 16), np.int8)
    pos, dist = hamming_topk(pack_codes(-db[:2]), pack_codes(db), 10, num_threads=2)
    np.testing.assert_array_equal(pos, np.tile(np.arange(10), (2, 1)))
    np.testing.assert_array_equal(dist, np.full((2, 10), 16))


def test_topk_empty_query_batch_gives_empty_result():
    db = pack_codes(np.ones((30, 32)))
    pos, dist = hamming_topk(np.zeros((0, 4), np.uint8), db, 100)
    assert pos.shape == (0, 30) and dist.shape == (0, 30)
    assert pos.dtype == np.int64 and dist.dtype == np.int32


@pytest.mark.parametrize("k", [0, -1, 2.5, True, None])
def test_topk_rejects_bad_k(k):
    packed = pack_codes(np.ones((4, 8)))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        hamming_topk(packed, packed, k)


def test_topk_rejects_mismatched_code_lengths():
    with pytest.raises(ValueError, match="database codes have 8 bytes.*expected 32 bits"):
        hamming_topk(pack_codes(np.ones((2, 32))), pack_codes(np.ones((5, 64))), 3)
    index = HammingIndex.build(pack_codes(np.ones((5, 64))), "numpy")
    with pytest.raises(ValueError, match="query codes have 4 bytes.*expected 64 bits"):
        index.search(pack_codes(np.ones((2, 32))), 3)


# --- HammingIndex ---------------------------------------------------------------------------

def test_index_numpy_search_ids_and_to_ids():
    rng = np.random.default_rng(0)
    db = random_codes(rng, 200, 32, distinct=15)
    queries = random_codes(rng, 6, 32)
    ids = np.array([f"item{i:03d}" for i in range(200)])
    index = HammingIndex.build(pack_codes(db), "numpy", ids=ids)
    assert index.backend == "numpy" and index.exact and len(index) == 200 and index.bits == 32
    pos, dist = index.search(pack_codes(queries), 10)
    found, dist2 = index.search_ids(pack_codes(queries), 10)
    np.testing.assert_array_equal(found, ids[pos])
    np.testing.assert_array_equal(dist, dist2)
    with pytest.raises(ValueError, match="out of range"):
        index.to_ids(np.array([200]))


def test_index_build_errors():
    packed = pack_codes(np.ones((4, 16)))
    with pytest.raises(ValueError, match="unknown backend 'annoy'"):
        HammingIndex.build(packed, "annoy")
    with pytest.raises(ValueError, match="empty database"):
        HammingIndex.build(np.zeros((0, 2), np.uint8), "numpy")
    with pytest.raises(ValueError, match="ids must have shape \\(4,\\)"):
        HammingIndex.build(packed, "numpy", ids=np.arange(3))
    with pytest.raises(ValueError, match="takes no options"):
        HammingIndex.build(packed, "numpy", hnsw_m=8)


def test_auto_backend_is_numpy_and_faiss_absence_is_a_clear_error(monkeypatch):
    assert retrieval.resolve_backend("auto") == "numpy"
    monkeypatch.setitem(sys.modules, "faiss", None)   # import faiss -> ImportError
    assert not retrieval.faiss_available()
    with pytest.raises(ValueError, match="needs faiss-cpu"):
        HammingIndex.build(pack_codes(np.ones((4, 16))), "faiss")


# --- FAISS ----------------------------------------------------------------------------------

@pytest.fixture
def faiss_module():
    return pytest.importorskip("faiss", reason="faiss-cpu (optional extra) is not installed")


@pytest.mark.parametrize("bits", [16, 32, 64])
@pytest.mark.parametrize("extra", [None, 0])
def test_faiss_flat_identical_to_numpy_with_ties(faiss_module, bits, extra):
    rng = np.random.default_rng(bits)
    db = random_codes(rng, 4000, bits, distinct=30)
    queries = random_codes(rng, 120, bits, distinct=30)
    options = {} if extra is None else {"extra_candidates": extra}
    index = HammingIndex.build(pack_codes(db), "faiss", **options)
    assert index.backend == "faiss" and index.exact
    for k in (1, 10, 100, 4000, 5000):
        for batch in (queries[:1], queries):
            pos, dist = index.search(pack_codes(batch), k)
            ref_pos, ref_dist = hamming_topk(pack_codes(batch), pack_codes(db), k)
            np.testing.assert_array_equal(pos, ref_pos)
            np.testing.assert_array_equal(dist, ref_dist)
    if extra == 0:   # ties straddle k on these codes: the numpy re-run must have been used
        assert index.searcher.fallback_queries > 0


def test_faiss_flat_random_codes_and_empty_batch(faiss_module):
    rng = np.random.default_rng(1)
    db, queries = random_codes(rng, 20000, 64), random_codes(rng, 50, 64)
    index = HammingIndex.build(pack_codes(db), "faiss")
    pos, dist = index.search(pack_codes(queries), 25)
    ref_pos, ref_dist = reference_topk(queries, db, 25)
    np.testing.assert_array_equal(pos, ref_pos)
    np.testing.assert_array_equal(dist, ref_dist)
    pos, dist = index.search(np.zeros((0, 8), np.uint8), 25)
    assert pos.shape == dist.shape == (0, 25)


def test_faiss_distance_ignores_bit_order_within_bytes(faiss_module):
    """Reversing the bits of every byte on both sides (FAISS's own LSB-first packing)
    leaves every Hamming distance unchanged."""
    rng = np.random.default_rng(2)
    db, queries = pack_codes(random_codes(rng, 300, 32)), pack_codes(random_codes(rng, 5, 32))
    flip = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little")
    reverse = np.packbits(flip, axis=1, bitorder="big")[:, 0]   # byte -> bit-reversed byte
    assert not np.array_equal(reverse[db], db)
    index = faiss_module.IndexBinaryFlat(32)
    index.add(reverse[db])
    dist, _ = index.search(reverse[queries], 300)
    np.testing.assert_array_equal(np.sort(dist, axis=1),
                                  np.sort(hamming_distances(queries, db), axis=1))


def test_faiss_hnsw_is_ranked_consistent_and_finds_most_neighbours(faiss_module):
    rng = np.random.default_rng(3)
    db, queries = random_codes(rng, 3000, 64), random_codes(rng, 40, 64)
    index = HammingIndex.build(pack_codes(db), "faiss_hnsw", hnsw_m=16, ef_search=200)
    assert index.backend == "faiss_hnsw" and not index.exact
    pos, dist = index.search(pack_codes(queries), 10)
    assert pos.shape == (40, 10) and (pos >= 0).all()
    true = hamming_distances(pack_codes(queries), pack_codes(db))
    np.testing.assert_array_equal(dist, np.take_along_axis(true, pos, axis=1))
    assert (np.diff(dist, axis=1) >= 0).all()
    # Recall of the exact 10th distance: HNSW should reach it for most queries.
    _, exact = hamming_topk(pack_codes(queries), pack_codes(db), 10)
    recall = np.mean([np.isin(p, np.flatnonzero(true[i] <= exact[i, -1])).mean()
                      for i, p in enumerate(pos)])
    assert recall > 0.9, recall
    with pytest.raises(ValueError, match="bad options for backend 'faiss_hnsw'"):
        HammingIndex.build(pack_codes(db), "faiss_hnsw", bogus=1)


# --- CodeDatabase ---------------------------------------------------------------------------

def make_db(rng=None, n=40, bits=32, **fields):
    rng = rng or np.random.default_rng(0)
    fields.setdefault("labels", (rng.random((n, 5)) < 0.3).astype(np.uint8))
    return CodeDatabase.from_codes(random_codes(rng, n, bits), run_name="run-7",
                                   model_version="3", modality="text", **fields)


def test_database_save_load_round_trip(tmp_path):
    db = make_db(ids=np.array([f"im{i}.jpg" for i in range(40)]))
    path = db.save(tmp_path / "sub" / "codes.npz")
    assert sorted(p.name for p in path.parent.iterdir()) == ["codes.npz"]   # no temp left
    loaded = CodeDatabase.load(path)
    np.testing.assert_array_equal(loaded.packed, db.packed)
    np.testing.assert_array_equal(loaded.ids, db.ids)
    np.testing.assert_array_equal(loaded.labels, db.labels)
    assert (loaded.bits, loaded.run_name, loaded.model_version, loaded.modality) == \
        (32, "run-7", "3", "text")
    found, _ = loaded.index("numpy").search_ids(db.packed[:3], 1)
    np.testing.assert_array_equal(found[:, 0], db.ids[:3])


def test_database_without_labels_and_overwrite(tmp_path):
    path = tmp_path / "codes.npz"
    make_db(labels=None).save(path)
    make_db(np.random.default_rng(9), n=10, bits=64, labels=None).save(path)
    loaded = CodeDatabase.load(path)
    assert loaded.labels is None and len(loaded) == 10 and loaded.bits == 64
    np.testing.assert_array_equal(loaded.ids, np.arange(10))


def test_database_constructor_errors():
    packed = pack_codes(np.ones((4, 32)))
    with pytest.raises(ValueError, match="4 bytes per item.*expected 64 bits"):
        CodeDatabase(packed, np.arange(4), bits=64)
    with pytest.raises(ValueError, match="ids have shape \\(3,\\), expected \\(4,\\)"):
        CodeDatabase(packed, np.arange(3), bits=32)
    with pytest.raises(ValueError, match="ids are not unique"):
        CodeDatabase(packed, np.array([0, 1, 1, 2]), bits=32)
    with pytest.raises(ValueError, match="ids must be integers or strings"):
        CodeDatabase(packed, np.arange(4.0), bits=32)
    with pytest.raises(ValueError, match="labels must be"):
        CodeDatabase(packed, np.arange(4), bits=32, labels=np.ones((5, 2)))
    with pytest.raises(ValueError, match="uint8"):
        CodeDatabase(packed.astype(np.int16), np.arange(4), bits=32)
    with pytest.raises(ValueError, match="run_name must be a string"):
        CodeDatabase(packed, np.arange(4), bits=32, run_name=3)
    with pytest.raises(ValueError, match="must end in .npz"):
        CodeDatabase(packed, np.arange(4), bits=32).save("codes.bin")


def test_database_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="code database not found"):
        CodeDatabase.load(tmp_path / "absent.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="garbage.npz: not a readable code database"):
        CodeDatabase.load(garbage)
    good = make_db().save(tmp_path / "good.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(ValueError, match="truncated.npz: not a readable code database"):
        CodeDatabase.load(truncated)
    other = tmp_path / "other.npz"
    np.savez(other, packed=np.zeros((2, 4), np.uint8))
    with pytest.raises(ValueError, match="other.npz: missing key\\(s\\).*'ids'"):
        CodeDatabase.load(other)


def test_database_load_rejects_inconsistent_fields(tmp_path):
    contents = dict(np.load(make_db().save(tmp_path / "db.npz")))
    for key, value, message in [
        ("bits", np.array(64), "4 bytes per item.*expected 64 bits"),
        ("ids", np.arange(39), "ids have shape \\(39,\\), expected \\(40,\\)"),
        ("format", np.array("something-else"), "format is 'something-else'"),
        ("format_version", np.array(99), "format_version 99 is newer"),
    ]:
        bad = tmp_path / f"bad_{key}.npz"
        np.savez(bad, **{**contents, key: value})
        with pytest.raises(ValueError, match=f"bad_{key}.npz.*{message}|{message}"):
            CodeDatabase.load(bad)


def test_retrieval_imports_neither_tensorflow_nor_faiss():
    """Checked in a fresh interpreter: conftest has already imported TensorFlow here."""
    import subprocess
    code = ("import sys, udsph_tf.retrieval; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'faiss') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=str(search_module.__file__).rsplit("/udsph_tf/", 1)[0])
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize("num_queries", [1, 20])   # threshold path and streaming path
def test_topk_distances_above_255_do_not_wrap(num_queries):
    rng = np.random.default_rng(11)
    db = random_codes(rng, 300, 264)
    queries = -db[:num_queries]   # complements: distance 264 to their own item
    pos, dist = hamming_topk(pack_codes(queries), pack_codes(db), 300)
    ref_pos, ref_dist = reference_topk(queries, db, 300)
    assert ref_dist.max() == 264
    np.testing.assert_array_equal(pos, ref_pos)
    np.testing.assert_array_equal(dist, ref_dist)
