"""Splits: standard sizes, seeds, disjointness (no query item is ever trained on), files."""

import json

import numpy as np
import pytest

from udsph_tf.config import Config, replace
from udsph_tf.data import (Split, carve_validation, generate_default, load_split_file,
                           make_split, split_from_config)


def _assert_invariants(split, n):
    q, d, t, v = split.query_idx, split.database_idx, split.train_idx, split.val_idx
    assert np.intersect1d(q, d).size == 0
    assert np.union1d(q, d).size == n  # query + database cover every row
    assert np.setdiff1d(t, d).size == 0 and np.setdiff1d(v, d).size == 0
    assert np.intersect1d(t, v).size == 0
    assert np.intersect1d(q, np.union1d(t, v)).size == 0  # training never sees a query


@pytest.mark.parametrize("name,n,q,t", [("mirflickr", 20015, 2000, 10000),
                                         ("nuswide", 195834, 2100, 10500),
                                         ("coco", 122218, 5000, 10000),
                                         ("default", 4000, 500, 2000)])
def test_standard_sizes(name, n, q, t):
    split = make_split(n, name, seed=3)
    v = min(500, round(0.1 * t))
    assert split.sizes() == {"query": q, "database": n - q, "train": t - v, "val": v}
    _assert_invariants(split, n)


def test_seed_is_deterministic_and_recorded():
    a, b, c = make_split(1000, "custom", 7), make_split(1000, "custom", 7), \
        make_split(1000, "custom", 8)
    for key in ("query_idx", "database_idx", "train_idx", "val_idx"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert not np.array_equal(a.query_idx, c.query_idx)
    assert a.seed == 7 and a.to_dict()["seed"] == 7


def test_sizes_overridable():
    split = make_split(4000, "default", 0, num_query=100, num_train=300, num_val=0)
    assert split.sizes() == {"query": 100, "database": 3900, "train": 300, "val": 0}
    split = make_split(4000, "default", 0, num_query=100, num_train=300, num_val=40)
    assert split.sizes()["train"] == 260 and split.sizes()["val"] == 40
    _assert_invariants(split, 4000)
    with pytest.raises(ValueError, match="cannot split 4000 items into 3000 queries and 2000"):
        make_split(4000, "default", 0, num_query=3000, num_train=2000)
    with pytest.raises(ValueError, match="num_val=300 leaves no training items"):
        make_split(4000, "default", 0, num_train=300, num_val=300)


def test_small_dataset_scales_down_with_warning():
    with pytest.warns(UserWarning, match=r"mirflickr: 1000 items .* scaled to 100 queries \+ 500"):
        split = make_split(1000, "mirflickr", 0)
    assert split.sizes()["query"] == 100
    assert split.sizes()["train"] + split.sizes()["val"] == 500
    _assert_invariants(split, 1000)


def test_custom_uses_mirflickr_fractions():
    split = make_split(20015, "custom", 0)
    assert split.sizes()["query"] == 2000
    assert split.sizes()["train"] + split.sizes()["val"] == 10000


def test_dict_round_trip_is_json():
    split = make_split(500, "custom", 4)
    d = json.loads(json.dumps(split.to_dict()))
    back = Split.from_dict(d)
    for key in ("query_idx", "database_idx", "train_idx", "val_idx"):
        np.testing.assert_array_equal(getattr(back, key), getattr(split, key))
    assert back.seed == 4 and back.source == "seeded"
    with pytest.raises(ValueError, match=r"missing keys \['train_idx'\]"):
        Split.from_dict({"query_idx": [1], "database_idx": [2], "seed": 0})


def test_check_rejects_leaks():
    with pytest.raises(ValueError, match="query_idx and database_idx share 1 rows"):
        Split([0, 1], [1, 2, 3], [2], [], 0).check(4)
    with pytest.raises(ValueError, match="1 rows of train_idx are not in database_idx"):
        Split([0], [1, 2, 3], [0, 2], [], 0).check(4)
    with pytest.raises(ValueError, match="train_idx and val_idx share 1 rows"):
        Split([0], [1, 2, 3], [1, 2], [2], 0).check(4)
    with pytest.raises(ValueError, match="holds index 9 but the dataset has only 4 rows"):
        Split([0], [1, 2, 9], [1], [], 0).check(4)
    with pytest.raises(ValueError, match="duplicate"):
        Split([0], [1, 1, 2], [1], [], 0).check(4)


def test_carve_validation():
    train, val = carve_validation(np.arange(100, 200), -1, seed=1)
    assert val.size == 10 and train.size == 90 and np.intersect1d(train, val).size == 0
    train, val = carve_validation(np.arange(10000), -1, seed=1)
    assert val.size == 500  # capped


def test_split_file_round_trip(tmp_path):
    split = make_split(300, "custom", 5)
    path = tmp_path / "s.npz"
    np.savez(path, **{k: v for k, v in split.to_dict().items() if k != "source"})
    back = load_split_file(str(path), 300)
    np.testing.assert_array_equal(back.val_idx, split.val_idx)
    np.testing.assert_array_equal(back.train_idx, split.train_idx)
    assert back.seed == 5 and back.source.endswith("s.npz")


def test_split_file_without_database_or_val(tmp_path):
    path = tmp_path / "s.npz"
    np.savez(path, query_idx=np.arange(10), train_idx=np.arange(10, 60))
    split = load_split_file(str(path), 100, seed=2)
    assert split.sizes() == {"query": 10, "database": 90, "train": 45, "val": 5}
    _assert_invariants(split, 100)
    assert load_split_file(str(path), 100, seed=2, num_val=0).sizes()["train"] == 50


def test_split_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"split file.*none\.npz"):
        load_split_file(str(tmp_path / "none.npz"), 10)
    np.savez(tmp_path / "a.npz", query=np.arange(3))
    with pytest.raises(ValueError, match=r"a\.npz: no key 'query_idx'; the file holds \['query'\]"):
        load_split_file(str(tmp_path / "a.npz"), 10)
    np.savez(tmp_path / "b.npz", query_idx=np.arange(3), train_idx=np.arange(2, 8))
    with pytest.raises(ValueError, match=r"b\.npz: .*train_idx shares rows with query_idx|"
                                         r"b\.npz: 1 rows of train_idx are not in database_idx"):
        load_split_file(str(tmp_path / "b.npz"), 10)
    np.savez(tmp_path / "c.npz", query_idx=np.arange(3), train_idx=np.arange(3, 8))
    with pytest.raises(ValueError, match=r"c\.npz: query_idx holds index 2 but .* only 2 rows"):
        load_split_file(str(tmp_path / "c.npz"), 2)
    np.savez(tmp_path / "d.npz", query_idx=np.arange(3.0), train_idx=np.arange(3, 8))
    with pytest.raises(ValueError, match=r"d\.npz \(key 'query_idx'\): indices must be integers"):
        load_split_file(str(tmp_path / "d.npz"), 10)


