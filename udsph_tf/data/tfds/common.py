"""Shared machinery of the cross-modal TFDS builders: config, file access, example spec, splits."""

import dataclasses
from typing import Callable, List, Optional, Sequence

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from udsph_tf.data import validation
from udsph_tf.data.readers import lines_of

# Every builder writes these splits. "train" and "validation" are subsets of "database"
# (the data layer's Split invariants), so the TFDS splits overlap by design.
SPLIT_FIELDS = {"query": "query_idx", "database": "database_idx", "train": "train_idx",
                 "validation": "val_idx"}

IMAGE_SOURCES = ("mat", "photos", "features")


@dataclasses.dataclass(eq=False)
class CrossModalConfig(tfds.core.BuilderConfig):
    """A build variant: where the image side comes from and how the split is drawn.

    image_source: "mat" (uint8 pixel arrays in a .mat/.h5, e.g. DCMH's IAll), "photos" (the
    original JPEG files), or "features" (a precomputed float matrix, `feature_dim` wide).
    image_file/image_key: the file (relative to manual_dir) and key of the mat/features source;
    row_key: optional key in that file mapping its rows to rows of the release (the dataset is
    then restricted to those rows, e.g. `row_in_20015` of the mirflickr730 features).
    only_available_photos: "photos" keeps only the rows whose photo exists instead of failing.
    split_seed/num_query/num_train/num_val: arguments of udsph_tf.data.make_split (-1 =
    the standard sizes); split_file (relative to manual_dir) fixes the split instead.
    """

    image_source: str = "photos"
    image_file: str = ""
    image_key: str = ""
    row_key: str = ""
    feature_dim: int = 0
    only_available_photos: bool = False
    split_seed: int = 0
    num_query: int = -1
    num_train: int = -1
    num_val: int = -1
    split_file: str = ""
    # Dataset specific knobs (ignored by the builders that do not use them).
    num_concepts: int = 21           # NUS-WIDE: top-21 or top-10 concepts
    source: str = "release"          # NUS-WIDE: "release" (DCMH .mat files) or "original"
    year: str = "2014"               # COCO annotations year
    vocab_size: int = 2000           # COCO caption vocabulary (tag BoW width)

    def __post_init__(self):
        if self.image_source not in IMAGE_SOURCES:
            raise ValueError(f"config {self.name!r}: image_source must be one of "
                             f"{IMAGE_SOURCES}, got {self.image_source!r}")
        if self.image_source == "features" and self.feature_dim <= 0:
            raise ValueError(f"config {self.name!r}: a features config needs feature_dim > 0")


def with_split(config: CrossModalConfig, *, split_seed: int, num_query: int = -1,
               num_train: int = -1, num_val: int = -1, name: str = "") -> CrossModalConfig:
    """A copy of a registered config with another split (its name says so, so builds differ)."""
    if not name:
        sizes = [f"{tag}{v}" for tag, v in (("q", num_query), ("t", num_train), ("v", num_val))
                 if v >= 0]
        name = "_".join([config.name, f"seed{split_seed}"] + sizes)
    return dataclasses.replace(config, name=name, split_seed=split_seed, num_query=num_query,
                               num_train=num_train, num_val=num_val, split_file="")


# ------------------------------------------------------------------------------------------
# File access. Everything goes through epath/gfile file objects so that builds work on any
# filesystem TFDS supports (and inside TFDS's test harness, which forbids os/open/np.load(path)).
# ------------------------------------------------------------------------------------------

def require(path: epath.Path, what: str) -> epath.Path:
    if not path.exists():
        raise FileNotFoundError(f"{what}: file not found: {path} (see the builder's "
                                "MANUAL_DOWNLOAD_INSTRUCTIONS for where to get it)")
    return path


def read_lines(path: epath.Path, what: str) -> List[str]:
    """One line per row of a release file (read through epath: the builders' paths may be
    remote); the blank-line rule is data.readers.lines_of's (rows=True)."""
    text = require(path, what).read_bytes().decode("utf-8", errors="replace")
    return lines_of(text, rows=True)


