"""Bad input: each error names the file, the key and the problem."""

import numpy as np
import pytest

from udsph_tf.data import load_dataset, read_array
from udsph_tf.data.writers import write_mat73, write_mat_v5


def _release(folder, *, n=30, tag_dim=1386, num_labels=24, labels=None, tags=None,
             images=None):
    rng = np.random.default_rng(0)
    if labels is None:
        labels = (rng.random((n, num_labels)) < 0.3).astype(np.float64)
        labels[:, 0] = 1
    if tags is None:
        tags = (rng.random((n, tag_dim)) < 0.02).astype(np.float64)
    if images is None:
        images = rng.standard_normal((n, 8))
    write_mat_v5(str(folder / "mirflickr25k-lall.mat"), {"LAll": labels})
    write_mat_v5(str(folder / "mirflickr25k-yall.mat"), {"YAll": tags})
    np.save(folder / "feats.npy", images)
    return str(folder)


def _load(folder, **kw):
    return load_dataset("mirflickr", folder, image_file="feats.npy", **kw)


def test_valid_release_loads(tmp_path):
    assert _load(_release(tmp_path)).num_items == 30


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.npy"):
        read_array(str(tmp_path / "nope.npy"))
    folder = _release(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"labels.*absent\.mat"):
        _load(folder, label_file="absent.mat")
    with pytest.raises(FileNotFoundError, match=r"no labels file found.*mirflickr25k-lall\.mat"):
        (tmp_path / "empty").mkdir()
        load_dataset("mirflickr", str(tmp_path / "empty"), image_file="x.npy")


def test_missing_data_dir_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_dataset("nuswide", str(tmp_path / "nowhere"), image_file="x.npy",
                     tag_file="t.npy", label_file="l.npy")


@pytest.mark.parametrize("fmt", ["mat5", "mat73", "npz", "h5"])
def test_missing_key_lists_existing_keys(tmp_path, fmt):
    path = str(tmp_path / f"d.{'mat' if fmt.startswith('mat') else fmt}")
    arrays = {"labels_x": np.ones((3, 2)), "other": np.zeros((3, 1))}
    if fmt == "mat5":
        write_mat_v5(path, arrays)
    elif fmt == "mat73":
        write_mat73(path, arrays)
    elif fmt == "npz":
        np.savez(path, **arrays)
    else:
        import h5py
        with h5py.File(path, "w") as f:
            for k, v in arrays.items():
                f[k] = v
    with pytest.raises(ValueError) as err:
        read_array(path, "LAll")
    msg = str(err.value)
    assert path in msg and "'LAll'" in msg and "'labels_x'" in msg and "'other'" in msg


def test_row_counts_disagree(tmp_path):
    folder = _release(tmp_path)
    np.save(tmp_path / "feats.npy", np.zeros((29, 8)))
    with pytest.raises(ValueError) as err:
        _load(folder)
    msg = str(err.value)
    assert "row counts disagree" in msg and "29 rows in" in msg and "feats.npy" in msg
    assert "30 rows in" in msg and "mirflickr25k-lall.mat (key 'LAll')" in msg


def test_labels_not_binary(tmp_path):
    labels = np.ones((30, 24))
    labels[4, 3] = 2
    labels[5, 1] = -1
    folder = _release(tmp_path, labels=labels)
    with pytest.raises(ValueError, match=r"lall\.mat \(key 'LAll'\): labels must be 0/1, found "
                                         r"2 other values"):
        _load(folder)


def test_items_without_labels_are_counted_and_located(tmp_path):
    labels = np.ones((30, 24))
    labels[[3, 17, 20]] = 0
    folder = _release(tmp_path, labels=labels)
    with pytest.raises(ValueError, match=r"lall\.mat \(key 'LAll'\): 3 of 30 items have no label "
                                         r"\(first rows: \[3, 17, 20\]\)"):
        _load(folder)


def test_nan_in_features_and_inf_in_tags(tmp_path):
    images = np.zeros((30, 8))
    images[7, 2] = np.nan
    folder = _release(tmp_path, images=images)
    with pytest.raises(ValueError, match=r"feats\.npy: 1 NaN/inf values in 1 rows "
                                         r"\(first rows: \[7\]\)"):
        _load(folder)
    tags = np.zeros((30, 1386))
    tags[2, 5] = np.inf
    folder = _release(tmp_path, tags=tags)
    with pytest.raises(ValueError, match=r"yall\.mat \(key 'YAll'\): 1 NaN/inf"):
        _load(folder)


def test_negative_text_loads_and_the_bow_front_end_refuses_it(tmp_path):
    # Real-valued text (z-scored topics, sentence embeddings) is legal data; only the
    # bag-of-words front-end needs non-negative counts, and it says so.
    from udsph_tf.config import Config, replace
    from udsph_tf.training.task import input_spec_for
    tags = np.zeros((30, 1386))
    tags[1, 1] = -1
    data = _load(_release(tmp_path, tags=tags))
    assert data.tags.min() == -1
    assert input_spec_for(Config(), data)["text_encoder"] == "dense"
    with pytest.raises(ValueError, match=r"--text_encoder=bow needs a non-negative bag of "
                                         r"words, the text has 1 negative entries"):
        input_spec_for(replace(Config(), text_encoder="bow"), data)


