"""bench/classifier_ceiling.py's ranking rule: P(a query shares a label with a database item)."""

import importlib.util
import pathlib

import numpy as np

_SPEC = importlib.util.spec_from_file_location(
    "classifier_ceiling", pathlib.Path(__file__).resolve().parents[1] / "bench" /
    "classifier_ceiling.py")
ceiling = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(ceiling)


def test_share_probability_is_the_class_probability_on_single_labels():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    db = np.eye(3, dtype=np.int64)[[2, 0, 1]]
    np.testing.assert_allclose(ceiling.share_probability(probs, db),
                               [[0.1, 0.7, 0.2], [0.8, 0.1, 0.1]])


def test_share_probability_of_a_label_set_is_one_minus_missing_all():
    probs = np.array([[0.5, 0.5, 0.0]])
    db = np.array([[1, 1, 0], [0, 0, 1]])
    np.testing.assert_allclose(ceiling.share_probability(probs, db), [[0.75, 0.0]])


def test_ranking_map_is_one_for_a_perfect_ranking_and_lower_when_reversed():
    labels_q = np.array([[1, 0]])
    labels_db = np.array([[1, 0], [0, 1], [1, 0]])
    assert ceiling.ranking_map(np.array([[0.9, 0.1, 0.8]]), labels_q, labels_db) == 1.0
    reversed_map = ceiling.ranking_map(np.array([[0.1, 0.9, 0.2]]), labels_q, labels_db)
    assert reversed_map == (1 / 2 + 2 / 3) / 2
