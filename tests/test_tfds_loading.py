"""TFDS builds read back as CrossModalData agree with the raw files and the data layer's readers."""

import pathlib
import shutil
import warnings

import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds

from udsph_tf.config import Config
from udsph_tf.data.readers import load_dataset
from udsph_tf.data.splits import make_split
from udsph_tf.data import tfds as udsph_tfds
from tfds_dummy import tfds_dummy_data  # tests/ is on sys.path (rootdir conftest)
from udsph_tf.data.tfds import common

DUMMY = tfds_dummy_data()
MIR = DUMMY / "mirflickr25k"

pytestmark = pytest.mark.filterwarnings("ignore:.*cannot hold the standard:UserWarning")


def build(builder_name, config, manual_dir, data_dir):
    builder = tfds.builder(builder_name, config=config, data_dir=str(data_dir))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return builder


def same_split(a, b):
    return all(np.array_equal(getattr(a, f), getattr(b, f))
               for f in ("query_idx", "database_idx", "train_idx", "val_idx"))


def mirflickr_raw():
    labels = scipy.io.loadmat(MIR / "mirflickr25k-lall.mat")["LAll"]
    tags = scipy.io.loadmat(MIR / "mirflickr25k-yall.mat")["YAll"]
    ids = np.array([int(line.strip()[len("images/im"):-len(".jpg")])
                    for line in (MIR / "img_database.txt").read_text().split()])
    return labels, tags, ids


@pytest.fixture(scope="module")
def mir_built(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds_mir")
    for cfg in ("iall", "vgg", "lite0_730"):
        build("mirflickr25k", cfg, MIR, data_dir)
    return data_dir


def test_iall_rows_decode_to_the_matlab_v73_pixels(mir_built):
    data = udsph_tfds.load_tfds_as_crossmodal("mirflickr", str(mir_built), "iall")
    labels, tags, ids = mirflickr_raw()
    expected_pixels = np.load(MIR / "expected_iall_rows.npy")  # written with the .mat file
    assert data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.images, expected_pixels)
    np.testing.assert_array_equal(data.labels, labels)
    np.testing.assert_array_equal(data.tags, tags)
    np.testing.assert_array_equal(data.ids, ids)
    assert data.label_names[0] == "animals" and len(data.label_names) == 24
    assert data.tag_vocab[:2] == ["tag0000", "tag0001"] and len(data.tag_vocab) == 1386
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert same_split(data.default_split, make_split(30, "mirflickr", 0))


def test_features_build_equals_data_layer_reader(mir_built):
    data = udsph_tfds.load_tfds_as_crossmodal("mirflickr", str(mir_built), "vgg")
    raw = load_dataset("mirflickr", str(MIR), image_file="mirflickr25k-iall-vgg.mat",
                       image_key="XAll")
    for field in ("images", "tags", "labels", "ids"):
        np.testing.assert_array_equal(getattr(data, field), getattr(raw, field), err_msg=field)
    assert data.images.dtype == np.float32 and data.images.shape == (30, 4096)
    assert data.tag_vocab == raw.tag_vocab and data.label_names == raw.label_names


def test_mirflickr730_build_equals_data_layer_reader_and_its_fixed_split(mir_built):
    data = udsph_tfds.load_tfds_as_crossmodal("mirflickr730", str(mir_built))  # auto config
    raw = load_dataset("mirflickr730", str(MIR))
    for field in ("images", "tags", "labels", "ids"):
        np.testing.assert_array_equal(getattr(data, field), getattr(raw, field), err_msg=field)
    assert same_split(data.default_split, raw.default_split)
    assert data.default_split.seed == 730


def test_examples_carry_text_ids_and_source_rows(mir_built):
    builder = tfds.builder("mirflickr25k", config="lite0_730", data_dir=str(mir_built))
    z = np.load(MIR / "mirflickr730-efficientnet-lite0.npz")
    texts = (MIR / "txt_database.txt").read_text().splitlines()
    seen = 0
    for split in ("query", "database"):
        for ex in tfds.as_numpy(builder.as_dataset(split=split)):
            j = int(ex["index"])
            assert ex["source_row"] == z["row_in_20015"][j]
            assert ex["id"] == z["image_id"][j]
            assert ex["text"].decode() == " ".join(texts[ex["source_row"]].split())
            assert ex["image_file"].decode() == f"images/im{ex['id']}.jpg"
            np.testing.assert_array_equal(ex["image"], z["feat_lite0_1280"][j])
            seen += 1
    assert seen == len(z["image_id"])
    # train and validation are disjoint subsets of database, recorded as the data layer's Split
    meta = builder.info.metadata["split"]
    assert set(meta["train_idx"]) | set(meta["val_idx"]) <= set(meta["database_idx"])


