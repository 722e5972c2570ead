"""Readers for the release formats (.mat v5/v7.3, .h5, .npz, .npy, image folders) and datasets."""

import contextlib
import dataclasses
import os
import re
import sys
import warnings
from typing import List, Optional, Sequence

import numpy as np

from udsph_tf.data import validation as V
from udsph_tf.data.types import CrossModalData
from udsph_tf.errors import ConfigError, DataError, MissingFileError, UserError

MIRFLICKR_LABELS = [
    "animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food", "indoor",
    "lake", "male", "night", "people", "plant_life", "portrait", "river", "sea", "sky",
    "structures", "sunset", "transport", "tree", "water"]

# Where each release keeps its modalities: one file per modality (DJSRH-style names) first,
# then single files holding all three (the DCMH/SSAH releases).
LAYOUTS = {
    "mirflickr": {"separate": {"labels": "mirflickr25k-lall.mat", "tags": "mirflickr25k-yall.mat",
                               "images": "mirflickr25k-iall.mat"},
                  "combined": ["FLICKR-25K.mat", "mirflickr25k.mat", "mirflickr25k.h5",
                               "mirflickr25k.npz"]},
    "nuswide": {"separate": {"labels": "nus-wide-tc21-lall.mat", "tags": "nus-wide-tc21-yall.mat",
                             "images": "nus-wide-tc21-iall.mat"},
                "combined": ["NUS-WIDE-TC21.mat", "nuswide.mat", "nuswide.h5", "nuswide.npz"]},
    "coco": {"separate": {"labels": "mscoco-lall.mat", "tags": "mscoco-yall.mat",
                          "images": "mscoco-iall.mat"},
             "combined": ["MS-COCO.mat", "coco.mat", "coco.h5", "coco.npz"]},
}
# The DCMH/SSAH combined files call the image array `images`; tried only for the default key.
DEFAULT_KEYS = {"images": "IAll", "tags": "YAll", "labels": "LAll"}
KEY_ALIASES = {"images": ["images"], "tags": ["tags"], "labels": ["labels"]}

MIRFLICKR730_FILE = "mirflickr730-efficientnet-lite0.npz"
MIRFLICKR730_SPLIT = "mirflickr730-split.npz"
ID_LIST = "img_database.txt"
TAG_VOCAB = "common_tags.txt"
DATASETS = ("default", "mirflickr", "nuswide", "coco", "mirflickr730", "custom",
            "synthetic_single", "synthetic_dense")

_MAT73_MAGIC = b"MATLAB 7.3"
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # an archive with members / an empty one


# --------------------------------------------------------------------------------------------
# Arrays from files


@contextlib.contextmanager
def _reading(path, fmt):
    """One DataError naming the file for whatever a reader library raises on damaged bytes:
    zipfile, zlib, h5py, scipy.io and numpy raise a zoo of types, none naming the path."""
    try:
        yield
    except (UserError, MemoryError):
        raise
    except PermissionError as err:
        raise DataError(f"{path}: not readable (permission denied)") from err
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from err
    except Exception as err:
        detail = (str(err).strip().splitlines() or [""])[0]
        raise DataError(f"{path}: cannot read this {fmt} file (truncated or damaged?): "
                        f"{type(err).__name__}: {detail}") from err


def _check_header(path, ext):
    """Name foreign bytes before numpy does: it would call them 'pickled data'."""
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        raise DataError(f"{path}: empty file (0 bytes)")
    if ext == ".npz" and not head.startswith(_ZIP_MAGICS):
        hint = "; it holds a single array: rename it to .npy" if head.startswith(_NPY_MAGIC) \
            else ""
        raise DataError(f"{path}: not a .npz archive (no zip header{hint})")
    if ext == ".npy" and not head.startswith(_NPY_MAGIC):
        hint = "; it is a zip archive: rename it to .npz" if head.startswith(_ZIP_MAGICS) else ""
        raise DataError(f"{path}: not a .npy file (no NumPy header{hint})")


def read_npz(path, keys: Optional[Sequence[str]] = None) -> dict:
    """Arrays of an .npz (all, or `keys`, each required), read eagerly, damage named."""
    path = V.require_file(path, "data file")
    with _reading(path, ".npz"):
        _check_header(path, ".npz")
        with np.load(path, allow_pickle=False) as z:
            for key in keys or ():
                if key not in z.files:
                    raise V.missing_key(path, key, z.files)
            return {k: z[k] for k in (keys or z.files)}