def test_split_from_config():
    data = generate_default(num_items=600)
    cfg = replace(Config(), split_seed=11)
    with pytest.warns(UserWarning, match="scaled to 75 queries"):
        split = split_from_config(cfg, data)
    assert split.seed == 11
    _assert_invariants(split, 600)
    cfg = replace(cfg, num_query=50, num_train=200, num_val=20)
    assert split_from_config(cfg, data).sizes() == {"query": 50, "database": 550, "train": 180,
                                                    "val": 20}


def test_split_from_config_prefers_fixed_split_and_split_file(tmp_path):
    data = generate_default(num_items=200)
    data.default_split = make_split(200, "custom", 99, num_query=20, num_train=100)
    assert split_from_config(Config(), data).seed == 99
    # num_val re-carves the validation set inside the fixed split's training side.
    resized = split_from_config(replace(Config(), num_val=0), data)
    assert resized.sizes()["train"] == 100 and resized.sizes()["query"] == 20
    # Explicit sizes ask for a seeded split instead.
    with pytest.warns(UserWarning, match="scaled"):  # the 2000 standard training items
        assert split_from_config(replace(Config(), num_query=30), data).sizes()["query"] == 30
    np.savez(tmp_path / "s.npz", query_idx=np.arange(5), train_idx=np.arange(5, 50), seed=4)
    from_file = split_from_config(replace(Config(), split_file=str(tmp_path / "s.npz")), data)
    assert from_file.sizes()["query"] == 5 and from_file.seed == 4
