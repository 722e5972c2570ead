"""Seeded query/database/train/validation splits, split files, and the standard sizes."""

import os
import warnings

import numpy as np

from udsph_tf.data import validation as V
from udsph_tf.data.readers import read_npz
from udsph_tf.data.types import Split
from udsph_tf.errors import ConfigError, DataError

# (queries, training items, full dataset size) of the standard protocols (design.md section 2).
STANDARD_SIZES = {
    "mirflickr": (2000, 10000, 20015),
    "nuswide": (2100, 10500, 195834),
    "coco": (5000, 10000, 122218),
    "mirflickr730": (100, 500, 730),
    "default": (500, 2000, 4000),
    # Generated families (udsph_tf/data/synthetic.py). synthetic_single trains on the whole
    # database, as small single-label benchmarks do (e.g. 693 queries / 2,173 pairs).
    "synthetic_single": (693, 2173, 2866),
    "synthetic_dense": (500, 2000, 4000),
}
# Anything else (custom): the MIRFlickr fractions, so a 20k custom set gets the familiar sizes.
_CUSTOM_FRACTIONS = (2000 / 20015, 10000 / 20015)
MAX_VAL = 500


def standard_sizes(dataset_name: str, num_items: int):
    """(num_query, num_train) for this dataset, scaled down if the dataset is too small."""
    if dataset_name in STANDARD_SIZES:
        q, t, full = STANDARD_SIZES[dataset_name]
    else:
        q = int(round(_CUSTOM_FRACTIONS[0] * num_items))
        t = int(round(_CUSTOM_FRACTIONS[1] * num_items))
        return max(1, q), max(1, t)
    if q + t <= num_items:
        return q, t
    # Keep each part's share of the full dataset, so a subset looks like the standard protocol.
    scale = num_items / full
    q2, t2 = max(1, int(round(q * scale))), max(1, int(round(t * scale)))
    warnings.warn(f"{dataset_name}: {num_items} items cannot hold the standard {q} queries + "
                  f"{t} training items; scaled to {q2} queries + {t2} training items")
    return q2, t2


def default_num_val(num_train: int) -> int:
    return min(MAX_VAL, int(round(0.1 * num_train)))


def carve_validation(pool: np.ndarray, num_val: int, seed: int):
    """(train, val): `num_val` items of `pool` set aside for model selection, the rest train."""
    pool = np.sort(np.asarray(pool, dtype=np.int64))
    if num_val < 0:
        num_val = default_num_val(pool.size)
    if num_val >= pool.size and pool.size:
        raise ConfigError(f"--num_val={num_val} leaves no training items out of {pool.size}")
    # An independent stream, so the validation draw never shifts the query/train draw.
    rng = np.random.default_rng([int(seed), 1])
    chosen = rng.permutation(pool.size)[:num_val]
    mask = np.zeros(pool.size, bool)
    mask[chosen] = True
    return pool[~mask], pool[mask]


def make_split(num_items: int, dataset_name: str, seed: int, num_query: int = -1,
               num_train: int = -1, num_val: int = -1) -> Split:
    """Seeded split: queries, the rest as database, training items from the database, and a
    validation set carved from those training items (excluded from training).

    -1 sizes mean the dataset's standard numbers (scaled down with a warning for small data).
    """
    if num_items < 3:
        raise DataError(f"{dataset_name}: a split needs at least 3 items, got {num_items}")
    std_q, std_t = standard_sizes(dataset_name, num_items) \
        if min(num_query, num_train) < 0 else (num_query, num_train)
    q = std_q if num_query < 0 else int(num_query)
    t = std_t if num_train < 0 else int(num_train)
    if num_train < 0 and q + t > num_items:
        t = num_items - q  # an explicit large query set leaves the rest to training
    if q < 1 or t < 1 or q + t > num_items:
        raise ConfigError(f"{dataset_name}: cannot split {num_items} items into {q} queries "
                          f"and {t} training items (--num_query + --num_train must be <= "
                          f"{num_items})")
    perm = np.random.default_rng(int(seed)).permutation(num_items)
    train, val = carve_validation(perm[q:q + t], num_val, seed)
    return Split(query_idx=np.sort(perm[:q]), database_idx=np.sort(perm[q:]),
                 train_idx=train, val_idx=val, seed=seed).check(num_items)


def load_split_file(path, num_items: int, *, seed: int = 0, num_val: int = -1) -> Split:
    """A fixed split from an .npz with query_idx / database_idx / train_idx (and optionally
    val_idx, seed). Without val_idx the validation set is carved from train_idx.

    database_idx may be omitted (then: every non-query row). The file's `seed` wins over `seed`.
    """
    V.require_file(path, "split file (--split_file)")
    arrays = read_npz(path)  # a damaged or foreign file is named there
    for key in ("query_idx", "train_idx"):
        if key not in arrays:
            raise V.missing_key(path, key, list(arrays))
    for key in ("query_idx", "database_idx", "train_idx", "val_idx"):
        if key in arrays and not np.issubdtype(arrays[key].dtype, np.integer):
            raise DataError(f"{V.where(path, key)}: indices must be integers, "
                            f"got dtype {arrays[key].dtype}")
    query = arrays["query_idx"].astype(np.int64).reshape(-1)
    if "database_idx" in arrays:
        database = arrays["database_idx"].astype(np.int64).reshape(-1)
    else:
        database = np.setdiff1d(np.arange(num_items), query)
    if "seed" in arrays:
        seed = int(arrays["seed"])
    if "val_idx" in arrays:
        train = arrays["train_idx"].astype(np.int64).reshape(-1)
        val = arrays["val_idx"].astype(np.int64).reshape(-1)
        if num_val >= 0 and num_val != val.size:
            train, val = carve_validation(np.union1d(train, val), num_val, seed)
    else:
        train, val = carve_validation(arrays["train_idx"].reshape(-1), num_val, seed)
    return Split(query_idx=np.sort(query), database_idx=np.sort(database), train_idx=train,
                 val_idx=val, seed=seed, source=os.path.abspath(path)).check(num_items, str(path))


def with_num_val(split: Split, num_val: int) -> Split:
    """The same split with the validation set re-carved from train+val at another size."""
    train, val = carve_validation(np.union1d(split.train_idx, split.val_idx), num_val,
                                  split.seed)
    return Split(query_idx=split.query_idx, database_idx=split.database_idx, train_idx=train,
                 val_idx=val, seed=split.seed, source=split.source)


def split_from_config(config, data) -> Split:
    """--split_file if given; else the dataset's fixed split (mirflickr730) unless sizes are
    given; else a split seeded by --split_seed."""
    n = data.num_items
    if config.split_file:
        return load_split_file(config.split_file, n, seed=config.split_seed,
                               num_val=config.num_val)
    sizes_given = config.num_query >= 0 or config.num_train >= 0
    if data.default_split is not None and not sizes_given:
        split = data.default_split.check(n, f"{data.name} default split")
        return split if config.num_val < 0 else with_num_val(split, config.num_val)
    return make_split(n, data.name, config.split_seed, config.num_query, config.num_train,
                      config.num_val)


def data_and_split(config, data=None, split=None):
    """The run's data and split: a given one is kept (tests, tools), a missing one is read or
    made from the config (load_dataset_from_config, split_from_config)."""
    from udsph_tf.data.readers import load_dataset_from_config
    if data is None:
        data = load_dataset_from_config(config)
    if split is None:
        split = split_from_config(config, data)
    return data, split