def _read_npy(path) -> np.ndarray:
    _check_header(path, ".npy")
    with _reading(path, ".npy"):
        try:
            # Memory-mapped: a large feature matrix is paged in by the rows actually gathered.
            return np.load(path, allow_pickle=False, mmap_mode="r")
        except ValueError:
            short = _npy_shortfall(path)
            if short:
                raise DataError(f"{path}: truncated .npy file: {short}") from None
            raise


def _npy_shortfall(path):
    """'header promises N bytes, M follow' when the data part is cut short, else None."""
    from numpy.lib import format as npy_format
    try:
        with open(path, "rb") as f:
            major, _ = npy_format.read_magic(f)
            read_header = npy_format.read_array_header_1_0 if major == 1 else \
                npy_format.read_array_header_2_0
            shape, _, dtype = read_header(f)
            offset = f.tell()
    except Exception:  # a damaged header: the caller's generic message covers it
        return None
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = os.path.getsize(path) - offset
    if have >= need:
        return None
    return (f"its header promises shape {tuple(shape)} {dtype} ({need} bytes of data) but "
            f"only {have} bytes follow")


def _is_mat73(path) -> bool:
    """MATLAB v7.3 files are HDF5 with a 512-byte text header (the userblock)."""
    with open(path, "rb") as f:
        return f.read(len(_MAT73_MAGIC)) == _MAT73_MAGIC


def _h5_keys(f) -> List[str]:
    import h5py
    keys = []

    def visit(name, obj):
        if name.startswith("#"):  # MATLAB's #refs# / #subsystem# internals
            return
        if isinstance(obj, h5py.Dataset) or "MATLAB_sparse" in obj.attrs:
            keys.append(name)

    f.visititems(visit)
    return keys


def _read_h5(path, key, matlab: bool) -> np.ndarray:
    import h5py
    with _reading(path, "HDF5" if not matlab else ".mat (v7.3, HDF5)"), \
            h5py.File(path, "r") as f:
        if key not in f or key.startswith("#"):
            raise V.missing_key(path, key, _h5_keys(f))
        obj = f[key]
        if isinstance(obj, h5py.Group):
            if "MATLAB_sparse" not in obj.attrs:
                raise DataError(f"{V.where(path, key)}: is an HDF5 group, not an array")
            # MATLAB sparse (column-compressed): data/ir/jc of the (rows x cols) matrix,
            # which is already the transpose of what h5py would show for a dense one.
            import scipy.sparse
            n_rows = int(obj.attrs["MATLAB_sparse"])
            jc = obj["jc"][()]
            data = obj["data"][()] if "data" in obj else np.ones(int(jc[-1]))
            ir = obj["ir"][()] if "ir" in obj else np.zeros(0, np.int64)
            mat = scipy.sparse.csc_matrix((data, ir, jc), shape=(n_rows, len(jc) - 1))
            return np.asarray(mat.toarray())
        if obj.dtype == h5py.ref_dtype or obj.dtype.kind == "O":
            raise DataError(f"{V.where(path, key)}: holds MATLAB cell/object references, "
                            "which are not supported; store a numeric matrix")
        arr = obj[()]
    # MATLAB is column-major: a (N, D) matrix lands in HDF5 as (D, N), so reverse the axes.
    return np.ascontiguousarray(arr.T) if matlab else np.asarray(arr)


def _read_mat(path, key) -> np.ndarray:
    import scipy.io
    import scipy.sparse
    from scipy.io.matlab import matfile_version
    try:
        major, _ = matfile_version(path)
    except Exception as e:  # scipy raises several types for a file that is not a .mat
        raise DataError(f"{path}: not a readable .mat file ({e})") from e
    if major == 2:
        return _read_h5(path, key, matlab=True)
    with _reading(path, ".mat"):
        names = [name for name, _, _ in scipy.io.whosmat(path)]
        if key not in names:
            raise V.missing_key(path, key, names)
        arr = scipy.io.loadmat(path, variable_names=[key])[key]
    if scipy.sparse.issparse(arr):
        arr = arr.toarray()
    return np.asarray(arr)