def test_photos_available_keeps_only_rows_with_a_photo(tmp_path):
    manual = tmp_path / "manual"
    shutil.copytree(MIR, manual)
    lines = (manual / "img_database.txt").read_text().split()
    for rel in lines[::3]:  # remove every third photo
        (manual / rel).unlink()
    with pytest.raises(FileNotFoundError, match=r"10 of 30 photos not found.*only_available"):
        build("mirflickr25k", "photos", manual, tmp_path / "out_all")
    build("mirflickr25k", "photos_available", manual, tmp_path / "out")
    data = udsph_tfds.load_tfds_as_crossmodal("mirflickr", str(tmp_path / "out"),
                                              "photos_available", image_size=8)
    keep = np.array([i for i in range(30) if i % 3])
    labels, tags, ids = mirflickr_raw()
    np.testing.assert_array_equal(data.ids, ids[keep])
    np.testing.assert_array_equal(data.labels, labels[keep])
    np.testing.assert_array_equal(data.tags, tags[keep])
    assert data.images.shape == (20, 8, 8, 3) and data.images.dtype == np.uint8


def test_photos_without_image_size_must_share_a_size(tmp_path):
    manual = tmp_path / "manual"
    shutil.copytree(MIR, manual)
    from PIL import Image
    first = (manual / "img_database.txt").read_text().split()[0]
    Image.new("RGB", (5, 4)).save(manual / first)
    build("mirflickr25k", "photos", manual, tmp_path / "out")
    with pytest.raises(ValueError, match="differ in size.*image_size"):
        udsph_tfds.load_tfds_as_crossmodal("mirflickr", str(tmp_path / "out"), "photos")


def test_split_seed_is_a_config_choice(tmp_path):
    base = tfds.builder_cls("mirflickr25k").builder_configs["vgg"]
    cfg = udsph_tfds.with_split(base, split_seed=3, num_query=5, num_train=12, num_val=2)
    assert cfg.name == "vgg_seed3_q5_t12_v2"
    builder = tfds.builder("mirflickr25k", config=cfg, data_dir=str(tmp_path))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(MIR)))
    assert builder.info.splits["query"].num_examples == 5
    assert builder.info.splits["train"].num_examples == 10
    data = udsph_tfds.load_tfds_as_crossmodal("mirflickr", str(tmp_path), cfg.name)
    assert same_split(data.default_split, make_split(30, "mirflickr", 3, 5, 12, 2))


def test_nuswide_original_concepts_ids_and_text(tmp_path):
    root = DUMMY / "nus_wide"
    build("nus_wide", "tc10_original", root, tmp_path)
    data = udsph_tfds.load_tfds_as_crossmodal("nuswide", str(tmp_path))
    concepts = (root / "Concepts81.txt").read_text().split()
    freq = [int(np.loadtxt(root / "Groundtruth/AllLabels" / f"Labels_{c}.txt").sum())
            for c in concepts]
    # label columns: the 10 most frequent concepts, most frequent first
    assert [freq[concepts.index(c)] for c in data.label_names] == sorted(freq, reverse=True)[:10]
    assert data.labels.shape[1] == 10 and data.tags.shape[1] == 1000
    assert (data.labels.sum(1) > 0).all() and (data.tags.sum(1) > 0).all()
    names = (root / "ImageList/Imagelist.txt").read_text().split()
    all_ids = {int(n.rsplit("_", 1)[1][:-4]) for n in names}
    assert set(data.ids.tolist()) <= all_ids and len(data.ids) < len(names)
    builder = tfds.builder("nus_wide", config="tc10_original", data_dir=str(tmp_path))
    ex = next(iter(tfds.as_numpy(builder.as_dataset(split="query"))))
    assert ex["text"].decode().endswith(" raw")  # from All_Tags.txt, matched by photo id
    assert ex["image_file"].decode().startswith("Flickr/concept")


def test_coco_labels_vocab_and_captions(tmp_path):
    root = DUMMY / "coco_multilabel"
    build("coco_multilabel", "2014", root, tmp_path)
    data = udsph_tfds.load_tfds_as_crossmodal("coco", str(tmp_path))
    assert data.labels.shape == (19, 80) and data.tags.shape == (19, 2000)
    # the words every caption shares come first; stop words never enter the vocabulary
    assert data.tag_vocab[:3] == ["dog", "red", "sofa"]
    assert not {"a", "the", "of", "near"} & set(data.tag_vocab)
    assert (data.tags[:, :3] == 1).all()
    import json
    cats = json.loads((root / "annotations/instances_train2014.json").read_text())["categories"]
    assert data.label_names == [c["name"] for c in sorted(cats, key=lambda c: c["id"])]
    builder = tfds.builder("coco_multilabel", config="2014", data_dir=str(tmp_path))
    ex = next(iter(tfds.as_numpy(builder.as_dataset(split="database"))))
    assert ex["text"].decode().count("\n") == 4  # five captions
    assert ex["image"].shape == (7, 9, 3)


