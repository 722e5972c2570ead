"""Readers: every file format round-trips, release layouts are found, raw-image mode works."""

import os

import h5py
import numpy as np
import pytest
import scipy.io
import scipy.sparse

from udsph_tf.config import Config, replace
from udsph_tf.data import load_dataset, load_dataset_from_config, list_keys, read_array
from udsph_tf.data.readers import ids_from_paths, read_tag_vocab
from udsph_tf.data.writers import write_mat73, write_mat_v5


def _toy(n=40, tag_dim=1386, num_labels=24, image_dim=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, num_labels)) < 0.2).astype(np.uint8)
    labels[np.arange(n), rng.integers(0, num_labels, n)] = 1
    tags = (rng.random((n, tag_dim)) < 0.01).astype(np.uint8)
    images = rng.standard_normal((n, image_dim)).astype(np.float32)
    return images, tags, labels


@pytest.mark.parametrize("ext", [".mat5", ".mat73", ".h5", ".npz"])
def test_round_trip_every_keyed_format(tmp_path, ext):
    images, tags, labels = _toy()
    arrays = {"IAll": images, "YAll": tags, "LAll": labels}
    path = str(tmp_path / ("data" + (".mat" if ext.startswith(".mat") else ext)))
    if ext == ".mat5":
        write_mat_v5(path, arrays)
    elif ext == ".mat73":
        write_mat73(path, arrays)
    elif ext == ".h5":
        with h5py.File(path, "w") as f:
            for k, v in arrays.items():
                f[k] = v
    else:
        np.savez(path, **arrays)
    assert sorted(list_keys(path)) == ["IAll", "LAll", "YAll"]
    for key, want in arrays.items():
        got = read_array(path, key)
        assert got.shape == want.shape, (ext, key)
        np.testing.assert_array_equal(got, want)


def test_mat73_is_stored_transposed_and_read_back(tmp_path):
    """MATLAB writes column-major: h5py sees (D, N); the reader must undo it."""
    _, tags, _ = _toy(n=7, tag_dim=5)
    path = str(tmp_path / "t.mat")
    write_mat73(path, {"YAll": tags})
    with h5py.File(path, "r") as f:
        assert f["YAll"].shape == (5, 7)
        assert "#refs#" not in f
    assert scipy.io.matlab.matfile_version(path)[0] == 2
    np.testing.assert_array_equal(read_array(path, "YAll"), tags)
    # The same file named .h5 is still recognised as MATLAB by its header.
    os.rename(path, tmp_path / "t.h5")
    np.testing.assert_array_equal(read_array(str(tmp_path / "t.h5"), "YAll"), tags)


def test_mat73_4d_images_round_trip(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 255, (3, 8, 6, 3), dtype=np.uint8)
    path = str(tmp_path / "iall.mat")
    write_mat73(path, {"IAll": pixels})
    got = read_array(path, "IAll")
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, pixels)


def test_sparse_matrices_v5_and_v73(tmp_path):
    dense = np.zeros((6, 9))
    dense[[0, 2, 5], [1, 8, 3]] = 1
    v5 = str(tmp_path / "s5.mat")
    scipy.io.savemat(v5, {"YAll": scipy.sparse.csc_matrix(dense)})
    np.testing.assert_array_equal(read_array(v5, "YAll"), dense)
    # v7.3 sparse: a group with data/ir/jc of the column-compressed matrix.
    v73 = str(tmp_path / "s73.mat")
    write_mat73(v73, {"dummy": np.zeros((1, 1))})
    csc = scipy.sparse.csc_matrix(dense)
    with h5py.File(v73, "a") as f:
        g = f.create_group("YAll")
        g.attrs["MATLAB_class"] = np.bytes_("double")
        g.attrs["MATLAB_sparse"] = np.uint64(dense.shape[0])
        g["data"], g["ir"], g["jc"] = csc.data, csc.indices.astype(np.uint64), \
            csc.indptr.astype(np.uint64)
    assert "YAll" in list_keys(v73)
    np.testing.assert_array_equal(read_array(v73, "YAll"), dense)


