"""The linear floor's ridge (one eigendecomposition for every alpha) against scikit-learn's
RidgeCV: the same alpha, coefficients and predictions, and the same floor codes and MAP."""

import numpy as np
import pytest
from sklearn.linear_model import RidgeCV

from udsph_tf.evaluation import floor
from udsph_tf.evaluation.metrics import mean_average_precision


def _regression(n, d, t, noise, seed):
    """Labels-like targets from a few informative columns plus noise; one constant column."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) * rng.uniform(0.2, 3.0, d)
    x[:, 0] = 4.0  # standardised to zero: a zero eigenvalue on both sides
    w = rng.standard_normal((d, t)) * (rng.random((d, 1)) < 0.3)
    y = x @ w + noise * rng.standard_normal((n, t))
    return x, y, rng.standard_normal((25, d)) * rng.uniform(0.2, 3.0, d)


# n > d (X'X), n < d and n == d (XX'); noise from none to swamping, so several alphas win.
SHAPES = [(120, 30, 5, 0.1), (120, 30, 5, 30.0), (300, 64, 24, 3.0), (40, 90, 4, 0.5),
          (40, 90, 4, 50.0), (64, 64, 3, 5.0), (25, 200, 24, 1.0)]


@pytest.mark.parametrize("n,d,t,noise", SHAPES)
def test_ridge_loo_matches_sklearn_ridgecv(n, d, t, noise):
    x, y, z = _regression(n, d, t, noise, seed=n + d)
    ref = RidgeCV(alphas=floor._ALPHAS).fit(x, y)
    alpha, coef, intercept = floor.ridge_loo(x, y)
    assert alpha == ref.alpha_
    np.testing.assert_allclose(coef, ref.coef_.T, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(z @ coef + intercept, ref.predict(z), rtol=1e-7, atol=1e-8)


def test_the_shapes_choose_different_alphas():
    """Otherwise the test above would not show that the LOO choice is the same."""
    chosen = {RidgeCV(alphas=floor._ALPHAS).fit(*_regression(n, d, t, s, n + d)[:2]).alpha_
              for n, d, t, s in SHAPES}
    assert len(chosen) >= 3, chosen


def _sklearn_ridge(x, y):
    """The floor's ridge before ridge_loo: RidgeCV (what the floor's predictions were)."""
    model = RidgeCV(alphas=floor._ALPHAS).fit(x, y)
    return model.alpha_, model.coef_.T, model.intercept_


@pytest.mark.parametrize("n_train,image_dim", [(300, 40), (120, 160)])
def test_floor_codes_and_map_equal_the_sklearn_floor(n_train, image_dim):
    rng = np.random.default_rng(n_train)
    n, c = n_train + 150, 6
    labels = (rng.random((n, c)) < 0.3).astype(np.float32)
    images = np.maximum(labels @ rng.standard_normal((c, image_dim))
                        + rng.standard_normal((n, image_dim)), 0).astype(np.float32)
    tags = (rng.random((n, 70)) < 0.05 + 0.3 * (labels @ rng.random((c, 70)) > 1)
            ).astype(np.float32)

    def part(rows):
        return {"images": images[rows], "tags": tags[rows], "labels": labels[rows]}
    train, query, database = part(slice(0, n_train)), part(slice(n_train, n)), part(slice(0, n))
    new = floor.linear_floor_codes(train, query, database, bits=16, seed=3)
    old = floor.linear_floor_codes(train, query, database, bits=16, seed=3,
                                   ridge=_sklearn_ridge)
    for a, b in zip(new, old):
        np.testing.assert_array_equal(a, b)
    qv, qt, dv, dt = old
    result = floor.linear_floor(train, query, database, bits=16, seed=3)
    assert result["map_i2t"] == mean_average_precision(qv, dt, query["labels"],
                                                       database["labels"])
    assert result["map_t2i"] == mean_average_precision(qt, dv, query["labels"],
                                                       database["labels"])