def list_keys(path) -> List[str]:
    """The array names a file holds ([] for .npy, which holds one unnamed array)."""
    path = V.require_file(path, "data file")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        return []
    if ext == ".npz":
        with _reading(path, ".npz"):
            _check_header(path, ".npz")
            with np.load(path, allow_pickle=False) as z:
                return list(z.files)
    if ext == ".mat" and not _is_mat73(path):
        import scipy.io
        with _reading(path, ".mat"):
            return [name for name, _, _ in scipy.io.whosmat(path)]
    import h5py
    with _reading(path, "HDF5"), h5py.File(path, "r") as f:
        return _h5_keys(f)


def read_array(path, key: Optional[str] = None) -> np.ndarray:
    """One array from .npy, .npz, .mat (v4/v5 via scipy, v7.3 via h5py, transposed back)
    or .h5/.hdf5 (a MATLAB-written v7.3 file with another extension is detected by its header).
    """
    path = V.require_file(path, "data file")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        arr = _read_npy(path)
    elif ext == ".npz":
        arr = read_npz(path, [key])[key]
    elif ext == ".mat":
        arr = _read_mat(path, key)
    elif ext in (".h5", ".hdf5", ".h5py", ".hdf"):
        arr = _read_h5(path, key, matlab=_is_mat73(path))
    else:
        raise DataError(f"{path}: unsupported file type {ext!r} "
                        "(expected .mat, .h5, .hdf5, .npz or .npy)")
    if arr.dtype.kind in "OUSV":
        raise DataError(f"{V.where(path, key)}: expected a numeric array, got dtype {arr.dtype}")
    if arr.size == 0:  # zero rows (or columns): every later step would fail less clearly
        raise DataError(f"{V.where(path, key)}: holds no data (shape {arr.shape})")
    return arr


def read_lines(path) -> List[str]:
    """The non-blank lines of a list file (id list, tag vocabulary), stripped."""
    with _reading(path, "UTF-8 text"), \
            open(V.require_file(path, "text file"), encoding="utf-8") as f:
        return lines_of(f.read(), rows=False)


def lines_of(text, rows=False) -> List[str]:
    """The lines of a text file, by one of the two rules the data files need.

    rows=False (a list: ids, tags, vocabulary): stripped, blank lines dropped.
    rows=True (one line per data row, e.g. txt_database.txt): a blank line is a row (an item
    without tags) and is kept; only trailing blank lines, which are no rows, are dropped.
    """
    if not rows:
        return [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line.rstrip("\r") for line in text.splitlines()]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def read_tag_vocab(path) -> List[str]:
    """common_tags.txt: `tag count` per line, in bag-of-words column order."""
    return [line.split()[0] for line in read_lines(path)]


def ids_from_paths(paths: Sequence[str]) -> np.ndarray:
    """MIRFlickr-style `images/im123.jpg` -> 123 (int64); other names stay strings."""
    numbers = [re.search(r"(\d+)\D*$", os.path.basename(p)) for p in paths]
    if paths and all(numbers):
        ids = np.array([int(m.group(1)) for m in numbers], dtype=np.int64)
        if np.unique(ids).size == ids.size:
            return ids
    return np.array([os.path.splitext(os.path.basename(p))[0] for p in paths], dtype=str)


def resolve_image_paths(image_dir: str, rel_paths: Sequence[str], src: str) -> List[str]:
    """Join the id list to image_dir; accept image_dir being the id list's own sub-folder."""
    if not os.path.isdir(image_dir):
        raise MissingFileError(f"--image_dir {image_dir!r} is not a folder")
    joined = [os.path.join(image_dir, p) for p in rel_paths]
    flat = [os.path.join(image_dir, os.path.basename(p)) for p in rel_paths]
    found = np.array([os.path.exists(p) for p in joined])
    if not found.any():
        found_flat = np.array([os.path.exists(p) for p in flat])
        if found_flat.any():
            joined, found = flat, found_flat
    if not found.any():
        raise MissingFileError(f"none of the {len(joined)} images listed in {src} exist under "
                               f"{image_dir!r} (first looked for {joined[0]!r})")
    if not found.all():
        missing = np.nonzero(~found)[0]
        warnings.warn(f"{missing.size} of {len(joined)} images listed in {src} are missing "
                      f"under {image_dir!r} (first rows: {missing[:5].tolist()}); use "
                      "--skip_bad_images or a subset of the rows")
    return joined