def test_npy_features_and_unsupported_extension(tmp_path):
    feats = np.ones((4, 3), np.float32)
    np.save(tmp_path / "f.npy", feats)
    np.testing.assert_array_equal(read_array(str(tmp_path / "f.npy")), feats)
    (tmp_path / "f.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match=r"f\.csv.*unsupported file type"):
        read_array(str(tmp_path / "f.csv"), "x")


def test_not_a_mat_file(tmp_path):
    bad = tmp_path / "bad.mat"
    bad.write_bytes(b"definitely not matlab" * 10)
    with pytest.raises(ValueError, match=r"bad\.mat"):
        read_array(str(bad), "LAll")


def _write_mirflickr_release(folder, n=40, with_images=True, image_key="IAll"):
    images, tags, labels = _toy(n)
    write_mat_v5(str(folder / "mirflickr25k-lall.mat"), {"LAll": labels})
    write_mat73(str(folder / "mirflickr25k-yall.mat"), {"YAll": tags})
    if with_images:
        write_mat_v5(str(folder / "mirflickr25k-iall.mat"), {image_key: images})
    (folder / "img_database.txt").write_text(
        "".join(f"images/im{i + 1}.jpg\n" for i in range(n)))
    (folder / "common_tags.txt").write_text("".join(f"t{j} {1000 - j}\n" for j in range(1386)))
    return images, tags, labels


def test_mirflickr_separate_files_layout(tmp_path):
    images, tags, labels = _write_mirflickr_release(tmp_path)
    data = load_dataset("mirflickr", str(tmp_path))
    assert data.images.dtype == data.tags.dtype == data.labels.dtype == np.float32
    np.testing.assert_array_equal(data.images, images)
    np.testing.assert_array_equal(data.tags, tags)
    np.testing.assert_array_equal(data.labels, labels)
    np.testing.assert_array_equal(data.ids, np.arange(1, 41))  # from img_database.txt
    assert data.tag_vocab[:2] == ["t0", "t1"] and len(data.tag_vocab) == 1386
    assert data.label_names[0] == "animals" and len(data.label_names) == 24
    sub = data.subset([3, 1])
    np.testing.assert_array_equal(sub.labels, labels[[3, 1]])
    assert sub.ids.tolist() == [4, 2]


def test_combined_dcmh_file_with_images_key(tmp_path):
    """The DCMH/SSAH release: one v7.3 file holding `images`, `YAll`, `LAll`."""
    pixels = np.random.default_rng(1).integers(0, 255, (30, 4, 4, 3), dtype=np.uint8)
    _, tags, labels = _toy(30)
    write_mat73(str(tmp_path / "FLICKR-25K.mat"), {"images": pixels, "YAll": tags,
                                                   "LAll": labels})
    data = load_dataset("mirflickr", str(tmp_path))
    assert data.images.dtype == np.uint8 and data.images.shape == (30, 4, 4, 3)
    np.testing.assert_array_equal(data.images, pixels)
    np.testing.assert_array_equal(data.labels, labels)


def test_mirflickr_without_image_side_says_what_to_do(tmp_path):
    _write_mirflickr_release(tmp_path, with_images=False)
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("mirflickr", str(tmp_path))
    msg = str(err.value)
    assert "mirflickr25k-iall.mat" in msg and "--image_file" in msg and "--image_dir" in msg
    assert "img_database.txt" in msg


def test_image_file_override_is_relative_to_data_dir(tmp_path):
    _write_mirflickr_release(tmp_path, with_images=False)
    feats = np.random.default_rng(0).standard_normal((40, 2, 8)).astype(np.float32)
    np.savez(tmp_path / "regions.npz", regions=feats)
    data = load_dataset("mirflickr", str(tmp_path), image_file="regions.npz",
                        image_key="regions")
    assert data.images.shape == (40, 2, 8)


def test_raw_image_mode_from_id_list(tmp_path):
    _write_mirflickr_release(tmp_path, n=6, with_images=False)
    (tmp_path / "images").mkdir()
    for i in range(1, 7):
        (tmp_path / "images" / f"im{i}.jpg").write_bytes(b"jpg")
    for image_dir in (tmp_path, tmp_path / "images"):  # the folder or its images/ sub-folder
        data = load_dataset("mirflickr", str(tmp_path), image_dir=str(image_dir))
        assert data.images is None
        assert data.image_paths == [str(tmp_path / "images" / f"im{i}.jpg") for i in range(1, 7)]
        np.testing.assert_array_equal(data.ids, np.arange(1, 7))
        assert data.arrays()["image_paths"].dtype.kind == "S"
    os.remove(tmp_path / "images" / "im3.jpg")
    with pytest.warns(UserWarning, match=r"1 of 6 images.*missing.*\[2\]"):
        load_dataset("mirflickr", str(tmp_path), image_dir=str(tmp_path))


def test_raw_image_mode_errors(tmp_path):
    _write_mirflickr_release(tmp_path, n=6, with_images=False)
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"none of the 6 images.*img_database\.txt"):
        load_dataset("mirflickr", str(tmp_path), image_dir=str(empty))
    os.remove(tmp_path / "img_database.txt")
    with pytest.raises(FileNotFoundError, match=r"img_database\.txt"):
        load_dataset("mirflickr", str(tmp_path), image_dir=str(empty))


