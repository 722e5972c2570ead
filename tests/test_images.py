"""The raw-image tf.data pipeline: listing, bad files (named or skipped), resizing, normalising."""

import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from udsph_tf.data import images as im

SPEC = im.ImageSpec(height=32, width=32, mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0))


def _write_folder(root, photos, extra_lines=()):
    """root/images/<files> + root/img_database.txt listing them (plus extra_lines)."""
    folder = root / "images"
    folder.mkdir()
    lines = []
    for name, image in photos.items():
        image.save(folder / name)
        lines.append(f"images/{name}")
    (root / "img_database.txt").write_text("\n".join(lines + list(extra_lines)) + "\n")
    return folder


@pytest.fixture
def generated(tmp_path):
    rng = np.random.default_rng(0)
    photos = {f"im{i}.jpg": Image.fromarray(rng.integers(0, 256, (40 + i, 50, 3), np.uint8))
              for i in (1, 2, 10)}
    photos["im3.png"] = Image.fromarray(rng.integers(0, 256, (36, 30, 4), np.uint8), "RGBA")
    folder = _write_folder(tmp_path, photos)
    return tmp_path, folder


def _add_bad_files(root, folder):
    good = (folder / "im1.jpg").read_bytes()
    (folder / "im4.jpg").write_bytes(good[: len(good) // 2])  # truncated JPEG
    (folder / "im5.jpg").write_bytes(b"this is not an image")
    with open(root / "img_database.txt", "a") as f:
        f.write("images/im4.jpg\nimages/im5.jpg\nimages/im6.jpg\n")  # im6 is missing


def test_lists_in_id_list_order_from_folder_or_parent(generated):
    root, folder = generated
    files = im.list_image_files(str(folder))
    assert files.id_list == str(root / "img_database.txt")
    assert files.ids == ["images/im1.jpg", "images/im2.jpg", "images/im10.jpg", "images/im3.png"]
    np.testing.assert_array_equal(files.rows, [0, 1, 2, 3])
    assert files.num_listed == 4 and not files.missing and not files.unreadable
    subset = im.list_image_files(str(folder), rows=[3, 0])
    assert subset.ids == ["images/im3.png", "images/im1.jpg"]
    with pytest.raises(ValueError, match="rows out of range"):
        im.list_image_files(str(folder), rows=[4])


def test_without_id_list_uses_natural_file_order(tmp_path):
    folder = tmp_path / "pics"
    folder.mkdir()
    for name in ("b10.png", "b2.png", "a.jpg"):
        Image.new("RGB", (8, 8), (10, 20, 30)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    files = im.list_image_files(str(folder))
    assert files.ids == ["a.jpg", "b2.png", "b10.png"] and files.id_list == ""


def test_missing_file_is_named_or_skipped(generated):
    root, folder = generated
    with open(root / "img_database.txt", "a") as f:
        f.write("images/im99.jpg\n")
    with pytest.raises(FileNotFoundError, match=r"1 image file\(s\) missing, e.g. .*im99\.jpg"):
        im.list_image_files(str(folder))
    files = im.list_image_files(str(folder), skip_bad=True)
    assert len(files) == 4 and files.missing == [(4, str(root / "images" / "im99.jpg"))]


def test_corrupt_files_are_named_or_skipped(generated):
    root, folder = generated
    _add_bad_files(root, folder)
    with pytest.raises(FileNotFoundError, match="im6.jpg"):
        im.list_image_files(str(folder))
    (folder / "im6.jpg").write_bytes((folder / "im2.jpg").read_bytes())
    with pytest.raises(ValueError,
                       match=r"2 image file\(s\) cannot be decoded: .*im4\.jpg.*im5\.jpg"):
        im.list_image_files(str(folder))
    (folder / "im6.jpg").unlink()
    files = im.list_image_files(str(folder), skip_bad=True)
    assert [r for r, _ in files.unreadable] == [4, 5]
    assert [r for r, _ in files.missing] == [6]
    np.testing.assert_array_equal(files.rows, [0, 1, 2, 3])
    assert "4 images of 7 listed; skipped 1 missing and 2 unreadable" == files.summary()


def test_nothing_readable_and_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        im.list_image_files(str(tmp_path / "absent"))
    folder = tmp_path / "x"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"junk")
    with pytest.raises(ValueError, match="no readable images left"):
        im.list_image_files(str(folder), skip_bad=True)
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="empty.txt is empty"):
        im.read_id_list(str(tmp_path / "empty.txt"))


def test_dataset_matches_a_pil_reference(generated):
    _, folder = generated
    files = im.list_image_files(str(folder))
    batches = list(im.image_dataset(files, SPEC, batch_size=3).as_numpy_iterator())
    assert [b["image"].shape for b in batches] == [(3, 32, 32, 3), (1, 32, 32, 3)]
    images = np.concatenate([b["image"] for b in batches])
    np.testing.assert_array_equal(np.concatenate([b["row"] for b in batches]), files.rows)
    for path, got in zip(files.paths, images):
        ref = np.asarray(Image.open(path).convert("RGB").resize((32, 32), Image.BILINEAR),
                         np.float32)
        # Same decoder (accurate DCT), same filter; rounding may differ by one grey level.
        assert np.abs((got * 128 + 127) - ref).max() <= 1.0 + 1e-3


def test_center_crop_bgr_and_mean(tmp_path):
    # A 20x40 image: left half red, right half blue. A centre crop of 20x20 after resizing the
    # short side keeps the middle; BGR swaps channels; mean/std apply in the model's order.
    array = np.zeros((20, 40, 3), np.uint8)
    array[:, :20] = (200, 0, 0)
    array[:, 20:] = (0, 0, 100)
    Image.fromarray(array).save(tmp_path / "a.png")
    spec = im.ImageSpec(height=10, width=10, mean=(1.0, 2.0, 3.0), std=(1.0, 1.0, 2.0),
                        bgr=True, resize="center_crop")
    out = im.load_image(str(tmp_path / "a.png"), spec).numpy()[0]
    assert out.shape == (10, 10, 3)
    np.testing.assert_allclose(out[5, 0], [0 - 1.0, 0 - 2.0, (200 - 3.0) / 2], atol=1e-4)
    np.testing.assert_allclose(out[5, 9], [100 - 1.0, 0 - 2.0, -1.5], atol=1e-4)
    with pytest.raises(ValueError, match="resize must be"):
        im.ImageSpec(resize="squash")


def test_load_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="q.jpg"):
        im.load_image(str(tmp_path / "q.jpg"), SPEC)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ValueError, match=r"cannot decode image .*bad\.jpg"):
        im.load_image(str(tmp_path / "bad.jpg"), SPEC)