def test_load_from_config_for_main(mir_built):
    config = Config(dataset="mirflickr", data_source="tfds", tfds_data_dir=str(mir_built))
    with pytest.raises(FileNotFoundError, match=r"mirflickr25k/photos is not built.*'iall'"):
        udsph_tfds.load_tfds_as_crossmodal("mirflickr", str(mir_built), "photos")
    data = udsph_tfds.load_tfds_from_config(config)  # three builds: the preferred one (iall)
    assert data.images.shape == (30, 16, 16, 3)
    data730 = udsph_tfds.load_tfds_from_config(
        Config(dataset="mirflickr730", data_source="tfds", tfds_data_dir=str(mir_built)))
    assert data730.num_items == 12


# ---------------------------------------------------------------------------------- errors

def test_errors_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(ValueError, match="--tfds_data_dir"):
        udsph_tfds.load_tfds_as_crossmodal("mirflickr", "")
    with pytest.raises(FileNotFoundError, match="no build of mirflickr25k.*build_tfds.py"):
        udsph_tfds.load_tfds_as_crossmodal("mirflickr", str(tmp_path))
    with pytest.raises(ValueError, match="no TFDS builder for dataset 'custom'"):
        udsph_tfds.load_tfds_as_crossmodal("custom", str(tmp_path))
    with pytest.raises(ValueError, match="image_source must be one of"):
        common.CrossModalConfig(name="x", image_source="pixels")
    with pytest.raises(ValueError, match="feature_dim > 0"):
        common.CrossModalConfig(name="x", image_source="features")


def test_several_builds_without_a_preferred_one_need_a_choice(tmp_path):
    for cfg in ("2017", "2014_available"):  # fake finished builds: only dataset_info.json
        version = tmp_path / "coco_multilabel" / cfg / "1.0.0"
        version.mkdir(parents=True)
        (version / "dataset_info.json").write_text("{}")
    (tmp_path / "coco_multilabel" / "2014" / "1.0.0").mkdir(parents=True)  # unfinished build
    assert udsph_tfds.built_configs("coco_multilabel", str(tmp_path)) == ["2014_available", "2017"]
    with pytest.raises(ValueError, match=r"several configs of coco_multilabel.*2014_available"):
        udsph_tfds.load_tfds_as_crossmodal("coco", str(tmp_path))


def _broken_copy(tmp_path, edit):
    manual = tmp_path / "manual"
    shutil.copytree(MIR, manual)
    edit(manual)
    return manual


@pytest.mark.parametrize("edit, error, pattern", [
    (lambda m: (m / "mirflickr25k-lall.mat").unlink(), FileNotFoundError,
     r"MIRFlickr labels: file not found: .*mirflickr25k-lall.mat"),
    (lambda m: scipy.io.savemat(m / "mirflickr25k-lall.mat", {"L": np.ones((30, 24))}),
     ValueError, r"mirflickr25k-lall.mat: no key 'LAll'; the file holds \['L'\]"),
    (lambda m: scipy.io.savemat(m / "mirflickr25k-lall.mat", {"LAll": np.full((30, 24), 2.0)}),
     ValueError, r"mirflickr25k-lall.mat \(key 'LAll'\): labels must be 0/1"),
    (lambda m: (m / "img_database.txt").write_text("images/im1.jpg\n"), ValueError,
     r"img_database.txt: 1 rows, expected 30"),
    (lambda m: scipy.io.savemat(m / "mirflickr25k-iall-vgg.mat", {"XAll": np.ones((30, 7))}),
     ValueError, r"features are 7-d but config 'vgg' declares feature_dim=4096"),
    (lambda m: scipy.io.savemat(m / "mirflickr25k-iall-vgg.mat", {"XAll": np.ones((29, 4096))}),
     ValueError, r"29 feature rows but the labels have 30 rows"),
])
def test_bad_release_files(tmp_path, edit, error, pattern):
    manual = _broken_copy(tmp_path, edit)
    with pytest.raises(error, match=pattern):
        build("mirflickr25k", "vgg", manual, tmp_path / "out")


def test_pixel_file_without_a_row_axis_is_refused(tmp_path):
    import h5py
    manual = tmp_path / "manual"
    shutil.copytree(MIR, manual)
    with h5py.File(manual / "mirflickr25k-iall.mat", "w") as f:
        f.create_dataset("IAll", data=np.zeros((29, 3, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"shape \(4, 4, 3, 29\) has no axis of length 30"):
        build("mirflickr25k", "iall", manual, tmp_path / "out")


def test_nuswide_and_coco_input_errors(tmp_path):
    nus = tmp_path / "nus"
    shutil.copytree(DUMMY / "nus_wide", nus)
    (nus / "NUS_WID_Tags" / "AllTags1k.txt").write_text("0 1 x\n")
    with pytest.raises(ValueError, match=r"AllTags1k.txt: expected only 0/1 entries"):
        build("nus_wide", "tc10_original", nus, tmp_path / "out_nus")
    coco = tmp_path / "coco"
    shutil.copytree(DUMMY / "coco_multilabel", coco)
    (coco / "annotations" / "captions_val2014.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"captions_val2014.json not found"):
        build("coco_multilabel", "2014", coco, tmp_path / "out_coco")