def test_custom_dataset_from_flags(tmp_path):
    images, tags, labels = _toy(25, tag_dim=50, num_labels=7)
    np.save(tmp_path / "feats.npy", images)
    with h5py.File(tmp_path / "text.h5", "w") as f:
        f["bow"] = tags
        f["grp/lab"] = labels
    cfg = replace(Config(), dataset="custom", data_dir=str(tmp_path), image_file="feats.npy",
                  tag_file="text.h5", tag_key="bow", label_file="text.h5", label_key="grp/lab")
    data = load_dataset_from_config(cfg)
    assert (data.name, data.tag_dim, data.num_labels, data.num_items) == ("custom", 50, 7, 25)
    np.testing.assert_array_equal(data.ids, np.arange(25))
    with pytest.raises(ValueError, match="--tag_file is required"):
        load_dataset("custom", str(tmp_path), label_file="text.h5", label_key="grp/lab")
    with pytest.raises(ValueError, match="image side"):
        load_dataset("custom", str(tmp_path), tag_file="text.h5", tag_key="bow",
                     label_file="text.h5", label_key="grp/lab")


def test_default_and_unknown_names():
    data = load_dataset("default")
    assert data.num_items == 4000 and data.images.shape == (4000, 512)
    with pytest.raises(ValueError, match="unknown dataset 'flickr'"):
        load_dataset("flickr")


def test_ids_and_vocab_helpers(tmp_path):
    np.testing.assert_array_equal(ids_from_paths(["images/im10.jpg", "images/im2.jpg"]),
                                  [10, 2])
    assert ids_from_paths(["a/cat.jpg", "b/dog.png"]).tolist() == ["cat", "dog"]
    (tmp_path / "v.txt").write_text("sky 845\nnikon 805")  # no trailing newline, as released
    assert read_tag_vocab(str(tmp_path / "v.txt")) == ["sky", "nikon"]


def test_default_warns_about_ignored_files():
    with pytest.warns(UserWarning, match=r"ignoring \['feats.npy'\].*--dataset=custom"):
        load_dataset("default", image_file="feats.npy")


def test_data_source_tfds_is_routed_to_the_tfds_reader(tmp_path):
    cfg = replace(Config(), dataset="mirflickr", data_source="tfds", tfds_data_dir="")
    with pytest.raises(ValueError, match="--tfds_data_dir"):
        load_dataset_from_config(cfg)


def test_reading_data_does_not_import_tensorflow():
    """Readers, splits and generated data stay usable (and fast to import) without TF."""
    import subprocess
    import sys
    code = ("import sys, udsph_tf.data as d; d.generate_default(num_items=50); "
            "d.make_split(50, 'custom', 0); print('tensorflow' in sys.modules)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                         text=True, timeout=60, env=dict(os.environ, PYTHONPATH=root))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("layout", ["hwcn", "nchw"])
def test_matlab_pixel_layouts_come_back_rows_first(tmp_path, layout):
    # DCMH's mirflickr25k-iall.mat holds IAll as 224x224x3xN in MATLAB; channel-first writers
    # give (N, 3, H, W). Both must load as (N, H, W, C), aligned with the labels.
    n = 12
    _, tags, labels = _toy(n)
    pixels = np.random.default_rng(1).integers(0, 255, (n, 8, 8, 3), dtype=np.uint8)
    stored = np.moveaxis(pixels, 0, -1) if layout == "hwcn" else pixels.transpose(0, 3, 1, 2)
    write_mat_v5(str(tmp_path / "mirflickr25k-lall.mat"), {"LAll": labels})
    write_mat_v5(str(tmp_path / "mirflickr25k-yall.mat"), {"YAll": tags})
    write_mat73(str(tmp_path / "mirflickr25k-iall.mat"), {"IAll": stored})
    data = load_dataset("mirflickr", str(tmp_path))
    assert data.images.shape == (n, 8, 8, 3) and data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.images, pixels)


# --- damaged files: one DataError naming the file, never a library's bare exception ----------

