"""tf.data pipeline of raw images: list a folder's files, check, decode, resize, normalise.

Image ids come from an id list (`img_database.txt`: one `images/im1.jpg` per line, the row
order of the dataset's .mat files) or, without one, from the sorted image files of the folder.
Missing or undecodable files stop with an error naming them, or are skipped and counted when
`skip_bad=True`. Knows nothing of models: a backbone describes its input as an `ImageSpec`.
"""

import dataclasses
import os
import re
from typing import Sequence

import numpy as np
import tensorflow as tf

from udsph_tf.data.readers import ID_LIST
from udsph_tf.errors import DataError, MissingFileError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
# Augmentation resizes to size / 0.875 and crops a random size window (the usual ImageNet ratio).
_AUGMENT_SCALE = 1.0 / 0.875


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """What a backbone expects: size, per-channel (x - mean) / std of [0, 255] pixels, order.

    resize: "stretch" resizes to height x width ignoring the aspect ratio; "center_crop"
    resizes the shorter side to the target and crops the centre.
    """
    height: int = 224
    width: int = 224
    mean: Sequence[float] = (0.0, 0.0, 0.0)
    std: Sequence[float] = (1.0, 1.0, 1.0)
    bgr: bool = False
    resize: str = "stretch"

    def __post_init__(self):
        if self.resize not in ("stretch", "center_crop"):
            raise ValueError(f"ImageSpec.resize must be 'stretch' or 'center_crop', "
                             f"got {self.resize!r}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("ImageSpec.mean and .std need 3 values (one per channel)")


@dataclasses.dataclass
class ImageFiles:
    """The images a pipeline will read, in order, and what was left out.

    rows: index of each kept image in the id list (the dataset row it belongs to);
    num_listed: length of the id list; missing / unreadable: (row, path) of skipped files.
    """
    paths: list
    ids: list
    rows: np.ndarray
    num_listed: int
    id_list: str = ""
    missing: list = dataclasses.field(default_factory=list)
    unreadable: list = dataclasses.field(default_factory=list)

    def __len__(self):
        return len(self.paths)

    def summary(self):
        return (f"{len(self.paths)} images of {self.num_listed} listed; skipped "
                f"{len(self.missing)} missing and {len(self.unreadable)} unreadable")


def read_id_list(path):
    """Non-empty stripped lines of an id list such as img_database.txt."""
    if not os.path.isfile(path):
        raise MissingFileError(f"{path}: image id list not found")
    with open(path, encoding="utf-8") as f:
        ids = [line.strip() for line in f if line.strip()]
    if not ids:
        raise DataError(f"{path}: no image ids (the image id list {os.path.basename(path)} "
                        "is empty)")
    return ids


def find_id_list(image_dir):
    """img_database.txt in the image folder or its parent (the MIRFlickr layout), else ''."""
    for folder in (image_dir, os.path.dirname(os.path.normpath(image_dir))):
        candidate = os.path.join(folder, ID_LIST)
        if os.path.isfile(candidate):
            return candidate
    return ""


def _natural_key(name):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _resolve(image_dir, id_list, image_id):
    # Lines are relative to the list's folder ("images/im1.jpg" beside img_database.txt); accept
    # them relative to the image folder too, and bare file names.
    for base in (os.path.dirname(id_list), image_dir):
        candidate = os.path.join(base, image_id)
        if os.path.isfile(candidate):
            return candidate
    return os.path.join(image_dir, os.path.basename(image_id))


def list_image_files(image_dir, id_list="", rows=None, skip_bad=False, check_decode=True):
    """The images to read, in id-list order (or sorted file order without a list).

    id_list: path of the id list; '' looks for img_database.txt beside the folder.
    rows: keep only these rows of the list (e.g. the 730 MIRFlickr rows with photos here).
    skip_bad: skip missing/undecodable files with a count instead of raising.
    check_decode: decode every file once (in parallel) so a corrupt file is found here, with
    its name, rather than as an anonymous error in the middle of training.
    """
    if not image_dir or not os.path.isdir(image_dir):
        raise MissingFileError(f"--image_dir={image_dir}: "
                               + ("image folder not found" if image_dir else
                                  "empty; name the folder of the photos"))
    id_list = id_list or find_id_list(image_dir)
    if id_list:
        ids = read_id_list(id_list)
        num_listed = len(ids)
        if rows is None:
            rows = np.arange(num_listed)
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= num_listed):
            raise DataError(f"{id_list}: rows out of range for its {num_listed} lines")
        paths = [_resolve(image_dir, id_list, ids[r]) for r in rows]
        ids = [ids[r] for r in rows]
    else:
        names = sorted((n for n in os.listdir(image_dir)
                        if n.lower().endswith(IMAGE_EXTENSIONS)), key=_natural_key)
        if not names:
            raise MissingFileError(f"--image_dir={image_dir}: no {ID_LIST} and no image "
                                   "files in the folder")
        num_listed = len(names)
        rows = np.arange(num_listed) if rows is None else np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= num_listed):
            raise DataError(f"--image_dir={image_dir}: rows out of range for the {num_listed} "
                            "images in the folder")
        ids = [names[r] for r in rows]
        paths = [os.path.join(image_dir, n) for n in ids]
    files = ImageFiles(paths=paths, ids=ids, rows=rows, num_listed=num_listed, id_list=id_list)

    missing = [i for i, p in enumerate(paths) if not os.path.isfile(p)]
    if missing and not skip_bad:
        shown = ", ".join(paths[i] for i in missing[:3])
        raise MissingFileError(f"--image_dir={image_dir}: {len(missing)} image file(s) missing, "
                               f"e.g. {shown} (use --skip_bad_images to skip them)")
    files = _drop(files, missing, "missing")
    if check_decode:
        bad = find_unreadable(files.paths)
        if bad and not skip_bad:
            shown = "; ".join(f"{files.paths[i]}: {msg}" for i, msg in bad[:3])
            raise DataError(f"--image_dir={image_dir}: {len(bad)} image file(s) cannot be "
                            f"decoded: {shown} (use --skip_bad_images to skip them)")
        files = _drop(files, [i for i, _ in bad], "unreadable")
    if not files.paths:
        raise DataError(f"--image_dir={image_dir}: no readable images left "
                        f"({files.summary()})")
    return files