# --------------------------------------------------------------------------------------------
# Datasets


def _in_dir(data_dir: str, path: str) -> str:
    """A file flag relative to --data_dir when it is not found as given."""
    if path and not os.path.isabs(path) and data_dir and not os.path.exists(path):
        return os.path.join(data_dir, path)
    return path


def _find_in_layout(name, data_dir, modality, key):
    """(path, key) of a modality in the release layout, or None; also what was tried."""
    layout = LAYOUTS[name]
    keys = [key] + (KEY_ALIASES[modality] if key == DEFAULT_KEYS[modality] else [])
    tried = []
    sep = os.path.join(data_dir, layout["separate"][modality])
    tried.append(V.where(sep, key))
    if os.path.isfile(sep):
        return (sep, key), tried
    for fname in layout["combined"]:
        path = os.path.join(data_dir, fname)
        tried.append(V.where(path, key))
        if os.path.isfile(path):
            present = list_keys(path)
            for k in keys:
                if k in present:
                    return (path, k), tried
    return None, tried


def _image_dir_mode(image_dir: str, data_dir: str, rows=None):
    """Image paths and ids from img_database.txt (in image_dir or data_dir)."""
    for folder in (image_dir, data_dir):
        list_path = os.path.join(folder, ID_LIST) if folder else ""
        if list_path and os.path.isfile(list_path):
            lines = read_lines(list_path)
            if rows is not None:
                if len(lines) <= int(np.max(rows)):
                    raise DataError(f"{list_path}: {len(lines)} lines, but row "
                                    f"{int(np.max(rows))} is needed")
                lines = [lines[i] for i in rows]
            return resolve_image_paths(image_dir, lines, list_path), ids_from_paths(lines), \
                list_path
    raise MissingFileError(f"raw-image mode (--image_dir={image_dir!r}) needs the row id list "
                           f"{ID_LIST} (lines like images/im1.jpg) in --image_dir or --data_dir")


def _maybe_vocab(data_dir, tag_dim):
    path = os.path.join(data_dir, TAG_VOCAB) if data_dir else ""
    if path and os.path.isfile(path):
        vocab = read_tag_vocab(path)
        if len(vocab) == tag_dim:
            return vocab
        warnings.warn(f"{path}: {len(vocab)} tags but the tag matrix has {tag_dim} columns; "
                      "tag names not attached")
    return None


def _as_float(arr):
    return arr if arr.dtype == np.float32 else arr.astype(np.float32)


def _rows_first(images, num_rows):
    """Raw pixel arrays arrive as (H, W, C, N) from DCMH's MATLAB IAll (224x224x3xN) and as
    (N, C, H, W) from channel-first writers; the rest of the code wants (N, H, W, C)."""
    if images is None or images.ndim != 4:
        return images
    if images.shape[0] != num_rows and images.shape[-1] == num_rows:
        images = np.moveaxis(images, -1, 0)
    if images.shape[1] in (1, 3) and images.shape[-1] not in (1, 3):
        images = np.transpose(images, (0, 2, 3, 1))
    return np.ascontiguousarray(images)


def _image_array(arr):
    # Features become float32; raw pixel arrays (N, H, W, C) keep their dtype (memory).
    return arr if arr.ndim == 4 else _as_float(arr)


def _with_region_grid(images, data_dir, grid, cache_dir=""):
    """(n, D) global features -> (n, grid*grid + 1, D): the grid's cells, then the global row."""
    from udsph_tf.data.regions import DEFAULT_CACHE_DIR, cache_folder, mirflickr730_regions
    try:
        cache = cache_folder(cache_dir, data_dir)
    except ValueError as err:
        raise ConfigError(f"--cache_dir={cache_dir or DEFAULT_CACHE_DIR}: {err}") from None
    regions = mirflickr730_regions(data_dir, grid=grid, cache_dir=str(cache))
    if regions.shape[0] != images.shape[0] or regions.shape[2] != images.shape[1]:
        raise DataError(f"mirflickr730: regions {regions.shape} do not fit the global "
                        f"features {images.shape}")
    return np.concatenate([regions, _as_float(images)[:, None, :]], axis=1)