def _damaged(tmp_path, kind):
    """(path, key) of a small damaged file of the given kind."""
    rng = np.random.default_rng(0)
    feats = rng.random((50, 16)).astype(np.float32)

    def cut(src, name, keep=0.5):
        raw = (tmp_path / src).read_bytes()
        (tmp_path / name).write_bytes(raw[:int(len(raw) * keep)] if keep < 1 else raw)
        return str(tmp_path / name)

    np.savez(tmp_path / "ok.npz", x=feats)
    np.save(tmp_path / "ok.npy", feats)
    with h5py.File(tmp_path / "ok.h5", "w") as f:
        f["x"] = feats
    write_mat_v5(str(tmp_path / "ok5.mat"), {"x": feats})
    write_mat73(str(tmp_path / "ok73.mat"), {"x": feats})
    if kind == "random.npz":
        (tmp_path / kind).write_bytes(rng.bytes(300))
    elif kind == "random.npy":
        (tmp_path / kind).write_bytes(rng.bytes(300))
    elif kind == "empty.npz":
        (tmp_path / kind).write_bytes(b"")
    elif kind == "zero_rows.npy":
        np.save(tmp_path / kind, np.zeros((0, 16), np.float32))
    elif kind == "zero_rows.npz":
        np.savez(tmp_path / kind, x=np.zeros((0, 16), np.float32))
    else:
        src = {"truncated.npz": "ok.npz", "truncated.npy": "ok.npy", "header.npy": "ok.npy",
               "truncated.h5": "ok.h5", "truncated5.mat": "ok5.mat",
               "truncated73.mat": "ok73.mat", "single_array.npz": "ok.npy"}[kind]
        cut(src, kind, keep={"header.npy": 0.01, "single_array.npz": 1}.get(kind, 0.5))
    return str(tmp_path / kind), None if kind.endswith(".npy") else "x"


@pytest.mark.parametrize("kind,message", [
    ("truncated.npz", "cannot read this .npz file (truncated or damaged?): BadZipFile"),
    ("random.npz", "not a .npz archive (no zip header)"),
    ("single_array.npz", "it holds a single array: rename it to .npy"),
    ("empty.npz", "empty file (0 bytes)"),
    ("truncated.npy", "truncated .npy file: its header promises shape (50, 16) float32 "
                      "(3200 bytes of data) but only"),
    ("header.npy", "cannot read this .npy file"),
    ("random.npy", "not a .npy file (no NumPy header)"),
    ("truncated.h5", "cannot read this HDF5 file (truncated or damaged?)"),
    ("truncated5.mat", "cannot read this .mat file"),
    ("truncated73.mat", "cannot read this .mat (v7.3, HDF5) file"),
    ("zero_rows.npy", "holds no data (shape (0, 16))"),
    ("zero_rows.npz", "(key 'x'): holds no data (shape (0, 16))"),
])
def test_damaged_files_are_named(tmp_path, kind, message):
    from udsph_tf.errors import DataError
    path, key = _damaged(tmp_path, kind)
    with pytest.raises(DataError) as err:
        read_array(path, key)
    assert isinstance(err.value, ValueError)  # callers catching ValueError keep working
    text = str(err.value)
    assert text.startswith(path) and message in text, text
    assert "pickled" not in text  # numpy's misleading fallback for foreign bytes


def test_damaged_key_listing_and_text_files_are_named(tmp_path):
    from udsph_tf.data.readers import read_lines
    from udsph_tf.data.splits import load_split_file
    from udsph_tf.errors import DataError, MissingFileError
    for kind in ("truncated.npz", "truncated.h5", "random.npz"):
        path, _ = _damaged(tmp_path, kind)
        with pytest.raises(DataError, match=kind):
            list_keys(path)
    with pytest.raises(DataError, match=r"random\.npz: not a \.npz archive"):
        load_split_file(str(tmp_path / "random.npz"), 50)
    (tmp_path / "ids.txt").write_bytes(b"\xff\xfe\x00im1.jpg\n")
    with pytest.raises(DataError, match=r"ids\.txt: not UTF-8 text"):
        read_lines(str(tmp_path / "ids.txt"))
    with pytest.raises(MissingFileError, match=r"nope\.npy"):
        read_array(str(tmp_path / "nope.npy"))


def test_custom_dataset_with_a_damaged_label_file_names_it(tmp_path):
    from udsph_tf.errors import UserError
    images, tags, _ = _toy(n=20, tag_dim=8)
    np.save(tmp_path / "img.npy", images)
    np.save(tmp_path / "tags.npy", tags)
    labels, _ = _damaged(tmp_path, "truncated.npz")
    with pytest.raises(UserError, match=r"truncated\.npz: cannot read"):
        load_dataset("custom", image_file=str(tmp_path / "img.npy"),
                     tag_file=str(tmp_path / "tags.npy"), label_file=labels, label_key="x")