def _drop(files, indices, kind):
    if not indices:
        return files
    drop = set(indices)
    skipped = [(int(files.rows[i]), files.paths[i]) for i in indices]
    keep = [i for i in range(len(files.paths)) if i not in drop]
    return dataclasses.replace(files, paths=[files.paths[i] for i in keep],
                               ids=[files.ids[i] for i in keep], rows=files.rows[keep],
                               **{kind: list(getattr(files, kind)) + skipped})


def _decode(data):
    # By content, whatever the extension says. JPEG with the accurate integer DCT (libjpeg's
    # default, PIL's too): TF's default fast DCT is off by ~1 grey level per pixel.
    image = tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(data, channels=3, expand_animations=False))
    image.set_shape([None, None, 3])
    return image


def _op_message(text):
    """TensorFlow's error text without its op annotations ({{function_node ...}}, [Op:...]):
    the part a user can act on, e.g. 'Unknown image file format. One of JPEG, ... required.'"""
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text.strip().splitlines()[-1])
    return re.sub(r"\s*\[Op:\w+\].*$", "", text).strip()[:200]


def find_unreadable(paths):
    """(index, message) of every file TensorFlow cannot decode; one parallel tf.data pass."""
    if not paths:
        return []
    ds = tf.data.Dataset.from_tensor_slices(np.asarray(paths, dtype=object).astype(str))
    ds = ds.enumerate().map(lambda i, p: (i, tf.shape(_decode(tf.io.read_file(p)))[0]),
                            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    # A decode error drops only that element; the indices that survive tell which failed.
    good = {int(i) for i, _ in ds.ignore_errors().as_numpy_iterator()}
    bad = []
    for index in sorted(set(range(len(paths))) - good):
        try:  # decode once more eagerly, for TensorFlow's own message
            _decode(tf.io.read_file(paths[index]))
            message = "decode failed"
        except (tf.errors.OpError, ValueError) as err:
            message = _op_message(getattr(err, "message", str(err)))
        bad.append((index, message))
    return bad


def _resize(image, spec, training, augment, seed):
    image = tf.cast(image, tf.float32)
    size = tf.constant([spec.height, spec.width])
    if training and augment:
        return augment_one(image, spec, seed)
    if spec.resize == "center_crop":
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        scale = tf.reduce_max(tf.cast(size, tf.float32) / shape)
        scaled = tf.cast(tf.math.ceil(shape * scale), tf.int32)
        image = tf.image.resize(image, scaled, method="bilinear", antialias=True)
        return tf.image.resize_with_crop_or_pad(image, spec.height, spec.width)
    # antialias=True is PIL's bilinear filter when shrinking; rounding to 8-bit levels as an
    # image library does makes the result match PIL-resized photos to within one grey level.
    image = tf.image.resize(image, size, method="bilinear", antialias=True)
    return tf.clip_by_value(tf.round(image), 0.0, 255.0)


def preprocess(data, spec, training=False, augment=False, seed=None):
    """Encoded image bytes -> (height, width, 3) float32, normalised as `spec` says."""
    if seed is None:
        seed = tf.constant([0, 0], tf.int64)
    image = _resize(_decode(data), spec, training, augment, seed)
    image = normalizer(spec)(image)
    image.set_shape([spec.height, spec.width, 3])
    return image


def normalizer(spec):
    """pixels (..., H, W, 3), uint8 or float 0..255 -> float32 normalised as `spec` says; one
    image or a batch (raw-image training normalises its in-memory uint8 batches with it)."""
    mean = tf.constant(spec.mean, tf.float32)
    std = tf.constant(spec.std, tf.float32)

    def normalise(pixels):
        x = tf.cast(pixels, tf.float32)
        if spec.bgr:  # Caffe-trained weights; mean/std are then given in BGR order too
            x = x[..., ::-1]
        return (x - mean) / std
    return normalise


def augment_one(image, spec, seed):
    """Random crop (of the image upscaled by 1/0.875) + horizontal flip, stateless from seed."""
    size = tf.constant([spec.height, spec.width])
    big = tf.cast(tf.round(tf.cast(size, tf.float32) * _AUGMENT_SCALE), tf.int32)
    image = tf.image.resize(tf.cast(image, tf.float32), big, method="bilinear", antialias=True)
    image = tf.image.stateless_random_crop(image, [spec.height, spec.width, 3], seed=seed)
    return tf.image.stateless_random_flip_left_right(image, seed=seed + 1)


def augmenter(spec):
    """augment_one over a batch of pixels (n, H, W, 3) with per-item int64 seeds (n, 2)."""
    def augment(pixels, seeds):
        return tf.map_fn(lambda args: augment_one(args[0], spec, args[1]), (pixels, seeds),
                         fn_output_signature=tf.float32)
    return augment


def image_loader(spec, training=False, augment=False):
    """A tf.data map function `(path, seed) -> image` for pipelines that carry their own
    tags/labels next to the image paths (seed: int64 (2,), e.g. from Dataset.random)."""
    def load(path, seed):
        return preprocess(tf.io.read_file(path), spec, training, augment, seed)
    return load


def load_image(path, spec):
    """One image file as a (1, height, width, 3) normalised batch (e.g. a search query)."""
    if not os.path.isfile(path):
        raise MissingFileError(f"{path}: image file not found")
    try:
        return preprocess(tf.io.read_file(path), spec)[tf.newaxis]
    except tf.errors.InvalidArgumentError as err:
        raise DataError(f"{path}: cannot decode image {os.path.basename(path)}: "
                        f"{_op_message(err.message)}") from None


def image_dataset(files, spec, batch_size, training=False, augment=False, shuffle=False,
                  seed=0, repeat=False, drop_remainder=False, input_context=None):
    """A tf.data.Dataset of {"image": (b, h, w, 3), "row": (b,), "index": (b,)} batches.

    files: an ImageFiles (from list_image_files) or a list of paths. "index" is the position
    in `files`, "row" the dataset row (id-list line). Augmentation (random crop + flip) only
    when training and augment; its randomness is stateless, from `seed` and the element.
    input_context: a tf.distribute.InputContext; each input pipeline then reads its own shard
    and batches per replica.
    """
    if isinstance(files, ImageFiles):
        paths, rows = list(files.paths), np.asarray(files.rows, np.int64)
    else:
        paths = [str(p) for p in files]
        rows = np.arange(len(paths), dtype=np.int64)
    if not paths:
        raise ValueError("image_dataset: no image files given")
    ds = tf.data.Dataset.from_tensor_slices(
        (np.asarray(paths, dtype=object).astype(str), rows, np.arange(len(paths))))
    if input_context is not None:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    if shuffle:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    # Per-element stateless seeds: augmentation is reproducible and differs across epochs.
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    ds = tf.data.Dataset.zip((ds, seeds))

    loader = image_loader(spec, training, augment)

    def load(item, elem_seed):
        path, row, index = item
        return {"image": loader(path, elem_seed), "row": row, "index": index}

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