def _load_mirflickr730(data_dir, image_file, image_key, image_dir, validate, region_grid=0,
                       cache_dir=""):
    from udsph_tf.data.splits import load_split_file
    path = V.require_file(os.path.join(data_dir, MIRFLICKR730_FILE), "mirflickr730",
                          hint="point --data_dir at the shared mirflickr25k folder")
    arrays = read_npz(path, ["feat_lite0_1280", "LAll", "YAll", "image_id", "row_in_20015"])
    images, image_src = arrays["feat_lite0_1280"], V.where(path, "feat_lite0_1280")
    image_paths, ids = None, arrays["image_id"].astype(np.int64)
    if image_file:
        images, image_src = read_array(image_file, image_key), V.where(image_file, image_key)
    elif image_dir:
        images = None
        image_paths, path_ids, image_src = _image_dir_mode(image_dir, data_dir,
                                                           rows=arrays["row_in_20015"])
        if path_ids.dtype.kind == "i" and not np.array_equal(path_ids, ids):
            raise DataError(f"{image_src}: the lines at row_in_20015 of {path} do not name "
                            "its image_id photos (a different id list?)")
    images = _rows_first(images, len(arrays["LAll"]))
    if validate:
        V.validate_arrays("mirflickr730", labels=arrays["LAll"], label_src=V.where(path, "LAll"),
                          tags=arrays["YAll"], tag_src=V.where(path, "YAll"),
                          images=images, image_src=image_src,
                          num_paths=None if image_paths is None else len(image_paths),
                          path_src=image_src)
    split_path = os.path.join(data_dir, MIRFLICKR730_SPLIT)
    split = load_split_file(split_path, len(ids)) if os.path.isfile(split_path) else None
    if split is None:
        warnings.warn(f"{split_path} not found: mirflickr730 falls back to a seeded split")
    data = CrossModalData(
        name="mirflickr730", images=None if images is None else _image_array(images),
        tags=_as_float(arrays["YAll"]), labels=_as_float(arrays["LAll"]), ids=ids,
        image_paths=image_paths, tag_vocab=_maybe_vocab(data_dir, arrays["YAll"].shape[1]),
        label_names=list(MIRFLICKR_LABELS), default_split=split)
    if region_grid:
        if images is None or image_file:
            raise ConfigError("--region_grid reads the regions of the shared Lite0 features; "
                              "it does not combine with --image_file or --image_dir")
        data = dataclasses.replace(data, images=_with_region_grid(data.images, data_dir,
                                                                  region_grid, cache_dir))
    return data


