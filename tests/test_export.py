"""SavedModel export: in-TF packing and top-k, encoder/retrieval signatures, layout, config."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from udsph_tf.export import exporter, layout
from udsph_tf.codes import to_codes
from udsph_tf.export.encoders import pack_codes_tf
from udsph_tf.export.retrieval_model import RetrievalModule, hamming_top_k, to_words, word_layout
from udsph_tf.models import build_models
from udsph_tf.retrieval import HammingIndex, pack_codes
from udsph_tf.training.testing import tiny_config, tiny_data


def _random_codes(rng, n, bits, distinct=None):
    """+-1 codes; `distinct` draws rows from a small pool so many distances tie."""
    if distinct:
        pool = np.where(rng.random((distinct, bits)) < 0.5, 1, -1)
        return pool[rng.integers(0, distinct, n)].astype(np.int8)
    return np.where(rng.random((n, bits)) < 0.5, 1, -1).astype(np.int8)


@pytest.mark.parametrize("bits", [8, 16, 24, 40, 64, 128])
def test_pack_codes_tf_matches_numpy_bit_order(bits):
    codes = _random_codes(np.random.default_rng(bits), 33, bits)
    packed = pack_codes_tf(tf.constant(codes)).numpy()
    assert packed.dtype == np.uint8 and packed.shape == (33, bits // 8)
    np.testing.assert_array_equal(packed, pack_codes(codes))


def test_pack_codes_tf_rejects_bits_not_multiple_of_8():
    with pytest.raises(ValueError, match="multiple of 8"):
        pack_codes_tf(tf.ones([2, 12]))


@pytest.mark.parametrize("num_bytes,size,dtype", [(1, 1, tf.uint8), (2, 2, tf.uint16),
                                                  (3, 1, tf.uint8), (4, 4, tf.uint32),
                                                  (6, 2, tf.uint16), (8, 8, tf.uint64),
                                                  (16, 8, tf.uint64)])
def test_word_layout(num_bytes, size, dtype):
    assert word_layout(num_bytes) == (size, dtype)


@pytest.mark.parametrize("bits,distinct", [(8, None), (16, 6), (24, None), (32, 12), (64, 20)])
def test_hamming_top_k_matches_numpy_index_with_ties(bits, distinct):
    rng = np.random.default_rng(bits)
    db = pack_codes(_random_codes(rng, 400, bits, distinct))
    queries = pack_codes(_random_codes(rng, 9, bits, distinct))
    nbytes = bits // 8
    positions, distances = hamming_top_k(to_words(tf.constant(queries), nbytes),
                                         to_words(tf.constant(db), nbytes), 50, bits)
    ref_pos, ref_dist = HammingIndex.build(db, "numpy").search(queries, 50)
    np.testing.assert_array_equal(positions.numpy(), ref_pos)
    np.testing.assert_array_equal(distances.numpy(), ref_dist)
    # Ties really occur and are ordered by database position, as in numpy.
    d, p = distances.numpy(), positions.numpy()
    same = d[:, 1:] == d[:, :-1]
    assert same.any() and (p[:, 1:][same] > p[:, :-1][same]).all()


# --- exported models ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_models():
    config = tiny_config("unused", bits=16)
    data = tiny_data()
    models = build_models(config, data.images.shape[1:], data.tag_dim, data.num_labels)
    # Non-trivial statistics, so the encoder tests show the normalisation travels into the
    # SavedModel (serving gives the codes evaluation gave).
    models["imgnet"].normalizer.fit(data.images * 3.0 + 1.0)
    assert np.abs(models["imgnet"].normalizer.mean.numpy() - 1.0).max() > 0.1
    return config, data, models


@pytest.fixture(scope="module")
def exported(tiny_models, tmp_path_factory):
    config, data, models = tiny_models
    img, txt = models["imgnet"], models["txtnet"]
    img_codes = to_codes(img(data.images)["hash"].numpy())
    txt_codes = to_codes(txt(data.tags)["hash"].numpy())
    run_dir = str(tmp_path_factory.mktemp("export") / "run1")
    result = exporter.export_run(
        run_dir, imgnet=img, txtnet=txt, image_shape=data.images.shape[1:], tag_dim=data.tag_dim,
        bits=config.bits, database_ids=data.ids * 10, database_image_packed=pack_codes(img_codes),
        database_text_packed=pack_codes(txt_codes), top_k=7, warmup_images=data.images[:8],
        warmup_tags=data.tags[:8], metadata={"run_name": "run1"},
        tag_vocab=[f"Tag{j}" for j in range(data.tag_dim)])
    sigs = {name: tf.saved_model.load(path).signatures for name, path in result.paths.items()}
    return dict(result=result, sigs=sigs, img_codes=img_codes, txt_codes=txt_codes,
                data=data, models=models, config=config)


def test_layout_and_version(exported):
    result = exported["result"]
    assert result.version == 1
    for name in exporter.MODEL_NAMES:
        path = os.path.join(result.run_dir, name, "1")
        assert result.paths[name] == path
        for part in ("saved_model.pb", "variables", "assets.extra/tf_serving_warmup_requests",
                     "assets.extra/udsph_export.json"):
            assert os.path.exists(os.path.join(path, part)), (name, part)
    meta = layout.read_metadata(result.paths["image_to_text"])
    assert meta["bits"] == 16 and meta["database_size"] == 96 and meta["top_k"] == 7
    assert not [d for d in os.listdir(os.path.join(result.run_dir, "image_encoder"))
                if d.startswith(".tmp")]


@pytest.mark.parametrize("name,input_name", [("image_encoder", "image_features"),
                                             ("text_encoder", "tags")])
def test_encoder_signature_equals_in_process_model(exported, name, input_name):
    data, models = exported["data"], exported["models"]
    x = data.images if input_name == "image_features" else data.tags
    model = models["imgnet" if name == "image_encoder" else "txtnet"]
    sig = exported["sigs"][name]["serving_default"]
    spec = sig.structured_input_signature[1]
    assert list(spec) == [input_name] and spec[input_name].shape.as_list() == [None, x.shape[1]]
    assert {k: v.dtype for k, v in sig.structured_outputs.items()} == {
        "codes": tf.int8, "packed_codes": tf.uint8, "hash": tf.float32,
        "label_scores": tf.float32}
    ref = model(x, training=False)
    for n in (1, 5, len(x)):  # any batch size
        out = sig(**{input_name: tf.constant(x[:n])})
        np.testing.assert_allclose(out["hash"].numpy(), ref["hash"].numpy()[:n], atol=1e-6)
        np.testing.assert_allclose(out["label_scores"].numpy(), ref["label_pred"].numpy()[:n],
                                   atol=1e-6)
        codes = out["codes"].numpy()
        assert set(np.unique(codes)) <= {-1, 1}
        np.testing.assert_array_equal(codes, to_codes(ref["hash"].numpy()[:n]))
        np.testing.assert_array_equal(out["packed_codes"].numpy(), pack_codes(codes))


def test_encoder_rejects_bad_input(exported):
    sig = exported["sigs"]["image_encoder"]["serving_default"]
    x = exported["data"].images[:3].copy()
    bad = x.copy()
    bad[1, 2] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="image_features' contains NaN"):
        sig(image_features=tf.constant(bad))
    with pytest.raises(tf.errors.InvalidArgumentError, match="empty batch"):
        sig(image_features=tf.zeros([0, x.shape[1]]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"must have shape \[\?, 16\]"):
        sig(image_features=tf.constant(x[:, :-1]))  # wrong feature dimension
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"must have shape \[\?, 16\]"):
        sig(image_features=tf.constant(np.ones((2, 32), np.float32)))  # would reshape silently
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="expected to be a float tensor but is a int32"):
        sig(image_features=tf.constant(x.astype(np.int32)))  # wrong dtype


def test_retrieval_models_match_numpy_index(exported):
    data = exported["data"]
    for name, query, db_codes, x in (
            ("image_to_text", "image_features", exported["txt_codes"], data.images),
            ("text_to_image", "tags", exported["img_codes"], data.tags)):
        sigs = exported["sigs"][name]
        enc = exported["sigs"]["image_encoder" if query == "image_features" else "text_encoder"]
        q_packed = enc["serving_default"](**{query: tf.constant(x[:6])})["packed_codes"].numpy()
        index = HammingIndex.build(pack_codes(db_codes), "numpy", ids=data.ids * 10)
        ref_ids, ref_dist = index.search_ids(q_packed, 7)
        out = sigs["serving_default"](**{query: tf.constant(x[:6])})
        np.testing.assert_array_equal(out["ids"].numpy(), ref_ids)
        np.testing.assert_array_equal(out["distances"].numpy(), ref_dist)
        np.testing.assert_array_equal(out["query_packed_codes"].numpy(), q_packed)
        # k as an input, larger than the database: clamped to all 96 items.
        out_k = sigs["search_top_k"](**{query: tf.constant(x[:2]), "k": tf.constant(500)})
        ref_ids, ref_dist = index.search_ids(q_packed[:2], 500)
        assert out_k["ids"].shape == (2, 96)
        np.testing.assert_array_equal(out_k["ids"].numpy(), ref_ids)
        np.testing.assert_array_equal(out_k["distances"].numpy(), ref_dist)
        out_p = sigs["search_packed"](packed_codes=tf.constant(q_packed))
        np.testing.assert_array_equal(out_p["positions"].numpy(), index.search(q_packed, 7)[0])
        with pytest.raises(tf.errors.InvalidArgumentError, match="k must be >= 1"):
            sigs["search_top_k"](**{query: tf.constant(x[:1]), "k": tf.constant(0)})


def test_retrieval_module_string_ids_and_validation(tiny_models):
    _, data, models = tiny_models
    codes = to_codes(models["txtnet"](data.tags)["hash"].numpy())
    ids = np.array([f"im{i}.jpg" for i in range(len(codes))])
    module = RetrievalModule(models["imgnet"], "image_features", data.images.shape[1:],
                             pack_codes(codes), ids, 16, 4)
    out = module.serve(tf.constant(data.images[:2]))
    assert out["ids"].dtype == tf.string and out["ids"].shape == (2, 4)
    assert out["ids"].numpy()[0, 0].decode().startswith("im")
    with pytest.raises(ValueError, match="bits"):
        RetrievalModule(models["imgnet"], "image_features", data.images.shape[1:],
                        pack_codes(codes), ids, 32, 4)
    with pytest.raises(ValueError, match="same non-zero length"):
        RetrievalModule(models["imgnet"], "image_features", data.images.shape[1:],
                        pack_codes(codes), ids[:-1], 16, 4)
    with pytest.raises(ValueError, match="uint8"):
        RetrievalModule(models["imgnet"], "image_features", data.images.shape[1:],
                        codes, ids, 16, 4)


def test_savedmodel_holds_only_inference_variables(exported):
    path = os.path.join(exported["result"].paths["image_encoder"], "variables", "variables")
    names = [n for n, _ in tf.train.list_variables(path)]
    weights = [n for n in names if "VARIABLE_VALUE" in n]
    lowered = " ".join(weights).lower()
    assert "adam" not in lowered and "disc" not in lowered and "optimizer" not in lowered
    assert len(weights) == len(exported["models"]["imgnet"].variables)


def test_versions_increment_and_never_overwrite(exported, tmp_path):
    run_dir = exported["result"].run_dir
    assert layout.choose_version(run_dir, exporter.MODEL_NAMES) == 2
    with pytest.raises(ValueError, match="already exists"):
        layout.choose_version(run_dir, exporter.MODEL_NAMES, 1)
    assert layout.choose_version(run_dir, exporter.MODEL_NAMES, 5) == 5
    with pytest.raises(ValueError, match=">= 0"):
        layout.choose_version(run_dir, exporter.MODEL_NAMES, -1)
    # A failed write leaves neither the version folder nor its temporary sibling.
    module = tf.Module()
    module.f = tf.function(lambda x: {"y": x}, input_signature=[tf.TensorSpec([None], tf.float32)])

    def broken(_):
        raise OSError("disk full")

    target = tmp_path / "m" / "3"
    with pytest.raises(OSError, match="disk full"):
        layout.save_atomically(module, {"serving_default": module.f.get_concrete_function()},
                               str(target), extra_files={"x": broken})
    assert os.listdir(tmp_path / "m") == []


def _model_server_config_class():
    """ModelServerConfig from descriptors typed in from tensorflow_serving/config/
    model_server_config.proto (field numbers checked against the official file)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    f = descriptor_pb2.FileDescriptorProto(name="msc_test.proto", package="tensorflow.serving",
                                           syntax="proto3")
    T = descriptor_pb2.FieldDescriptorProto
    cfg = f.message_type.add(name="ModelConfig")
    for name, number in (("name", 1), ("base_path", 2), ("model_platform", 4)):
        cfg.field.add(name=name, number=number, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    lst = f.message_type.add(name="ModelConfigList")
    lst.field.add(name="config", number=1, type=T.TYPE_MESSAGE, label=T.LABEL_REPEATED,
                  type_name=".tensorflow.serving.ModelConfig")
    top = f.message_type.add(name="ModelServerConfig")
    top.field.add(name="model_config_list", number=1, type=T.TYPE_MESSAGE,
                  label=T.LABEL_OPTIONAL, type_name=".tensorflow.serving.ModelConfigList")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.ModelServerConfig"))


def test_models_config_is_a_valid_text_proto(exported):
    from google.protobuf import text_format
    result = exported["result"]
    msg = text_format.Parse(open(result.models_config).read(), _model_server_config_class()())
    got = [(c.name, c.base_path, c.model_platform) for c in msg.model_config_list.config]
    assert got == [(n, os.path.join(result.run_dir, n), "tensorflow")
                   for n in exporter.MODEL_NAMES]
    docker = text_format.Parse(open(result.docker_models_config).read(),
                               _model_server_config_class()())
    assert [c.base_path for c in docker.model_config_list.config] == [
        f"/models/run1/{n}" for n in exporter.MODEL_NAMES]


def test_saved_model_cli_shows_named_signatures(exported):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if not os.path.exists(cli):
        pytest.skip(f"saved_model_cli not found beside {sys.executable}")
    path = exported["result"].paths["image_to_text"]
    res = subprocess.run([cli, "show", "--dir", path, "--all"], capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert res.returncode == 0, res.stderr[-2000:]
    text = res.stdout
    for piece in ("signature_def['serving_default']", "signature_def['search_top_k']",
                  "signature_def['search_packed']", "inputs['image_features']",
                  "inputs['k']", "outputs['ids']", "outputs['distances']",
                  "outputs['query_packed_codes']", "shape: (-1, 7)"):
        assert piece in text, piece


def test_restore_refuses_variables_the_checkpoint_cannot_hold():
    import keras
    from udsph_tf.training.checkpointing import check_all_tracked

    class Listy(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.parts = [keras.layers.Dense(2, name="in_list")]  # invisible to tf.train

        def call(self, x):
            return self.parts[0](x)

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.listy = Listy()
            self.out = keras.layers.Dense(1, name="tracked")

        def call(self, x):
            return self.out(self.listy(x))

    good, bad = keras.Sequential([keras.layers.Dense(2)]), Net()
    good(np.zeros((1, 3), np.float32))
    bad(np.zeros((1, 3), np.float32))
    check_all_tracked(tf.train.Checkpoint(model_imgnet=good), {"imgnet": good})
    with pytest.raises(ValueError, match="not tracked by the checkpoint.*in_list"):
        check_all_tracked(tf.train.Checkpoint(model_txtnet=bad), {"txtnet": bad}, "ckpt-1")


def test_tag_word_signatures_equal_bag_of_words(exported):
    data = exported["data"]
    bow = np.zeros((2, data.tag_dim), np.float32)
    bow[0, [1, 5]] = 1.0
    bow[1, 7] = 1.0
    words = tf.constant(["tag1, TAG5", "  tag7 tag7 "])  # case-insensitive, repeats harmless
    enc = exported["sigs"]["text_encoder"]
    by_words = enc["from_tag_words"](tag_words=words)
    by_bow = enc["serving_default"](tags=tf.constant(bow))
    for key in ("hash", "codes", "packed_codes", "label_scores"):
        np.testing.assert_array_equal(by_words[key].numpy(), by_bow[key].numpy())
    search = exported["sigs"]["text_to_image"]
    np.testing.assert_array_equal(search["search_tag_words"](tag_words=words)["ids"].numpy(),
                                  search["serving_default"](tags=tf.constant(bow))["ids"].numpy())
    with pytest.raises(tf.errors.InvalidArgumentError, match="unknown tag.*tag99"):
        enc["from_tag_words"](tag_words=tf.constant(["tag1 tag99"]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="holds no tag"):
        search["search_tag_words"](tag_words=tf.constant(["tag1", " , "]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="empty batch"):
        enc["from_tag_words"](tag_words=tf.constant([], tf.string))
    assert "from_tag_words" not in exported["sigs"]["image_encoder"]