def check_count(path, count: int, expected: int, what: str = "rows"):
    if count != expected:
        raise ValueError(f"{path}: {count} {what}, expected {expected} (the rows of the label "
                         "file; all files of a release must list the same items in order)")


def _is_hdf5(path: epath.Path) -> bool:
    with path.open("rb") as f:
        head = f.read(520)
    # MATLAB v7.3 files carry a 512-byte text header before the HDF5 signature.
    return head[:8] == b"\x89HDF\r\n\x1a\n" or head[512:520] == b"\x89HDF\r\n\x1a\n"


class ArraySource:
    """One array of a .mat (v5 or v7.3), .h5, .npz or .npy file, read whole or row by row.

    Rows are addressed along `row_axis` of the array as MATLAB/NumPy sees it. A v7.3 .mat
    stores arrays with reversed axes; they are reversed back here, and huge pixel arrays such
    as DCMH's 20,015 x 224 x 224 x 3 IAll are read one row at a time instead of whole.
    """

    def __init__(self, path: epath.Path, key: str, what: str):
        self.path, self.key, self.what = require(path, what), key, what
        self._h5file = None
        self._dataset = None
        self._array = None
        self._reverse = False
        suffix = path.suffix.lower()
        if suffix in (".mat", ".h5", ".hdf5") and _is_hdf5(path):
            import h5py
            self._h5file = h5py.File(path.open("rb"), "r")
            if key not in self._h5file:
                raise validation.missing_key(path, key, list(self._h5file.keys()))
            self._dataset = self._h5file[key]
            self._reverse = suffix == ".mat"
            self.shape = tuple(self._dataset.shape[::-1] if self._reverse
                               else self._dataset.shape)
        elif suffix == ".mat":
            import scipy.io
            with path.open("rb") as f:
                content = scipy.io.loadmat(f, variable_names=[key])
            if key not in content:
                with path.open("rb") as f:
                    names = [w[0] for w in scipy.io.whosmat(f)]
                raise validation.missing_key(path, key, names)
            self._array = content[key]
        elif suffix == ".npz":
            with path.open("rb") as f, np.load(f) as z:
                if key not in z.files:
                    raise validation.missing_key(path, key, z.files)
                self._array = z[key]
        elif suffix == ".npy":
            with path.open("rb") as f:
                self._array = np.load(f)
        else:
            raise ValueError(f"{what}: {path}: unsupported file type {suffix!r} "
                             "(use .mat, .h5, .npz or .npy)")
        if self._array is not None:
            self.shape = tuple(self._array.shape)

    @property
    def where(self) -> str:
        return validation.where(self.path, self.key)

    def read(self) -> np.ndarray:
        if self._array is None:
            data = self._dataset[()]
            self._array = data.transpose() if self._reverse else data
        return self._array

    def row_axis(self, num_rows: int) -> int:
        """The axis holding the items: the first one of length num_rows, else the last."""
        for axis in (0, len(self.shape) - 1):
            if self.shape[axis] == num_rows:
                return axis
        raise ValueError(f"{self.where}: shape {self.shape} has no axis of length {num_rows} "
                         "(the number of items in the label file)")

    def row(self, i: int, axis: int) -> np.ndarray:
        if self._array is not None:
            return np.take(self._array, i, axis=axis)
        h5_axis = len(self.shape) - 1 - axis if self._reverse else axis
        index = [slice(None)] * len(self.shape)
        index[h5_axis] = i
        data = self._dataset[tuple(index)]
        return data.transpose() if self._reverse else data

    def close(self):
        if self._h5file is not None:
            self._h5file.close()
            self._h5file = None


