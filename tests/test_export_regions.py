"""Export and search of a run trained with regions (--region_grid): the image input is the
(R+1, d) rows it was trained on, in the SavedModels and in `--mode=search`."""

import io

import numpy as np
import pytest
import tensorflow as tf

from udsph_tf.codes import to_codes
from udsph_tf.config import Config, replace
from udsph_tf.export import read_metadata
from udsph_tf.modes.export import export_from_checkpoint, load_run
from udsph_tf.modes.search import photo_features, search
from udsph_tf.modes.train import train_and_evaluate
from udsph_tf.retrieval import HammingIndex, pack_codes
from udsph_tf.training.testing import tiny_config, tiny_region_data, tiny_split

pytestmark = pytest.mark.slow  # one tiny training run, ~15 s on the shared 2-core box

GRID = 2  # 4 cells + the global row: images (96, 5, 16)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("regions")
    workdir = str(root / "regrun")
    data, split = tiny_region_data(grid=GRID), tiny_split()
    config = tiny_config(workdir, region_grid=GRID, epochs=1, num_replicas=1, bits=16)
    train_and_evaluate(config, data=data, split=split)
    # Generated data is not on disk, so export and search are handed the same rows.
    base = Config(workdir=workdir, export_dir=str(root / "export"), top_k=6)
    loaded = load_run(base, data, split)
    return {"base": base, "data": data, "split": split, "loaded": loaded}


@pytest.fixture(scope="module")
def exported(run):
    result = export_from_checkpoint(replace(run["base"], mode="export"), run["data"],
                                    run["split"])
    sigs = {name: tf.saved_model.load(path).signatures for name, path in result.paths.items()}
    return result, sigs


def test_restored_imgnet_reads_regions_and_global_row(run):
    layer = run["loaded"].imgnet.image_input
    assert layer.global_last and layer.num_regions == GRID * GRID
    assert run["data"].images.shape[1:] == (GRID * GRID + 1, 16)


def test_image_encoder_signature_takes_the_region_rows_and_matches_in_process(run, exported):
    result, sigs = exported
    data, split, imgnet = run["data"], run["split"], run["loaded"].imgnet
    sig = sigs["image_encoder"]["serving_default"]
    spec = sig.structured_input_signature[1]["image_features"]
    assert spec.shape.as_list() == [None, GRID * GRID + 1, 16]
    x = data.images[split.query_idx]
    out = sig(image_features=tf.constant(x))
    ref = imgnet(x, training=False)["hash"].numpy()
    np.testing.assert_allclose(out["hash"].numpy(), ref, atol=1e-5)
    np.testing.assert_array_equal(out["codes"].numpy(), to_codes(ref))
    meta = read_metadata(result.paths["image_encoder"])
    assert meta["image_shape"] == [GRID * GRID + 1, 16]
    assert meta["image_layout"].startswith(f"{GRID * GRID} region rows")
    # The image->text SavedModel ranks the text database as numpy does with the same codes.
    txt_codes = to_codes(run["loaded"].txtnet(data.tags[split.database_idx])["hash"].numpy())
    ids, dist = HammingIndex.build(pack_codes(txt_codes), "numpy",
                                   ids=data.ids[split.database_idx]).search_ids(
        pack_codes(to_codes(ref)), 6)
    served = sigs["image_to_text"]["serving_default"](image_features=tf.constant(x))
    np.testing.assert_array_equal(served["ids"].numpy(), ids)
    np.testing.assert_array_equal(served["distances"].numpy(), dist)


@pytest.mark.parametrize("model", ["image_encoder", "image_to_text"])
def test_bad_image_shape_names_the_expected_shape_and_layout(run, exported, model):
    sig = exported[1][model]["serving_default"]
    x = run["data"].images[:2]
    # The global vector alone (what a run without regions takes) is refused, saying why.
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"must have 3 dimensions, shape \[\?, 5, 16\] \(batch first\); "
                             r"one item is 4 region rows .* then the global feature row"):
        sig(image_features=tf.constant(x[:, -1]))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"must have shape \[\?, 5, 16\] \(batch first\); one item is 4 "
                             r"region rows"):
        sig(image_features=tf.constant(x[:, 1:]))  # the cells without the first one


def test_rest_proxy_says_the_region_layout_with_a_shape_error(run, exported):
    from tools.rest import ServedModel
    served = ServedModel(exported[0].paths["image_encoder"])
    x = run["data"].images[:2]
    status, body = served.predict({"instances": x[:, -1].tolist()})  # the global row alone
    assert status == 400
    assert body["error"].startswith("input 'image_features' must have shape [?, 5, 16], got "
                                    "[2, 16]; one item is 4 region rows (the grid cells")
    status, body = served.predict({"instances": x.tolist()})
    assert status == 200 and len(body["predictions"]) == 2


def test_search_by_image_row_uses_the_region_rows(run, exported):
    data, split, loaded = run["data"], run["split"], run["loaded"]
    row = int(split.query_idx[3])
    # By hand: the restored ImgNet on the row's (1, R+1, d) input, against the text database.
    q = pack_codes(to_codes(loaded.imgnet(data.images[row:row + 1])["hash"].numpy()))
    txt_codes = to_codes(loaded.txtnet(data.tags[split.database_idx])["hash"].numpy())
    ids, dist = HammingIndex.build(pack_codes(txt_codes), "numpy",
                                   ids=data.ids[split.database_idx]).search_ids(q, 6)
    result = search(replace(run["base"], mode="search", query_image_row=row), run["data"],
                    run["split"], out=io.StringIO())
    assert result.direction == "image->text"
    assert result.code_source.startswith("exported version")  # the export fixture ran first
    np.testing.assert_array_equal(result.ids, ids[0])
    np.testing.assert_array_equal(result.distances, dist[0])


def test_search_from_the_checkpoint_without_an_export(run, tmp_path):
    row = int(run["split"].query_idx[0])
    config = replace(run["base"], mode="search", query_image_row=row,
                     export_dir=str(tmp_path / "none"))
    result = search(config, run["data"], run["split"], out=io.StringIO())
    assert result.code_source.startswith("checkpoint:best-") and len(result.ids) == 6


def test_photo_features_lay_out_cells_then_the_global_vector():
    # A 7x7 map whose channel 0 holds the row index and channel 1 the column index of the cell.
    r, c = np.meshgrid(np.arange(7), np.arange(7), indexing="ij")
    regions = np.stack([r.ravel(), c.ravel()], axis=-1)[None].astype(np.float32)
    outputs = {"global": np.array([[10.0, 20.0]], np.float32), "regions": regions}
    np.testing.assert_array_equal(photo_features(outputs), outputs["global"])
    rows = photo_features(outputs, region_grid=3)
    assert rows.shape == (1, 10, 2) and rows.dtype == np.float32
    np.testing.assert_allclose(rows[0, :9, 0], [1, 1, 1, 3, 3, 3, 5, 5, 5])  # row-major cells
    np.testing.assert_allclose(rows[0, :9, 1], [1, 3, 5] * 3)
    np.testing.assert_array_equal(rows[0, 9], [10.0, 20.0])  # the global vector last