def test_wrong_tag_dimension_for_known_datasets(tmp_path):
    with pytest.raises(ValueError, match=r"yall\.mat \(key 'YAll'\): mirflickr tags should be "
                                         r"1386-d, got 1000"):
        _load(_release(tmp_path, tag_dim=1000))
    # NUS-WIDE expects 1000-d tags and 21 labels.
    rng = np.random.default_rng(0)
    np.save(tmp_path / "l.npy", np.eye(21)[rng.integers(0, 21, 10)])
    np.save(tmp_path / "t.npy", np.zeros((10, 1386)))
    np.save(tmp_path / "i.npy", np.zeros((10, 4)))
    with pytest.raises(ValueError, match=r"t\.npy: nuswide tags should be 1000-d, got 1386"):
        load_dataset("nuswide", str(tmp_path), image_file="i.npy", tag_file="t.npy",
                     label_file="l.npy")


@pytest.mark.parametrize("name,wrong,want", [("mirflickr", 21, 24), ("nuswide", 24, 21),
                                              ("coco", 24, 80)])
def test_wrong_label_dimension(tmp_path, name, wrong, want):
    tag_dim = {"mirflickr": 1386, "nuswide": 1000, "coco": 300}[name]
    np.save(tmp_path / "l.npy", np.ones((10, wrong)))
    np.save(tmp_path / "t.npy", np.zeros((10, tag_dim)))
    np.save(tmp_path / "i.npy", np.zeros((10, 4)))
    with pytest.raises(ValueError, match=rf"l\.npy: {name} has {want} labels, got {wrong}"):
        load_dataset(name, str(tmp_path), image_file="i.npy", tag_file="t.npy",
                     label_file="l.npy")


def test_non_numeric_dtype(tmp_path):
    np.save(tmp_path / "strs.npy", np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(ValueError, match=r"strs\.npy: expected a numeric array, got dtype <U1"):
        read_array(str(tmp_path / "strs.npy"))
    folder = _release(tmp_path)
    np.save(tmp_path / "feats.npy", np.zeros((30, 8), dtype=np.complex64))
    with pytest.raises(ValueError, match=r"feats\.npy.*numeric.*complex64"):
        _load(folder)


def test_wrong_number_of_dimensions(tmp_path):
    folder = _release(tmp_path)
    np.save(tmp_path / "feats.npy", np.zeros(30))
    with pytest.raises(ValueError, match=r"feats\.npy: expected an array with 2, 3 or 4 "
                                         r"dimensions, got shape \(30,\)"):
        _load(folder)


def test_validation_can_be_skipped_for_inspection(tmp_path):
    labels = np.ones((30, 24))
    labels[0] = 0
    data = _load(_release(tmp_path, labels=labels), validate=False)
    assert data.labels[0].sum() == 0


def test_degenerate_training_inputs_warn_and_all_zero_images_are_refused():
    from udsph_tf.data.validation import degenerate_inputs
    rng = np.random.default_rng(0)
    images, tags = rng.random((20, 6)), (rng.random((20, 8)) < 0.3).astype(float)
    assert degenerate_inputs("d", images, tags) == []
    images[:, :4] = 1.0
    tags[3] = 0
    warnings = degenerate_inputs("d", images, tags)
    assert "d: 4 of 6 image features columns are constant over the training rows" in warnings
    assert "d: 1 of 20 training rows have all-zero text" in warnings
    images[:] = 2.0
    assert any("carries no signal" in w for w in degenerate_inputs("d", images, tags))
    with pytest.raises(ValueError, match="d: the image features of the training rows are all "
                                         "zero"):
        degenerate_inputs("d", np.zeros((5, 3)), tags[:5])


def _custom(tmp_path, labels, n=30):
    rng = np.random.default_rng(1)
    path = str(tmp_path / "wiki.npz")  # .npz keeps 1-D arrays 1-D (.mat makes them (1, n))
    np.savez(path, L=labels, T=rng.dirichlet(np.ones(10), n), I=rng.random((n, 128)))
    return load_dataset("custom", image_file=path, tag_file=path, label_file=path,
                        image_key="I", tag_key="T", label_key="L")


@pytest.mark.parametrize("shape", [(30,), (30, 1), (1, 30)])
@pytest.mark.parametrize("base", [0, 1])
def test_a_class_index_per_item_becomes_one_hot(tmp_path, capsys, shape, base):
    classes = np.arange(30) % 10                       # single-label, Wikipedia-style indices
    data = _custom(tmp_path, (classes + base).astype(np.float64).reshape(shape))
    assert data.labels.shape == (30, 10)
    np.testing.assert_array_equal(data.labels.argmax(1), classes)
    np.testing.assert_array_equal(data.labels.sum(1), np.ones(30))
    assert (f"one class index per item, 10 classes ({base} .. {base + 9}): used as one-hot"
            in capsys.readouterr().err)


def test_class_indices_that_are_not_indices_are_still_refused(tmp_path):
    bad = (np.arange(30) % 10).astype(np.float64)
    bad[3] = 2.5                                       # not an integer: not a class index
    with pytest.raises(ValueError, match=r"wiki\.npz \(key 'L'\): expected an array with 2 "
                                         r"dimensions, got shape \(30,\)"):
        _custom(tmp_path, bad.reshape(30))
    bad[3] = -1                                        # negative: not a class index
    with pytest.raises(ValueError, match=r"labels must be 0/1, found"):
        _custom(tmp_path, bad.reshape(30, 1))