def as_hwc_uint8(pixels: np.ndarray, where: str) -> np.ndarray:
    """One image of a pixel array as H x W x 3 uint8 (channel-first rows are moved last)."""
    if pixels.ndim != 3:
        raise ValueError(f"{where}: an image row must be 3-d (H, W, 3), got shape {pixels.shape}")
    if pixels.shape[-1] != 3 and pixels.shape[0] == 3:
        pixels = np.moveaxis(pixels, 0, -1)
    if pixels.shape[-1] != 3:
        raise ValueError(f"{where}: image rows need 3 colour channels, got shape {pixels.shape}")
    if pixels.dtype != np.uint8:
        if pixels.min() < 0 or pixels.max() > 255:
            raise ValueError(f"{where}: pixel values outside 0..255 "
                             f"({pixels.min()}..{pixels.max()}); store uint8 pixels")
        pixels = np.round(pixels).astype(np.uint8)
    return np.ascontiguousarray(pixels)


def to_uint8_counts(arr: np.ndarray, where: str) -> np.ndarray:
    """Tags/labels are stored as uint8 (4x smaller than float32); refuse what would not fit."""
    if arr.size and (arr.min() < 0 or arr.max() > 255 or np.any(arr != np.round(arr))):
        raise ValueError(f"{where}: expected non-negative integer counts <= 255 "
                         f"(found values {arr.min()}..{arr.max()})")
    return arr.astype(np.uint8)


# ------------------------------------------------------------------------------------------
# The release as read from manual_dir, and the example spec written for it.
# ------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Release:
    """Aligned rows of one data set as read from the manual files (before any split).

    `image(pos)` returns what the "image" feature accepts for row `pos` (uint8 array, photo
    path or float vector). `source_rows` are the rows of the release files (differ from
    0..N-1 when a config restricts the rows).
    """

    labels: np.ndarray
    tags: np.ndarray
    ids: np.ndarray
    texts: Sequence[str]
    image_files: Sequence[str]
    source_rows: np.ndarray
    image: Callable[[int], object]
    label_names: Optional[List[str]] = None
    tag_vocab: Optional[List[str]] = None
    sources: Optional[dict] = None

    def __len__(self):
        return len(self.labels)

    def subset(self, rows: np.ndarray) -> "Release":
        rows = np.asarray(rows, dtype=np.int64)
        image = self.image
        return dataclasses.replace(
            self, labels=self.labels[rows], tags=self.tags[rows], ids=self.ids[rows],
            texts=[self.texts[i] for i in rows], image_files=[self.image_files[i] for i in rows],
            source_rows=self.source_rows[rows], image=lambda pos: image(int(rows[pos])))


def features_dict(config: CrossModalConfig, num_labels: int, tag_dim: int):
    if config.image_source == "features":
        image = tfds.features.Tensor(shape=(config.feature_dim,), dtype=np.float32)
    else:
        image = tfds.features.Image(shape=(None, None, 3))
    return tfds.features.FeaturesDict({
        "image": image,
        "image_file": tfds.features.Text(),  # photo file name (or "" when unknown)
        "tags": tfds.features.Tensor(shape=(tag_dim,), dtype=np.uint8),
        "text": tfds.features.Text(),        # the raw tags / captions
        "labels": tfds.features.Tensor(shape=(num_labels,), dtype=np.uint8),
        "id": np.int64,                       # original id (photo number / image id)
        "index": np.int64,                    # row of this build (0..N-1): split indices
        "source_row": np.int64,               # row of the release files
    })


def validate_release_arrays(dataset: str, labels, where_labels: str, tags, where_tags: str):
    validation.validate_arrays(dataset, labels=labels, label_src=where_labels,
                               tags=tags, tag_src=where_tags)