def load_dataset(name: str, data_dir: str = "", *, image_file: str = "", tag_file: str = "",
                 label_file: str = "", image_key: str = "IAll", tag_key: str = "YAll",
                 label_key: str = "LAll", image_dir: str = "",
                 validate: bool = True, region_grid: int = 0,
                 cache_dir: str = "") -> CrossModalData:
    """Read a dataset by name (see DATASETS); file flags override the release layout.

    The image side is, in order: --image_file (precomputed features or pixel arrays),
    --image_dir (raw images named by img_database.txt), the release's image file.
    region_grid (mirflickr730 only): (n, g*g + 1, 1280) grid regions + the global row,
    cached in cache_dir ('' = ~/.cache/udsph_tf).
    """
    if name not in DATASETS:
        raise ConfigError(f"--dataset={name}: unknown dataset {name!r}; choose one of "
                          f"{list(DATASETS)}")
    from udsph_tf.data.synthetic import GENERATED
    if name in GENERATED:
        given = [f for f in (data_dir, image_file, tag_file, label_file, image_dir) if f]
        if given:
            warnings.warn(f"the {name} dataset is generated; ignoring {given} "
                          "(use --dataset=custom to read your own files)")
        return GENERATED[name]()
    image_file = _in_dir(data_dir, image_file)
    tag_file = _in_dir(data_dir, tag_file)
    label_file = _in_dir(data_dir, label_file)
    if name == "mirflickr730":
        return _load_mirflickr730(data_dir, image_file, image_key, image_dir, validate,
                                  region_grid, cache_dir)
    if region_grid:
        raise ConfigError(f"--region_grid: region grids exist for mirflickr730 only, not "
                          f"{name}")
    if data_dir and not os.path.isdir(data_dir):
        raise MissingFileError(f"{name}: --data_dir {data_dir!r} is not a folder")

    sources = {}
    for modality, given, key in (("labels", label_file, label_key), ("tags", tag_file, tag_key)):
        if given:
            sources[modality] = (V.require_file(given, f"{name} {modality} (--{modality[:-1]}"
                                                "_file)"), key)
        elif name == "custom":
            raise ConfigError(f"--{modality[:-1]}_file is required by --dataset=custom")
        else:
            found, tried = _find_in_layout(name, data_dir, modality, key)
            if found is None:
                raise MissingFileError(
                    f"{name}: no {modality} file found; looked for {', '.join(tried)}. "
                    f"Point --data_dir at the release or give --{modality[:-1]}_file")
            sources[modality] = found

    labels = read_array(*sources["labels"])
    tags = read_array(*sources["tags"])
    labels, classes = V.class_indices_to_one_hot(labels, len(tags))
    if classes is not None:
        print(f"{V.where(*sources['labels'])}: one class index per item, {len(classes)} "
              f"classes ({classes[0]:g} .. {classes[-1]:g}): used as one-hot labels",
              file=sys.stderr)
    images, image_paths, ids, image_src = None, None, None, ""
    if image_file:
        images, image_src = read_array(image_file, image_key), V.where(image_file, image_key)
    elif image_dir:
        image_paths, ids, image_src = _image_dir_mode(image_dir, data_dir)
    elif name != "custom":
        found, tried = _find_in_layout(name, data_dir, "images", image_key)
        if found is None:
            raise MissingFileError(
                f"{name}: no image side found; looked for {', '.join(tried)}. Give precomputed "
                "image features with --image_file=FILE (.npy/.npz/.mat/.h5; --image_key=KEY "
                "names the array), or raw images with --image_dir=DIR (row ids from "
                f"{ID_LIST}, lines like images/im1.jpg)")
        images, image_src = read_array(*found), V.where(*found)
    else:
        raise ConfigError("--image_file: --dataset=custom needs the image side: --image_file "
                          "(features) or --image_dir (raw images listed in img_database.txt)")

    images = _rows_first(images, len(labels))
    if validate:
        V.validate_arrays(name, labels=labels, label_src=V.where(*sources["labels"]),
                          tags=tags, tag_src=V.where(*sources["tags"]),
                          images=images, image_src=image_src,
                          num_paths=None if image_paths is None else len(image_paths),
                          path_src=image_src)
    if ids is None:
        list_path = os.path.join(data_dir, ID_LIST) if data_dir else ""
        lines = read_lines(list_path) if list_path and os.path.isfile(list_path) else []
        ids = ids_from_paths(lines) if len(lines) == len(labels) else \
            np.arange(len(labels), dtype=np.int64)
    return CrossModalData(
        name=name, images=None if images is None else _image_array(images),
        tags=_as_float(tags), labels=_as_float(labels), ids=ids, image_paths=image_paths,
        tag_vocab=_maybe_vocab(data_dir, tags.shape[1]),
        label_names=list(MIRFLICKR_LABELS) if name == "mirflickr" else None)


def load_dataset_from_config(config) -> CrossModalData:
    """load_dataset with the Config fields of the same names; --data_source=tfds reads a
    built TFDS dataset instead (udsph_tf.data.tfds), so callers need one entry point."""
    if config.region_grid and config.image_regions:
        raise ConfigError(f"--region_grid={config.region_grid} gives each image its own region "
                          f"rows (the grid cells, then the global row); drop "
                          f"--image_regions={config.image_regions}")
    if config.region_grid and config.data_source == "tfds":
        raise ConfigError("--region_grid pools the shared MIRFlickr-730 photos' Lite0 maps; "
                          "it reads --data_source=raw only")
    if config.data_source == "tfds":
        from udsph_tf.data.tfds import load_tfds_from_config
        data = load_tfds_from_config(config)
    else:
        data = _load_raw_from_config(config)
    if config.text_features == "glove":
        from udsph_tf.data.glove import with_glove_text
        split = data.default_split
        data = with_glove_text(data, None if split is None else split.train_idx)
    return data


def _load_raw_from_config(config) -> CrossModalData:
    return load_dataset(config.dataset, config.data_dir, image_file=config.image_file,
                        tag_file=config.tag_file, label_file=config.label_file,
                        image_key=config.image_key, tag_key=config.tag_key,
                        label_key=config.label_key, image_dir=config.image_dir,
                        region_grid=config.region_grid, cache_dir=config.cache_dir)
