"""udsph_tf.evaluation: hand-checked cases, agreement with the reference MAP, errors, plots."""

import importlib.util
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from udsph_tf.evaluation import (code_stats, evaluate_retrieval, mean_average_precision,
                                 plot_curves, pr_curve_counts)
from udsph_tf.evaluation.ranking import expected_ap, harmonic_numbers

REFMAP = pathlib.Path(__file__).resolve().parents[2] / "shared" / "reference" / "refmap.py"


@pytest.fixture(scope="module")
def ref():
    """The project's slow, loop-based reference MAP (read in place), or a skip saying why."""
    if not REFMAP.exists():
        pytest.skip(f"reference implementation not found at {REFMAP}")
    spec = importlib.util.spec_from_file_location("refmap", REFMAP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _codes_from_distances(dists, bits):
    """A query of all +1 and database codes whose Hamming distance to it is dists[j]."""
    q = np.ones((1, bits), np.int8)
    db = np.ones((len(dists), bits), np.int8)
    for j, d in enumerate(dists):
        db[j, :d] = -1
    return q, db


def _one_query(dists, relevant, bits=4):
    q, db = _codes_from_distances(dists, bits)
    ql = np.array([[1, 0]])
    dl = np.array([[1, 0] if r else [0, 1] for r in relevant])
    return q, db, ql, dl


def _random_case(rng, nq, nd, bits, classes=24, density=0.15, noise=1.0):
    """Codes correlated with labels (a random projection plus noise), as a trained model gives."""
    ql = (rng.random((nq, classes)) < density).astype(np.float32)
    dl = (rng.random((nd, classes)) < density).astype(np.float32)
    proj = rng.standard_normal((classes, bits))
    q = np.where(ql @ proj + noise * rng.standard_normal((nq, bits)) >= 0, 1, -1)
    d = np.where(dl @ proj + noise * rng.standard_normal((nd, bits)) >= 0, 1, -1)
    return q, d, ql, dl


# --- hand-checkable examples -------------------------------------------------------------------

def test_hand_example_distinct_distances():
    # Distances 0,1,2,3 (no ties); relevant at ranks 1 and 3.
    # AP = (1/1 + 2/3) / 2 = 5/6.
    args = _one_query([0, 1, 2, 3], [1, 0, 1, 0])
    assert mean_average_precision(*args) == pytest.approx(5 / 6, abs=1e-15)
    assert mean_average_precision(*args, ties="expected") == pytest.approx(5 / 6, abs=1e-15)


def test_hand_example_ties_by_index_and_expected():
    # Items 0..3 at distances 1,1,0,2; relevant: items 1 and 3.
    # Index ties: order 2, 0, 1, 3 -> relevant at ranks 3 and 4: AP = (1/3 + 2/4)/2 = 5/12.
    # Expected: the tie {0,1} is ordered either way with probability 1/2:
    #   order 2,1,0,3 -> AP = (1/2 + 2/4)/2 = 1/2 ; order 2,0,1,3 -> 5/12 ; mean = 11/24.
    args = _one_query([1, 1, 0, 2], [0, 1, 0, 1])
    assert mean_average_precision(*args) == pytest.approx(5 / 12, abs=1e-15)
    assert mean_average_precision(*args, ties="expected") == pytest.approx(11 / 24, abs=1e-15)


def test_hand_example_all_tied():
    # Five items all at distance 0, relevant at indices 1 and 4.
    # Index ties: ranks 2 and 5 -> AP = (1/2 + 2/5)/2 = 0.45.
    # Expected AP of r=2 relevant among n=5 in random order (closed form per position p):
    #   sum_p (r/n) (1 + (p-1)(r-1)/(n-1)) / p / r = (1/5) sum_p (1 + (p-1)/4)/p
    #   = (1/5)(1 + 1.25/2 + 1.5/3 + 1.75/4 + 2/5) = (1/5)(2.9625) = 0.5925.
    args = _one_query([0] * 5, [0, 1, 0, 0, 1])
    assert mean_average_precision(*args) == pytest.approx(0.45, abs=1e-15)
    assert mean_average_precision(*args, ties="expected") == pytest.approx(0.5925, abs=1e-14)


def test_hand_example_top_k():
    # Distances 0,1,2,3, relevant at ranks 2 and 3.
    # top_k=2: only rank 2 is inside -> AP@2 = (1/2)/1 = 0.5 (normalised by relevant in top 2).
    # top_k=1: nothing relevant inside -> 0. top_k=3: (1/2 + 2/3)/2 = 7/12. top_k=100 = MAP@all.
    args = _one_query([0, 1, 2, 3], [0, 1, 1, 0])
    assert mean_average_precision(*args, top_k=1) == 0.0
    assert mean_average_precision(*args, top_k=2) == pytest.approx(0.5, abs=1e-15)
    assert mean_average_precision(*args, top_k=3) == pytest.approx(7 / 12, abs=1e-15)
    assert mean_average_precision(*args, top_k=100) == pytest.approx(7 / 12, abs=1e-15)


def test_query_without_relevant_counts_as_zero():
    # Query 0: one relevant item at rank 1 (AP 1); query 1 shares no label with anything (AP 0).
    q, db = _codes_from_distances([0, 1], 4)
    q = np.repeat(q, 2, axis=0)
    ql = np.array([[1, 0, 0], [0, 0, 1]])
    dl = np.array([[1, 0, 0], [0, 1, 0]])
    assert mean_average_precision(q, db, ql, dl) == pytest.approx(0.5)
    assert mean_average_precision(q, db, ql, dl, ties="expected") == pytest.approx(0.5)
    res = evaluate_retrieval(q, db, ql, dl)
    assert res["queries_without_relevant"] == 1
    assert res["map_index"] == pytest.approx(0.5)


def test_expected_closed_form_matches_enumeration():
    # Exhaustive check of the per-bucket closed form: average the index-tie AP over every
    # permutation of a small database with ties.
    import itertools
    dists = [1, 0, 1, 1, 2, 1]
    rel = [1, 0, 0, 1, 1, 1]
    aps = []
    for perm in itertools.permutations(range(6)):
        d = [dists[p] for p in perm]
        r = [rel[p] for p in perm]
        aps.append(mean_average_precision(*_one_query(d, r)))
    exact = mean_average_precision(*_one_query(dists, rel), ties="expected")
    assert exact == pytest.approx(np.mean(aps), abs=1e-12)


def test_harmonic_numbers():
    assert np.allclose(harmonic_numbers(4), [0, 1, 1.5, 1 + 1 / 2 + 1 / 3, 25 / 12])


def test_expected_ap_from_histograms_single_bucket():
    # One bucket, n=4, r=4: every order is perfect -> AP 1. n=4, r=0 -> AP 0.
    assert expected_ap(np.array([[4]]), np.array([[4]]))[0] == pytest.approx(1.0)
    assert expected_ap(np.array([[4]]), np.array([[0]]))[0] == 0.0


# --- agreement with the reference --------------------------------------------------------------

@pytest.mark.parametrize("bits", [16, 32, 64])
def test_agrees_with_reference_random(ref, bits):
    rng = np.random.default_rng(bits)
    q, d, ql, dl = _random_case(rng, 60, 700, bits)
    for ties in ("index", "expected"):
        ours = mean_average_precision(q, d, ql, dl, ties=ties)
        theirs = ref.mean_average_precision(q, d, ql, dl, ties=ties)
        assert ours == pytest.approx(theirs, abs=1e-12), ties
    for k in (1, 7, 50, 699, 700, 5000):
        ours = mean_average_precision(q, d, ql, dl, top_k=k)
        assert ours == pytest.approx(ref.mean_average_precision(q, d, ql, dl, top_k=k),
                                     abs=1e-12), k


@pytest.mark.parametrize("bits,classes", [(8, 3), (12, 70), (100, 24), (200, 9), (300, 5)])
def test_agrees_with_reference_odd_widths(ref, bits, classes):
    # Word widths 8/16 bits, several label words (70 classes), several code words (100 bits)
    # and hundreds of distance values per query (200, 300 bits: over 255, so more than one
    # byte) all take other packing and sort-key paths.
    rng = np.random.default_rng(bits + classes)
    q, d, ql, dl = _random_case(rng, 20, 300, bits, classes=classes, density=0.1)
    for ties in ("index", "expected"):
        assert mean_average_precision(q, d, ql, dl, ties=ties) == pytest.approx(
            ref.mean_average_precision(q, d, ql, dl, ties=ties), abs=1e-12)
    assert mean_average_precision(q, d, ql, dl, top_k=30) == pytest.approx(
        ref.mean_average_precision(q, d, ql, dl, top_k=30), abs=1e-12)


def test_agrees_with_reference_large_distances(ref):
    # 200 bits: negated queries put many items at distances above 127, where a signed or
    # doubled 8-bit key would wrap.
    rng = np.random.default_rng(12)
    q = np.where(rng.random((6, 200)) < 0.5, 1, -1)
    owner = rng.integers(0, 6, 400)
    d = q[owner] * np.where(rng.random((400, 200)) < 0.1, -1, 1)
    ql = np.eye(6)[:, :4]  # queries 0..3 have their own class, 4 and 5 share class 0
    ql[4:, 0] = 1
    dl = ql[owner]
    for qq in (q, -q):
        for ties in ("index", "expected"):
            assert mean_average_precision(qq, d, ql, dl, ties=ties) == pytest.approx(
                ref.mean_average_precision(qq, d, ql, dl, ties=ties), abs=1e-12)


def test_agrees_with_reference_heavy_ties_and_collapse(ref):
    rng = np.random.default_rng(3)
    q, d, ql, dl = _random_case(rng, 40, 500, 16, density=0.1)
    # All-tied queries: every database item holds one code (a collapsed model).
    collapsed = np.ones_like(d)
    # Few distinct codes: 4 codes for the whole database -> huge ties.
    few = d[rng.integers(0, 4, size=len(d))]
    for db in (collapsed, few):
        for ties in ("index", "expected"):
            assert mean_average_precision(q, db, ql, dl, ties=ties) == pytest.approx(
                ref.mean_average_precision(q, db, ql, dl, ties=ties), abs=1e-12)
        assert mean_average_precision(q, db, ql, dl, top_k=25) == pytest.approx(
            ref.mean_average_precision(q, db, ql, dl, top_k=25), abs=1e-12)
    # A collapsed model: one bucket of n items with r relevant in random order. With the closed
    # form at N = R = 0: E[AP] = a + (1 - a) H(n) / n, a = (r-1)/(n-1): slightly above the base
    # rate r/n, and 0 for a query with r = 0.
    r = ((ql @ dl.T) > 0).sum(axis=1).astype(float)
    n = len(dl)
    a = (r - 1) / (n - 1)
    expect = np.where(r > 0, a + (1 - a) * harmonic_numbers(n)[n] / n, 0.0)
    assert mean_average_precision(q, collapsed, ql, dl, ties="expected") == pytest.approx(
        expect.mean(), abs=1e-12)


def test_queries_without_relevant_match_reference(ref):
    rng = np.random.default_rng(4)
    q, d, ql, dl = _random_case(rng, 30, 200, 32, density=0.05)
    ql[:10] = 0  # ten queries with no label: nothing is relevant to them
    res = evaluate_retrieval(q, d, ql, dl)
    assert res["queries_without_relevant"] >= 10
    assert res["map_index"] == pytest.approx(ref.mean_average_precision(q, d, ql, dl),
                                             abs=1e-12)
    assert res["map_expected"] == pytest.approx(
        ref.mean_average_precision(q, d, ql, dl, ties="expected"), abs=1e-12)


def test_chunking_does_not_change_results(ref):
    rng = np.random.default_rng(5)
    q, d, ql, dl = _random_case(rng, 37, 400, 32)
    whole = evaluate_retrieval(q, d, ql, dl, top_k=20)
    tiny = evaluate_retrieval(q, d, ql, dl, top_k=20, memory_budget=1)  # one query per chunk
    for key in ("map_index", "map_expected", "map_at_k"):
        assert whole[key] == tiny[key]
    assert np.array_equal(whole["pr_counts"]["tp"], tiny["pr_counts"]["tp"])


def test_threads_do_not_change_results():
    rng = np.random.default_rng(11)
    q, d, ql, dl = _random_case(rng, 23, 300, 16)
    one = evaluate_retrieval(q, d, ql, dl, top_k=9, num_threads=1)
    three = evaluate_retrieval(q, d, ql, dl, top_k=9, num_threads=3, memory_budget=1)
    for key in ("map_index", "map_expected", "map_at_k"):
        assert one[key] == three[key]
    assert np.array_equal(one["precision_at_n"]["precision"], three["precision_at_n"]["precision"])
    assert mean_average_precision(q, d, ql, dl, ties="expected", num_threads=4) == \
        one["map_expected"]


def test_counting_sort_is_a_stable_sort_by_group(monkeypatch):
    """The chunk's one sort (scipy's C COO->CSR pass, or the numpy fallback) keeps database
    order inside each group: group starts and relevance in sorted order equal np.argsort's."""
    from udsph_tf.evaluation import ranking
    rng = np.random.default_rng(3)
    rows, n, nb = 5, 700, 9
    db = ranking.PackedSet(np.where(rng.random((n, nb - 1)) < 0.5, 1, -1),
                           rng.random((n, 3)) < 0.5)
    group = (rng.integers(0, nb, (rows, n)) + np.arange(rows)[:, None] * nb).astype(np.int32)
    rel = rng.random((rows, n)) < 0.4
    order = np.argsort(group.ravel(), kind="stable")
    want_starts = np.concatenate([[0], np.cumsum(np.bincount(group.ravel(),
                                                             minlength=rows * nb))])
    for sorter in (ranking.scipy_coo_tocsr, None):
        if sorter is None:
            monkeypatch.setattr(ranking, "scipy_coo_tocsr", None)
        starts, ranked = ranking.counting_sort(group, rel, rows * nb,
                                                ranking.ChunkBuffers(rows, db))
        assert np.array_equal(starts, want_starts)
        assert np.array_equal(ranked, rel.ravel()[order])


def test_numpy_fallback_sort_gives_the_same_metrics(ref, monkeypatch):
    from udsph_tf.evaluation import ranking
    rng = np.random.default_rng(8)
    q, d, ql, dl = _random_case(rng, 30, 500, 16)
    fast = evaluate_retrieval(q, d, ql, dl, top_k=25)
    monkeypatch.setattr(ranking, "scipy_coo_tocsr", None)
    slow = evaluate_retrieval(q, d, ql, dl, top_k=25)
    for key in ("map_index", "map_expected", "map_at_k"):
        assert fast[key] == slow[key]
    assert slow["map_index"] == pytest.approx(ref.mean_average_precision(q, d, ql, dl),
                                              abs=1e-12)


def test_real_mirflickr_labels_agree_with_reference(ref, mirflickr_dir):
    from scipy.io import loadmat
    labels = loadmat(str(mirflickr_dir / "mirflickr25k-lall.mat"))["LAll"]
    rng = np.random.default_rng(6)
    ql, dl = labels[:100], labels[100:2100]
    proj = rng.standard_normal((labels.shape[1], 32))
    q = np.where(ql @ proj + rng.standard_normal((100, 32)) >= 0, 1, -1)
    d = np.where(dl @ proj + rng.standard_normal((2000, 32)) >= 0, 1, -1)
    for ties in ("index", "expected"):
        assert mean_average_precision(q, d, ql, dl, ties=ties) == pytest.approx(
            ref.mean_average_precision(q, d, ql, dl, ties=ties), abs=1e-12)


# --- curves and counts -------------------------------------------------------------------------

def test_pr_counts_and_curves_by_hand():
    # Distances 0,1,1,2 from a 2-bit query; relevant items 0 and 2.
    # radius 0: retrieve {0}: tp 1 fp 0 fn 1 tn 2.  radius 1: {0,1,2}: tp 2 fp 1 fn 0 tn 1.
    # radius 2: all: tp 2 fp 2 fn 0 tn 0.
    args = _one_query([0, 1, 1, 2], [1, 0, 1, 0], bits=2)
    c = pr_curve_counts(*args)
    assert c["tp"].tolist() == [1, 2, 2] and c["fp"].tolist() == [0, 1, 2]
    assert c["fn"].tolist() == [1, 0, 0] and c["tn"].tolist() == [2, 1, 0]
    assert np.allclose(c["precision"], [1, 2 / 3, 0.5]) and np.allclose(c["recall"], [.5, 1, 1])
    res = evaluate_retrieval(*args, n_values=[1, 2, 3, 4])
    assert np.allclose(res["pr_radius"]["precision"], [1, 2 / 3, 0.5])
    assert np.allclose(res["pr_radius"]["recall"], [0.5, 1, 1])
    # Index-tie order 0,1,2,3 -> precision@1..4 = 1, 1/2, 2/3, 2/4.
    assert np.allclose(res["precision_at_n"]["precision"], [1, 0.5, 2 / 3, 0.5])
    for key in ("tp", "fp", "tn", "fn"):
        assert np.array_equal(res["pr_counts"][key], c[key])


def test_pr_counts_are_consistent_on_random_data():
    rng = np.random.default_rng(7)
    q, d, ql, dl = _random_case(rng, 25, 300, 16)
    c = pr_curve_counts(q, d, ql, dl)
    total = c["tp"] + c["fp"] + c["tn"] + c["fn"]
    assert (total == 25 * 300).all()
    assert (np.diff(c["tp"]) >= 0).all() and (np.diff(c["fp"]) >= 0).all()
    rel = ((ql @ dl.T) > 0).sum()
    assert c["tp"][-1] == rel and c["fn"][-1] == 0 and c["tn"][-1] == 0


def test_precision_at_n_matches_brute_force():
    rng = np.random.default_rng(8)
    q, d, ql, dl = _random_case(rng, 15, 250, 32)
    ns = [1, 5, 50, 250]
    res = evaluate_retrieval(q, d, ql, dl, n_values=ns)
    dist = 0.5 * (32 - q @ d.T)
    rel = (ql @ dl.T) > 0
    order = np.argsort(dist, axis=1, kind="stable")
    srel = np.take_along_axis(rel, order, axis=1)
    expect = [srel[:, :n].mean() for n in ns]
    assert np.allclose(res["precision_at_n"]["precision"], expect, atol=1e-15)


# --- code statistics ---------------------------------------------------------------------------

def test_code_stats_show_a_collapsed_model():
    collapsed = np.tile(np.array([[1, -1, 1, 1]]), (50, 1))
    s = code_stats(collapsed)
    assert s["distinct_codes"] == 1 and s["most_common_fraction"] == 1.0
    assert s["mean_abs_balance"] == 1.0 and s["bit_balance"].tolist() == [1, -1, 1, 1]
    rng = np.random.default_rng(9)
    healthy = code_stats(np.where(rng.random((2000, 32)) < 0.5, 1, -1))
    assert healthy["distinct_codes"] == 2000 and healthy["mean_abs_balance"] < 0.1
    res = evaluate_retrieval(collapsed[:3], collapsed, np.ones((3, 2)), np.ones((50, 2)))
    assert res["db_code_stats"]["distinct_codes"] == 1


def test_code_stats_counts_duplicates():
    codes = np.array([[1, 1], [1, 1], [-1, 1], [1, 1]])
    s = code_stats(codes)
    assert s["distinct_codes"] == 2 and s["most_common_fraction"] == 0.75
    assert np.allclose(s["bit_balance"], [0.5, 1.0])


# --- bad input ---------------------------------------------------------------------------------

def _ok():
    q, db = _codes_from_distances([0, 1, 2], 4)
    return q, db, np.array([[1, 0]]), np.array([[1, 0], [0, 1], [1, 1]])


@pytest.mark.parametrize("mutate,message", [
    (lambda a: (a[0] * 0, *a[1:]), "query_codes: codes must be"),
    (lambda a: (a[0], (a[1] > 0).astype(np.uint8), *a[2:]), "db_codes: codes must be"),
    (lambda a: (a[0], a[1] > 0, *a[2:]), "boolean codes"),
    (lambda a: (a[0].astype(float) * np.nan, *a[1:]), "NaN"),
    (lambda a: (a[0][:, :3], *a[1:]), "bits"),
    (lambda a: (a[0], a[1], a[2][:, :1], a[3]), "classes"),
    (lambda a: (a[0], a[1], a[2], a[3][:2]), "database label rows"),
    (lambda a: (np.repeat(a[0], 2, axis=0), *a[1:]), "query label rows"),
    (lambda a: (a[0][:0], a[1], a[2][:0], a[3]), "empty"),
    (lambda a: (a[0][0], *a[1:]), "2-D"),
    (lambda a: (a[0], a[1], a[2] * 2, a[3]), "0/1 multi-hot"),
    (lambda a: (a[0], a[1], a[2], np.full(a[3].shape, "x")), "numeric"),
])
def test_bad_input_raises_clear_error(mutate, message):
    with pytest.raises(ValueError, match=message):
        mean_average_precision(*mutate(_ok()))


def test_bad_options_raise():
    args = _ok()
    with pytest.raises(ValueError, match="ties must be one of"):
        mean_average_precision(*args, ties="random")
    with pytest.raises(ValueError, match="full ranking only"):
        mean_average_precision(*args, top_k=2, ties="expected")
    for k in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="top_k"):
            mean_average_precision(*args, top_k=k)
    with pytest.raises(ValueError, match="n_values"):
        evaluate_retrieval(*args, n_values=[0, 4])
    with pytest.raises(ValueError, match="num_threads"):
        mean_average_precision(*args, num_threads=0)
    with pytest.raises(ValueError, match="memory_budget"):
        pr_curve_counts(*args, memory_budget=-5)


