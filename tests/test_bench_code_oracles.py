"""bench/code_oracles.py's Hamming MAP over a subset of the database rows."""

import importlib.util
import pathlib

import numpy as np

_SPEC = importlib.util.spec_from_file_location(
    "code_oracles", pathlib.Path(__file__).resolve().parents[1] / "bench" / "code_oracles.py")
oracles = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(oracles)


def test_a_subset_is_ranked_alone_and_an_empty_one_is_skipped():
    query = np.array([[1.0, 1.0]])
    database = np.array([[-1.0, -1.0], [1.0, 1.0], [0.5, -0.5]])
    ql = np.array([[1, 0]])
    dl = np.array([[1, 0], [0, 1], [1, 0]])
    # All rows: the nearest item (row 1) is irrelevant, so precision at the 2 relevant ones
    # (ranks 2 and 3: row 2 at distance 1, row 0 at 2) gives (1/2 + 2/3) / 2.
    np.testing.assert_allclose(oracles.hamming_map(query, database, ql, dl), (0.5 + 2 / 3) / 2)
    # Rows 0 and 2 only: both relevant.
    np.testing.assert_allclose(
        oracles.hamming_map(query, database, ql, dl, np.array([True, False, True])), 1.0)
    # A database that is wholly the training set has no other rows: no figure, no error.
    assert oracles.hamming_map(query, database, ql, dl, np.zeros(3, bool)) is None
