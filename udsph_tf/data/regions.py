"""Grid region features of the 730 MIRFlickr photos (EfficientNet-Lite0), computed once and cached.

The photos go through the repo's own pipeline (`udsph_tf.data.images` + the Lite0 port of
`udsph_tf.models.backbones`, as `--mode=extract` runs them): bilinear resize to 224x224, no
crop, (x - 127) / 128, then the 7x7x1280 map of the head, average-pooled to a grid x grid map.
The result is cached as an .npz outside the repository and the read-only shared data.
"""

import contextlib
import hashlib
import json
import os
import pathlib
import sys
import time

import numpy as np

from udsph_tf.data import images as image_data
from udsph_tf.data.readers import ID_LIST, MIRFLICKR730_FILE, ids_from_paths
from udsph_tf.files import write_npz

BACKBONE = "efficientnet_lite0"
CACHE_FORMAT = 1  # bump when what is cached, or how, changes
DEFAULT_CACHE_DIR = pathlib.Path("~/.cache/udsph_tf")


def grid_pooling_matrix(map_size: int, grid: int) -> np.ndarray:
    """(grid*grid, map_size*map_size) weights of adaptive average pooling, row-major cells.

    Cell (i, j) averages map rows floor(i*m/g) .. ceil((i+1)*m/g)-1 and the same columns
    (PyTorch's AdaptiveAvgPool2d): cells tile the map exactly when g divides m and overlap by
    one row/column otherwise (7 -> 3: rows 0-2, 2-4, 4-6). grid = map_size is the identity.
    """
    if not 1 <= grid <= map_size:
        raise ValueError(f"grid must be in 1..{map_size} (the conv map is {map_size}x"
                         f"{map_size}), got {grid}")
    bins = [(i * map_size // grid, -(-(i + 1) * map_size // grid)) for i in range(grid)]
    weights = np.zeros((grid, grid, map_size, map_size), np.float64)
    for i, (r0, r1) in enumerate(bins):
        for j, (c0, c1) in enumerate(bins):
            weights[i, j, r0:r1, c0:c1] = 1.0 / ((r1 - r0) * (c1 - c0))
    return weights.reshape(grid * grid, map_size * map_size)


def pool_regions(regions: np.ndarray, grid: int) -> np.ndarray:
    """(n, m*m, c) regions of an m x m map (row-major) -> (n, grid*grid, c) float32."""
    n, num, channels = regions.shape
    size = int(round(num ** 0.5))
    if size * size != num:
        raise ValueError(f"pool_regions: {num} regions are not a square map")
    pool = grid_pooling_matrix(size, grid).astype(np.float32)
    out = np.empty((n, grid * grid, channels), np.float32)
    for start in range(0, n, 64):  # bounded float32 temporaries
        out[start:start + 64] = np.einsum("gr,nrc->ngc", pool,
                                          regions[start:start + 64].astype(np.float32))
    return out


def _photo_files(data_dir, rows):
    """The photos of the chosen npz rows (ImageFiles, id-list order), checked against image_id."""
    data_dir = pathlib.Path(data_dir)
    npz = data_dir / MIRFLICKR730_FILE
    if not npz.is_file():
        raise FileNotFoundError(f"MIRFlickr-730: {npz} not found (data_dir must be the shared "
                                "mirflickr25k folder)")
    with np.load(npz, allow_pickle=False) as data:
        for key in ("row_in_20015", "image_id"):
            if key not in data.files:
                raise ValueError(f"{npz}: key {key!r} missing (keys: {data.files})")
        list_rows, image_id = data["row_in_20015"], data["image_id"].astype(np.int64)
    rows = np.arange(len(list_rows)) if rows is None else np.asarray(rows, np.int64)
    if rows.ndim != 1 or rows.size == 0 or rows.min() < 0 or rows.max() >= len(list_rows):
        raise ValueError(f"rows must be a non-empty list of indices < {len(list_rows)}")
    # Missing files raise here, naming them; decoding is checked only before computing.
    files = image_data.list_image_files(str(data_dir / "images"), str(data_dir / ID_LIST),
                                        rows=list_rows[rows], check_decode=False)
    if not np.array_equal(ids_from_paths(files.ids), image_id[rows]):
        raise ValueError(f"{data_dir / ID_LIST}: the lines at row_in_20015 of {npz} do not "
                         "name its image_id photos (a different id list?)")
    return files, rows, image_id[rows]


def _weights_file():
    from udsph_tf.models.backbones.efficientnet_lite import default_weights_path
    return pathlib.Path(default_weights_path())


def cache_key(files, grid) -> str:
    """sha256 of what determines the regions: grid, backbone, weights, preprocessing, photos.

    Photos enter by id-list entry and byte size (not mtime: copies of the shared folder keep
    the contents but not the times).
    """
    from udsph_tf.models.backbones.efficientnet_lite import PREPROCESSING
    weights = _weights_file()
    spec = {"format": CACHE_FORMAT, "grid": int(grid), "backbone": BACKBONE,
            "weights": [weights.name, weights.stat().st_size],
            "preprocessing": PREPROCESSING,
            "photos": [[i, os.path.getsize(p)] for i, p in zip(files.ids, files.paths)]}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _compute_regions(files, batch_size=32):
    """The (n, 49, 1280) float32 head map of each photo, through `--mode=extract`'s code path."""
    from udsph_tf.models.backbones import build_backbone
    from udsph_tf.data.features import extract
    bad = image_data.find_unreadable(files.paths)
    if bad:
        shown = "; ".join(f"{files.paths[i]}: {msg}" for i, msg in bad[:3])
        raise ValueError(f"{len(bad)} MIRFlickr-730 photo(s) cannot be decoded: {shown}")
    backbone = build_backbone(BACKBONE)
    # extract's progress bar writes to stdout; the regions' progress belongs on stderr.
    with contextlib.redirect_stdout(sys.stderr):
        _, regions = extract(backbone, files, batch_size, progress=True,
                             regions_dtype=np.float32)
    return regions


def _save_npz(path, arrays):
    """Write atomically: a killed run leaves no half-written cache file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_npz(path, arrays)


def cache_folder(cache_dir, data_dir):
    """The region cache folder (`cache_dir`, '' or None = DEFAULT_CACHE_DIR, ~ expanded);
    ValueError when it lies inside the read-only data folder or is a file."""
    folder = pathlib.Path(os.path.expanduser(str(cache_dir or DEFAULT_CACHE_DIR)))
    if _is_inside(folder, data_dir):
        raise ValueError(f"cache_dir {folder} is inside the read-only data folder {data_dir}; "
                         f"the region cache must be written elsewhere")
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"cache_dir {folder} is a file, not a folder")
    return folder


def _is_inside(path, folder):
    try:
        path.resolve().relative_to(pathlib.Path(folder).resolve())
        return True
    except ValueError:
        return False


def mirflickr730_regions(data_dir, grid=3, cache_dir=None, rows=None, batch_size=32):
    """Grid region features of the MIRFlickr-730 photos: (n, grid*grid, 1280) float32.

    data_dir: the shared `mirflickr25k` folder (`mirflickr730-efficientnet-lite0.npz`,
    `img_database.txt`, `images/`). Rows follow the npz's row order; `rows` (indices into
    those 730 rows) takes a subset, in the order given. Each photo's 7x7x1280 Lite0 head map
    is average-pooled to grid x grid cells (`grid_pooling_matrix`), cells in row-major order;
    grid=7 keeps the 49 cells, and their mean is the global feature `feat_lite0_1280`.
    The result is cached as an .npz in `cache_dir` (default ~/.cache/udsph_tf), keyed by
    `cache_key` (grid, weights, preprocessing and the photo list), so it is computed once.
    """
    grid_pooling_matrix(7, grid)  # a bad grid fails before anything is read
    files, rows, image_id = _photo_files(data_dir, rows)
    cache_dir = cache_folder(cache_dir, data_dir)
    key = cache_key(files, grid)
    path = cache_dir / f"mirflickr730_{BACKBONE}_grid{grid}_n{len(rows)}_{key[:16]}.npz"
    expected = (len(rows), grid * grid, 1280)
    if path.is_file():
        with np.load(path, allow_pickle=False) as cached:
            if str(cached["key"]) == key and cached["regions"].shape == expected:
                return cached["regions"].astype(np.float32, copy=False)
        print(f"regions: {path} does not match its key; recomputing", file=sys.stderr)
    start = time.perf_counter()
    print(f"regions: computing the {BACKBONE} {grid}x{grid} regions of {len(rows)} "
          f"MIRFlickr-730 photos (once; cached in {path})", file=sys.stderr, flush=True)
    regions = pool_regions(_compute_regions(files, batch_size), grid)
    seconds = time.perf_counter() - start
    _save_npz(path, {"regions": regions, "rows": rows, "image_id": image_id,
                     "key": np.asarray(key), "grid": np.asarray(grid),
                     "seconds": np.asarray(seconds)})
    print(f"regions: {len(rows)} photos in {seconds:.1f} s -> {path}", file=sys.stderr,
          flush=True)
    return regions