def test_augmentation_is_seeded_and_only_in_training(generated):
    _, folder = generated
    files = im.list_image_files(str(folder))

    def images(**kw):
        return np.concatenate([b["image"] for b in
                               im.image_dataset(files, SPEC, 4, **kw).as_numpy_iterator()])

    plain = images()
    np.testing.assert_array_equal(images(augment=True), plain)  # not training: no augmentation
    a1, a2 = images(training=True, augment=True, seed=1), images(training=True, augment=True,
                                                                 seed=1)
    np.testing.assert_array_equal(a1, a2)
    assert np.abs(a1 - plain).mean() > 0.05
    assert not np.array_equal(a1, images(training=True, augment=True, seed=2))


def test_shuffle_repeat_and_sharding(generated):
    _, folder = generated
    files = im.list_image_files(str(folder))
    ds = im.image_dataset(files, SPEC, 2, shuffle=True, repeat=True, seed=3)
    seen = np.concatenate([b["index"] for b in ds.take(4).as_numpy_iterator()])
    assert sorted(seen[:4].tolist()) == [0, 1, 2, 3] and sorted(seen[4:].tolist()) == [0, 1, 2, 3]
    ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                     num_replicas_in_sync=2)
    shard = list(im.image_dataset(files, SPEC, 4, input_context=ctx).as_numpy_iterator())
    assert [b["index"].tolist() for b in shard] == [[1, 3]]
    with pytest.raises(ValueError, match="no image files"):
        im.image_dataset([], SPEC, 2)


@pytest.mark.realdata
def test_real_photos_with_corrupt_and_missing(mirflickr_dir, tmp_path):
    """Real MIRFlickr photos copied to tmp, with a corrupt file and a missing one."""
    folder = tmp_path / "images"
    folder.mkdir()
    for n in (1, 3, 28):
        shutil.copy(mirflickr_dir / "images" / f"im{n}.jpg", folder)
    data = (folder / "im3.jpg").read_bytes()
    (folder / "im2.jpg").write_bytes(data[:3000])
    (tmp_path / "img_database.txt").write_text(
        "images/im1.jpg\nimages/im2.jpg\nimages/im3.jpg\nimages/im4.jpg\nimages/im28.jpg\n")
    with pytest.raises(FileNotFoundError, match="im4.jpg"):
        im.list_image_files(str(folder))
    files = im.list_image_files(str(folder), skip_bad=True)
    assert files.rows.tolist() == [0, 2, 4]
    assert [p.rsplit("/", 1)[-1] for _, p in files.unreadable] == ["im2.jpg"]
    assert [p.rsplit("/", 1)[-1] for _, p in files.missing] == ["im4.jpg"]
    spec = im.ImageSpec(mean=(127.0,) * 3, std=(128.0,) * 3)
    batch = next(im.image_dataset(files, spec, 8).as_numpy_iterator())
    assert batch["image"].shape == (3, 224, 224, 3)
    assert -1.0 <= batch["image"].min() < -0.5 and 0.5 < batch["image"].max() <= 1.0


def test_image_loader_joins_other_columns(generated):
    # A pipeline that carries labels beside the paths maps the same loader over its elements.
    _, folder = generated
    files = im.list_image_files(str(folder))
    labels = np.arange(len(files), dtype=np.float32)
    loader = im.image_loader(SPEC, training=True, augment=True)
    ds = tf.data.Dataset.zip((tf.data.Dataset.from_tensor_slices((files.paths, labels)),
                              tf.data.Dataset.random(seed=5).batch(2)))
    ds = ds.map(lambda pl, seed: (loader(pl[0], seed), pl[1])).batch(4)
    images, got = next(ds.as_numpy_iterator())
    assert images.shape == (4, 32, 32, 3) and got.tolist() == labels.tolist()
    same = np.concatenate([b["image"] for b in im.image_dataset(
        files, SPEC, 4, training=True, augment=True, seed=5).as_numpy_iterator()])
    np.testing.assert_array_equal(images, same)