def image_source_for(config: CrossModalConfig, manual_dir: epath.Path, num_rows: int,
                     image_files: Sequence[str], photo_dirs: Sequence[str]):
    """(image(pos) callable, kept rows) for the config's image source.

    kept rows is None when every release row has an image; else the release rows to keep.
    """
    if config.image_source == "photos":
        return photo_source(config, manual_dir, image_files, photo_dirs)
    src = ArraySource(manual_dir / config.image_file, config.image_key,
                      f"{config.name} image {config.image_source}")
    if config.image_source == "features":
        feats = src.read()
        src.close()
        if feats.ndim != 2:
            raise ValueError(f"{src.where}: features must be 2-d (items, dim), got {feats.shape}")
        rows = None
        if config.row_key:
            rows = ArraySource(manual_dir / config.image_file, config.row_key,
                               "feature row map").read().astype(np.int64).reshape(-1)
            if len(rows) != len(feats):
                raise ValueError(f"{src.path}: {config.row_key!r} has {len(rows)} entries but "
                                 f"{config.image_key!r} has {len(feats)} rows")
            if rows.min() < 0 or rows.max() >= num_rows:
                raise ValueError(f"{src.path}: {config.row_key!r} holds rows outside "
                                 f"0..{num_rows - 1}")
        elif len(feats) != num_rows:
            if feats.shape[1] == num_rows:  # stored (dim, items), as some MATLAB files are
                feats = feats.T
            else:
                raise ValueError(f"{src.where}: {feats.shape[0]} feature rows but the labels "
                                 f"have {num_rows} rows")
        if feats.shape[1] != config.feature_dim:
            raise ValueError(f"{src.where}: features are {feats.shape[1]}-d but config "
                             f"{config.name!r} declares feature_dim={config.feature_dim}")
        validation.check_finite(feats, src.where)
        feats = feats.astype(np.float32)
        if rows is None:
            return (lambda pos: feats[pos]), None
        by_release_row = {int(r): j for j, r in enumerate(rows)}
        return (lambda pos: feats[by_release_row[pos]]), rows
    # The pixel file stays open while the examples are written (h5py closes it on collection).
    axis = src.row_axis(num_rows)
    return (lambda pos: as_hwc_uint8(src.row(pos, axis), f"{src.where} row {pos}")), None


def photo_source(config: CrossModalConfig, manual_dir: epath.Path,
                 image_files: Sequence[str], photo_dirs: Sequence[str]):
    """Find each row's photo under manual_dir (its relative path, or its name in photo_dirs)."""
    paths, missing = [], []
    for pos, rel in enumerate(image_files):
        found = None
        if rel:
            for cand in [manual_dir / rel] + [manual_dir / d / epath.Path(rel).name
                                              for d in photo_dirs]:
                if cand.exists():
                    found = cand
                    break
        paths.append(found)
        if found is None:
            missing.append(pos)
    if missing and not config.only_available_photos:
        first = [image_files[p] or f"row {p}" for p in missing[:5]]
        raise FileNotFoundError(
            f"config {config.name!r}: {len(missing)} of {len(image_files)} photos not found "
            f"under {manual_dir} (looked at the listed path and in {list(photo_dirs)}; first "
            f"missing: {first}). Use a config with only_available_photos=True to keep only "
            "the rows whose photo exists.")
    kept = None
    if missing:
        kept = np.asarray([p for p, path in enumerate(paths) if path is not None], np.int64)
        if kept.size == 0:
            raise FileNotFoundError(f"config {config.name!r}: none of the {len(image_files)} "
                                    f"photos was found under {manual_dir}")
    return (lambda pos: paths[pos]), kept


# ------------------------------------------------------------------------------------------
# Splits: always udsph_tf.data's make_split / load_split_file, so raw and TFDS runs agree.
# ------------------------------------------------------------------------------------------

def make_build_split(config: CrossModalConfig, manual_dir: epath.Path, num_items: int,
                     dataset_name: str):
    from udsph_tf.data.splits import load_split_file, make_split
    if config.split_file:
        path = require(manual_dir / config.split_file, f"config {config.name!r} split file")
        split = load_split_file(str(path), num_items)
    else:
        split = make_split(num_items, dataset_name, config.split_seed, num_query=config.num_query,
                           num_train=config.num_train, num_val=config.num_val)
    return split.check(num_items, f"config {config.name!r} split")


def split_metadata(split) -> dict:
    d = split.to_dict()
    d["source"] = str(d.get("source", ""))
    return d


def text_of(line: str) -> str:
    return " ".join(line.split())
