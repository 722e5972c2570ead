"""MIRFlickr-730 grid regions: pooling by hand, and the real photos through Lite0 with a cache."""

import os
from pathlib import Path

import numpy as np
import pytest

from udsph_tf.data import regions as R

SHARED_DATA = Path(os.environ.get("UDSPH_SHARED_DATA",
                                  Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
MIRFLICKR = SHARED_DATA / "mirflickr25k"
# Spread over the 730 rows, in a scrambled order (the result must follow the order given).
ROWS = [5, 700, 123, 0, 321, 458, 42, 611, 250, 729, 77, 590]


def test_pooling_matrix_by_hand():
    pool = R.grid_pooling_matrix(7, 3).reshape(3, 3, 7, 7)
    # 7 -> 3 cells: rows/columns 0-2, 2-4, 4-6 (adaptive pooling; neighbours share one line).
    np.testing.assert_allclose(pool[0, 0, :3, :3], 1 / 9)
    assert pool[0, 0].sum() == pytest.approx(1.0) and not pool[0, 0, 3:].any()
    np.testing.assert_allclose(pool[1, 2, 2:5, 4:7], 1 / 9)
    np.testing.assert_array_equal(R.grid_pooling_matrix(7, 7), np.eye(49))
    np.testing.assert_allclose(R.grid_pooling_matrix(7, 1), np.full((1, 49), 1 / 49))
    np.testing.assert_allclose(R.grid_pooling_matrix(4, 2).reshape(2, 2, 4, 4)[1, 0, 2:, :2],
                               1 / 4)
    for bad in (0, 8):
        with pytest.raises(ValueError, match="grid"):
            R.grid_pooling_matrix(7, bad)


def test_pool_regions_on_a_hand_made_map():
    # Channel 0 holds the row index, channel 1 the column index of each of the 7x7 cells.
    r, c = np.meshgrid(np.arange(7), np.arange(7), indexing="ij")
    regions = np.stack([r.ravel(), c.ravel()], axis=-1)[None].astype(np.float16)
    pooled = R.pool_regions(regions, 3)
    assert pooled.shape == (1, 9, 2) and pooled.dtype == np.float32
    np.testing.assert_allclose(pooled[0, :, 0], [1, 1, 1, 3, 3, 3, 5, 5, 5])  # row-major
    np.testing.assert_allclose(pooled[0, :, 1], [1, 3, 5] * 3)
    np.testing.assert_allclose(R.pool_regions(regions, 1)[0, 0], [3, 3], rtol=1e-6)


def _real_data_or_skip():
    if not (MIRFLICKR / "mirflickr730-efficientnet-lite0.npz").is_file():
        pytest.skip(f"MIRFlickr-730 data not found at {MIRFLICKR}")
    if not (MIRFLICKR / "images").is_dir():
        pytest.skip(f"MIRFlickr-730 photos not found at {MIRFLICKR / 'images'}")
    from udsph_tf.models.backbones.efficientnet_lite import default_weights_path
    try:
        default_weights_path()
    except FileNotFoundError as err:
        pytest.skip(str(err))


def _cosine(a, b):
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


@pytest.mark.realdata
def test_regions_of_real_photos_cached_and_agreeing_with_the_global_feature(tmp_path,
                                                                            monkeypatch):
    _real_data_or_skip()
    full = R.mirflickr730_regions(MIRFLICKR, grid=7, cache_dir=tmp_path, rows=ROWS)
    assert full.shape == (len(ROWS), 49, 1280) and full.dtype == np.float32
    assert len(list(tmp_path.glob("*grid7*.npz"))) == 1

    # The mean of the 49 cells is the global feature the shared file was made with.
    with np.load(MIRFLICKR / "mirflickr730-efficientnet-lite0.npz") as data:
        reference = data["feat_lite0_1280"][ROWS]
    cosine = _cosine(full.mean(axis=1), reference)
    assert np.median(cosine) > 0.99 and cosine.min() > 0.98

    # Other grids pool the same 7x7 map; from now on the backbone must not run again
    # except once for the new grid (compute counted through the function it calls).
    calls = []

    def counted(files, batch_size=32):
        calls.append(len(files))
        return full.copy()

    monkeypatch.setattr(R, "_compute_regions", counted)
    grid3 = R.mirflickr730_regions(MIRFLICKR, grid=3, cache_dir=tmp_path, rows=ROWS)
    assert calls == [len(ROWS)]
    assert grid3.shape == (len(ROWS), 9, 1280)
    np.testing.assert_allclose(grid3, R.pool_regions(full, 3), rtol=1e-6)
    assert np.median(_cosine(grid3.mean(axis=1), reference)) > 0.98

    again7 = R.mirflickr730_regions(MIRFLICKR, grid=7, cache_dir=tmp_path, rows=ROWS)
    again3 = R.mirflickr730_regions(MIRFLICKR, grid=3, cache_dir=tmp_path, rows=ROWS)
    assert calls == [len(ROWS)]  # both read from the cache
    np.testing.assert_array_equal(again7, full)
    np.testing.assert_array_equal(again3, grid3)

    # Another photo list is another cache entry.
    R.mirflickr730_regions(MIRFLICKR, grid=3, cache_dir=tmp_path, rows=ROWS[:4])
    assert calls == [len(ROWS), 4]


@pytest.mark.realdata
def test_bad_arguments(tmp_path):
    if not (MIRFLICKR / "mirflickr730-efficientnet-lite0.npz").is_file():
        pytest.skip(f"MIRFlickr-730 data not found at {MIRFLICKR}")
    with pytest.raises(ValueError, match="rows"):
        R.mirflickr730_regions(MIRFLICKR, rows=[730], cache_dir=tmp_path)
    with pytest.raises(ValueError, match="read-only"):
        R.mirflickr730_regions(MIRFLICKR, rows=[0], cache_dir=MIRFLICKR / "cache")
    with pytest.raises(ValueError, match="grid"):
        R.mirflickr730_regions(MIRFLICKR, grid=9, cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="mirflickr25k"):
        R.mirflickr730_regions(tmp_path, cache_dir=tmp_path)


# ---- --region_grid: MIRFlickr-730 training takes the regions --------------------------------

def _full_cache_or_skip(grid):
    cached = list(Path(os.path.expanduser(str(R.DEFAULT_CACHE_DIR))).glob(
        f"mirflickr730_{R.BACKBONE}_grid{grid}_n730_*.npz"))
    if not cached:
        pytest.skip(f"no cached {grid}x{grid} regions of the 730 photos in "
                    f"{R.DEFAULT_CACHE_DIR} (computing them takes minutes: run "
                    f"udsph_tf.data.regions.mirflickr730_regions once)")


@pytest.mark.realdata
def test_mirflickr730_loader_with_region_grid(tmp_path):
    _real_data_or_skip()
    _full_cache_or_skip(3)
    from udsph_tf.data.readers import load_dataset
    plain = load_dataset("mirflickr730", str(MIRFLICKR))
    data = load_dataset("mirflickr730", str(MIRFLICKR), region_grid=3)
    assert data.images.shape == (730, 10, 1280) and data.images.dtype == np.float32
    # The last row is the exact global feature; tags, labels and ids are unchanged.
    np.testing.assert_array_equal(data.images[:, -1], plain.images)
    np.testing.assert_array_equal(data.tags, plain.tags)
    np.testing.assert_array_equal(data.ids, plain.ids)
    # A few rows computed afresh (another cache) agree with the cached full grid, row by row.
    few = R.mirflickr730_regions(MIRFLICKR, grid=3, cache_dir=tmp_path, rows=ROWS[:3])
    np.testing.assert_allclose(data.images[ROWS[:3], :-1], few, rtol=1e-4, atol=1e-4)

    # ImgNet reads the cells as regions and the global row as its pooled input.
    from udsph_tf.config import Config, replace
    from udsph_tf.models import build_models
    config = replace(Config(), region_grid=3, bits=8, imgnet_hidden=16, txtnet_hidden=16,
                     labnet_hidden=16, feature_dim=8, attention_dim=8, disc_hidden="8")
    models = build_models(config, data.images.shape[1:], data.tag_dim, data.num_labels)
    layer = models["imgnet"].image_input
    regions, pooled = layer(data.images[:4])
    assert regions.shape == (4, 9, 1280) and layer.num_regions == 9
    np.testing.assert_array_equal(pooled.numpy(), plain.images[:4])
    assert models["imgnet"](data.images[:4])["regions"].shape == (4, 9, 8)


def test_region_grid_is_mirflickr730_only():
    from udsph_tf.data.readers import load_dataset
    from udsph_tf.errors import ConfigError
    with pytest.raises(ConfigError, match="mirflickr730 only"):
        load_dataset("mirflickr", "/nonexistent", region_grid=3)


def test_region_grid_refuses_image_regions_before_reading_anything():
    from udsph_tf.config import Config, replace
    from udsph_tf.data.readers import load_dataset_from_config
    from udsph_tf.errors import ConfigError
    config = replace(Config(), dataset="mirflickr730", data_dir="/nonexistent", region_grid=3,
                     image_regions=4)
    with pytest.raises(ConfigError, match="drop --image_regions=4"):
        load_dataset_from_config(config)
    with pytest.raises(ConfigError, match="raw only"):
        load_dataset_from_config(replace(config, image_regions=0, data_source="tfds"))


@pytest.mark.realdata
def test_cache_dir_flag_names_where_the_regions_are_cached(tmp_path, monkeypatch):
    _real_data_or_skip()
    from udsph_tf.config import Config, replace
    from udsph_tf.data import readers
    from udsph_tf.errors import ConfigError
    seen = []

    def fake_regions(data_dir, grid=3, cache_dir=None, **kwargs):
        seen.append(cache_dir)
        return np.zeros((730, grid * grid, 1280), np.float32)
    monkeypatch.setattr(R, "mirflickr730_regions", fake_regions)
    config = replace(Config(), dataset="mirflickr730", data_dir=str(MIRFLICKR), region_grid=3,
                     cache_dir=str(tmp_path / "cache"))
    assert readers.load_dataset_from_config(config).images.shape == (730, 10, 1280)
    assert seen == [str(tmp_path / "cache")]
    readers.load_dataset_from_config(replace(config, cache_dir=""))
    assert seen[-1] == os.path.expanduser(str(R.DEFAULT_CACHE_DIR))
    # Refused before anything is computed: inside the read-only data folder, or a file.
    with pytest.raises(ConfigError, match="--cache_dir=.*inside the read-only data folder"):
        readers.load_dataset_from_config(replace(config, cache_dir=str(MIRFLICKR / "cache")))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="--cache_dir=.*a file, not a folder"):
        readers.load_dataset_from_config(replace(config, cache_dir=str(tmp_path / "file")))
    assert len(seen) == 2
