"""bench/epoch_pair_probe.py's scoring: every (image epoch, text epoch) pair, and the rules."""

import importlib.util
import pathlib

import numpy as np

from udsph_tf.evaluation.metrics import mean_average_precision

_SPEC = importlib.util.spec_from_file_location(
    "epoch_pair_probe",
    pathlib.Path(__file__).resolve().parents[1] / "bench" / "epoch_pair_probe.py")
probe = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(probe)

RULE = "one epoch for both (the run's rule)"
PER_NETWORK = "each network its own epoch (best val)"


def test_the_per_network_rule_finds_the_pair_the_one_epoch_rule_cannot():
    rng = np.random.default_rng(0)
    labels = {k: np.eye(4)[rng.integers(0, 4, n)]
              for k, n in (("val", 40), ("rest", 120), ("query", 40), ("database", 160))}
    class_codes = np.sign(rng.normal(size=(4, 16)))  # the code space both networks share

    def codes(rows, redrawn):
        """Each row its class's code, a fraction `redrawn` of rows a random code instead."""
        out = class_codes[rows.argmax(1)].copy()
        bad = rng.random(len(out)) < redrawn
        out[bad] = np.sign(rng.normal(size=(int(bad.sum()), 16)))
        return out

    # ImgNet is good at epoch 2 only, TxtNet at epoch 1 only: no single epoch has both.
    img = {e: {k: codes(v, r) for k, v in labels.items()} for e, r in ((1, 1.0), (2, 0.1))}
    txt = {e: {k: codes(v, r) for k, v in labels.items()} for e, r in ((1, 0.1), (2, 1.0))}
    scores = probe.pair_scores(img, txt, labels, mean_average_precision)
    assert set(scores) == {(1, 1), (1, 2), (2, 1), (2, 2)}
    rows = dict(probe.selections(scores))
    assert rows[RULE] in {(1, 1), (2, 2)}
    assert rows[PER_NETWORK] == (2, 1)
    assert scores[(2, 1)][0] > scores[rows[RULE]][0] + 0.2
    assert scores[(2, 1)][1] > scores[rows[RULE]][1] + 0.2  # the test MAP follows
