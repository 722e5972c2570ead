"""The linear floor every trained model must beat: ridge regression to the labels, then LSH.

Each modality is standardised on the training rows, regressed to the centred label matrix by
ridge regression with an intercept (alpha chosen from _ALPHAS by the mean squared leave-one-out
error on the training rows only: scikit-learn RidgeCV's definition and choice), and
its label-space prediction is hashed by the sign of one shared random Gaussian projection
(centred on the training predictions, so bits are balanced). Both modalities land in the same
label space, so the codes are comparable across modalities. Fitted on the same training rows
and evaluated on the same queries and database as the model (numpy only).
"""

import numpy as np

from udsph_tf.codes import to_codes

FLOOR_METHOD = ("ridge regression of each standardised modality to the labels (alpha by "
                "leave-one-out on the training rows, as RidgeCV), sign of a shared random "
                "projection of the centred predictions")
_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)


def _standardiser(x):
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 1e-8, std, 1.0)  # constant columns stay constant (zero) after
    return lambda z: (np.asarray(z, np.float64).reshape(len(z), -1) - mean) / std


def ridge_loo(x, y, alphas=_ALPHAS, chunk=2048):
    """(alpha, coef (d, t), intercept (t,)) of ridge regression of y (n, t) on x (n, d) with an
    intercept, alpha the first of `alphas` with the least mean squared leave-one-out error over
    all rows and targets: what sklearn's RidgeCV(alphas).fit(x, y) chooses and fits, float64.

    RidgeCV (gcv_mode "cov" when n > d) spends, per alpha, a d x d x d product and an
    n x d x d one (diag of X H^-1 X'). Here one eigendecomposition serves every alpha: with
    X'X = V diag(l) V' (or XX' = U diag(l) U' when n <= d) and P = X V, the hat diagonal
    diag(X (X'X + a I)^-1 X') = (P*P) @ 1/(l + a) for all alphas in one product, and the
    fitted values are P diag(1/(l + a)) P'y. LOO residuals: e = (y - fitted) / (1 - h - (1 - h1)/n)
    with h1 = X H^-1 X' 1: the intercept's share of each row's leverage (Rifkin & Lippert 2007;
    sklearn's _RidgeGCV notes). x and y are centred here (the intercept), as RidgeCV does.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    x_mean, y_mean = x.mean(0), y.mean(0)
    x = x - x_mean
    y = y - y_mean
    n, d = x.shape
    a = np.asarray(alphas, np.float64)
    ones = np.ones(n)
    if n > d:
        evals, v = np.linalg.eigh(x.T @ x)
        p = x @ v  # the rows in the eigenbasis
        del x  # 8 n d bytes that the rest never reads
        inv = 1.0 / (evals[:, None] + a[None, :])  # (d, alphas)
        hat = np.concatenate([np.square(p[i:i + chunk]) @ inv for i in range(0, n, chunk)])
        pty, pt1 = p.T @ y, p.T @ ones
        errors = []
        for k in range(len(a)):
            fitted = p @ (inv[:, k, None] * pty)
            d_k = 1.0 - hat[:, k] - (1.0 - p @ (inv[:, k] * pt1)) / n
            errors.append(np.mean(np.square((y - fitted) / d_k[:, None])))
        best = int(np.argmin(errors))  # first of equal errors, as RidgeCV's strict ">"
        coef = v @ (inv[:, best, None] * pty)
    else:
        evals, u = np.linalg.eigh(x @ x.T)
        inv = 1.0 / (evals[:, None] + a[None, :])  # (n, alphas)
        hat = np.square(u) @ inv  # diag((XX' + a I)^-1)
        uty, ut1 = u.T @ y, u.T @ ones
        errors, duals = [], []
        for k in range(len(a)):
            c = u @ (inv[:, k, None] * uty)  # (XX' + a I)^-1 y
            d_k = hat[:, k] - (u @ (inv[:, k] * ut1)) / n
            errors.append(np.mean(np.square(c / d_k[:, None])))
            duals.append(c)
        best = int(np.argmin(errors))
        coef = x.T @ duals[best]
    return float(a[best]), coef, y_mean - x_mean @ coef


def _fit_modality(x_train, labels_train, ridge):
    scale = _standardiser(x_train)
    target = labels_train - labels_train.mean(0)
    x = scale(x_train)
    _, coef, intercept = ridge(x, target)
    offset = (x @ coef + intercept).mean(0)
    return lambda z: scale(z) @ coef + intercept - offset


def linear_floor_codes(train, query, database, bits, seed=0, ridge=ridge_loo):
    """+-1 codes (query image, query text, database image, database text) of the floor.

    train/query/database: dicts with "images", "tags" (and "labels" for train) numpy arrays.
    ridge: (x, y) -> (alpha, coef, intercept), ridge_loo's contract (tests and
    bench/floor_cost.py pass scikit-learn's RidgeCV in its place).
    """
    labels = np.asarray(train["labels"], np.float64)
    projection = np.random.default_rng([int(seed), 7]).standard_normal((labels.shape[1], bits))
    codes = []
    for side in ("images", "tags"):
        predict = _fit_modality(train[side], labels, ridge)
        for part in (query, database):
            codes.append(to_codes(predict(part[side]) @ projection))
    qv, dv, qt, dt = codes
    return qv, qt, dv, dt


def linear_floor(train, query, database, bits, seed=0):
    """{"map_i2t", "map_t2i", "method"} of the floor (index-ordered ties, as the model's MAP)."""
    from udsph_tf.evaluation.metrics import mean_average_precision
    qv, qt, dv, dt = linear_floor_codes(train, query, database, bits, seed)
    ql, dl = query["labels"], database["labels"]
    return {"map_i2t": float(mean_average_precision(qv, dt, ql, dl)),
            "map_t2i": float(mean_average_precision(qt, dv, ql, dl)),
            "method": FLOOR_METHOD}