def test_accepts_any_numeric_code_dtype():
    q, db, ql, dl = _ok()
    values = {mean_average_precision(q.astype(t), db.astype(t), ql.astype(t2), dl.astype(t2))
              for t in (np.int8, np.int64, np.float32, np.float64)
              for t2 in (np.uint8, np.float32, bool)}
    assert len(values) == 1


# --- plots and the import rule -----------------------------------------------------------------

def test_plot_curves_writes_pngs(tmp_path):
    rng = np.random.default_rng(10)
    res = evaluate_retrieval(*_random_case(rng, 10, 120, 16))
    paths = plot_curves(res, str(tmp_path / "curves_i2t"))
    assert [pathlib.Path(p).name for p in paths] == ["curves_i2t_pr.png",
                                                     "curves_i2t_precision_at_n.png"]
    for p in paths:
        assert pathlib.Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="pr_radius"):
        plot_curves({"map_index": 0.5}, str(tmp_path / "x"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plot_curves(res, str(tmp_path / "missing" / "x"))


def test_evaluation_never_imports_tensorflow():
    code = ("import sys, numpy as np, udsph_tf.evaluation as e; "
            "e.evaluate_retrieval(np.ones((2, 8)), np.ones((3, 8)), np.ones((2, 2)), "
            "np.ones((3, 2))); e.plot_curves; "
            "print('tensorflow' in sys.modules or 'keras' in sys.modules)")
    root = pathlib.Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=root, check=True)
    assert out.stdout.strip() == "False", out.stderr
