"""The linear floor every trained model must beat: ridge regression to the labels, then LSH.

Each modality is standardised on the training rows, regressed to the centred label matrix by
ridge regression (alpha chosen by leave-one-out cross-validation on the training rows only), and
its label-space prediction is hashed by the sign of one shared random Gaussian projection
(centred on the training predictions, so bits are balanced). Both modalities land in the same
label space, so the codes are comparable across modalities. Fitted on the same training rows
and evaluated on the same queries and database as the model (numpy + scikit-learn only).
"""

import numpy as np

from udsph_tf.codes import to_codes

FLOOR_METHOD = ("ridge regression of each standardised modality to the labels (RidgeCV on the "
                "training rows), sign of a shared random projection of the centred predictions")
_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)


def _standardiser(x):
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 1e-8, std, 1.0)  # constant columns stay constant (zero) after
    return lambda z: (np.asarray(z, np.float64).reshape(len(z), -1) - mean) / std


def _fit_modality(x_train, labels_train):
    from sklearn.linear_model import RidgeCV
    scale = _standardiser(x_train)
    target = labels_train - labels_train.mean(0)
    model = RidgeCV(alphas=_ALPHAS).fit(scale(x_train), target)
    offset = model.predict(scale(x_train)).mean(0)
    return lambda z: model.predict(scale(z)) - offset


def linear_floor_codes(train, query, database, bits, seed=0):
    """+-1 codes (query image, query text, database image, database text) of the floor.

    train/query/database: dicts with "images", "tags" (and "labels" for train) numpy arrays.
    """
    labels = np.asarray(train["labels"], np.float64)
    projection = np.random.default_rng([int(seed), 7]).standard_normal((labels.shape[1], bits))
    codes = []
    for side in ("images", "tags"):
        predict = _fit_modality(train[side], labels)
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
