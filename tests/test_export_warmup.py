"""Warm-up records: hand-encoded PredictionLog protos parse back with protobuf's own decoder."""

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from tensorflow.core.framework import tensor_pb2

from udsph_tf.export import warmup

T = descriptor_pb2.FieldDescriptorProto


def _add_with_deps(pool, file_descriptor, seen):
    for dep in file_descriptor.dependencies:
        _add_with_deps(pool, dep, seen)
    if file_descriptor.name not in seen:
        proto = descriptor_pb2.FileDescriptorProto()
        file_descriptor.CopyToProto(proto)
        pool.Add(proto)
        seen.add(file_descriptor.name)


@pytest.fixture(scope="module")
def serving_messages():
    """PredictionLog & co. built from descriptors typed in from the official files
    tensorflow_serving/apis/{prediction_log,predict,model}.proto (same field numbers), in a
    private pool so they never clash with a real tensorflow-serving-api install."""
    pool = descriptor_pool.DescriptorPool()
    _add_with_deps(pool, tensor_pb2.DESCRIPTOR, set())
    f = descriptor_pb2.FileDescriptorProto(
        name="serving_subset_test.proto", package="tensorflow.serving", syntax="proto3",
        dependency=[tensor_pb2.DESCRIPTOR.name])

    def field(msg, name, number, kind, label=T.LABEL_OPTIONAL, type_name=None):
        fd = msg.field.add(name=name, number=number, type=kind, label=label)
        if type_name:
            fd.type_name = type_name

    i64 = f.message_type.add(name="Int64Value")  # google.protobuf.Int64Value's layout
    field(i64, "value", 1, T.TYPE_INT64)
    spec = f.message_type.add(name="ModelSpec")
    field(spec, "name", 1, T.TYPE_STRING)
    field(spec, "version", 2, T.TYPE_MESSAGE, type_name=".tensorflow.serving.Int64Value")
    field(spec, "signature_name", 3, T.TYPE_STRING)
    req = f.message_type.add(name="PredictRequest")
    entry = req.nested_type.add(name="InputsEntry")
    entry.options.map_entry = True
    field(entry, "key", 1, T.TYPE_STRING)
    field(entry, "value", 2, T.TYPE_MESSAGE, type_name=".tensorflow.TensorProto")
    field(req, "model_spec", 1, T.TYPE_MESSAGE, type_name=".tensorflow.serving.ModelSpec")
    field(req, "inputs", 2, T.TYPE_MESSAGE, T.LABEL_REPEATED,
          ".tensorflow.serving.PredictRequest.InputsEntry")
    field(req, "output_filter", 3, T.TYPE_STRING, T.LABEL_REPEATED)
    log = f.message_type.add(name="PredictLog")
    field(log, "request", 1, T.TYPE_MESSAGE, type_name=".tensorflow.serving.PredictRequest")
    plog = f.message_type.add(name="PredictionLog")
    plog.oneof_decl.add(name="log_type")
    field(plog, "predict_log", 6, T.TYPE_MESSAGE, type_name=".tensorflow.serving.PredictLog")
    plog.field[-1].oneof_index = 0
    pool.Add(f)
    return {name: message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))
        for name in ("PredictionLog", "PredictRequest", "ModelSpec")}


def test_prediction_log_round_trip(serving_messages):
    x = np.random.default_rng(0).normal(size=(3, 1280)).astype(np.float32)  # > 16 KiB payload
    k = np.array(5, np.int32)
    raw = warmup.prediction_log_bytes("image_to_text", {"image_features": x, "k": k},
                                      signature_name="search_top_k", version=12)
    log = serving_messages["PredictionLog"]()
    log.ParseFromString(raw)
    assert log.WhichOneof("log_type") == "predict_log"
    request = log.predict_log.request
    assert request.model_spec.name == "image_to_text"
    assert request.model_spec.signature_name == "search_top_k"
    assert request.model_spec.version.value == 12
    assert sorted(request.inputs) == ["image_features", "k"]
    np.testing.assert_array_equal(tf.make_ndarray(request.inputs["image_features"]), x)
    got_k = tf.make_ndarray(request.inputs["k"])
    assert got_k.shape == () and got_k.dtype == np.int32 and int(got_k) == 5
    # Re-serialising with protobuf gives the same bytes: our encoding is canonical.
    assert log.SerializeToString(deterministic=True) == raw


def test_model_spec_without_version_or_signature(serving_messages):
    spec = serving_messages["ModelSpec"]()
    spec.ParseFromString(warmup.model_spec_bytes("m", signature_name="", version=None))
    assert spec.name == "m" and not spec.HasField("version") and spec.signature_name == ""


def test_varint_edges():
    assert warmup.varint(0) == b"\x00"
    assert warmup.varint(127) == b"\x7f"
    assert warmup.varint(128) == b"\x80\x01"
    assert warmup.varint(300) == b"\xac\x02"
    with pytest.raises(ValueError, match="non-negative"):
        warmup.varint(-1)


def test_warmup_file_is_a_tfrecord_of_logs(tmp_path, serving_messages):
    requests = [("serving_default", {"tags": np.zeros((1, 24), np.float32)}),
                ("serving_default", {"tags": np.ones((8, 24), np.float32)})]
    path = warmup.write_warmup_requests(str(tmp_path), "text_encoder", requests)
    assert path.endswith("assets.extra/tf_serving_warmup_requests")
    records = list(tf.data.TFRecordDataset(path).as_numpy_iterator())
    assert len(records) == 2
    shapes = []
    for raw in records:
        log = serving_messages["PredictionLog"]()
        log.ParseFromString(raw)
        assert log.predict_log.request.model_spec.name == "text_encoder"
        shapes.append(tf.make_ndarray(log.predict_log.request.inputs["tags"]).shape)
    assert shapes == [(1, 24), (8, 24)]
    with pytest.raises(ValueError, match="no warm-up requests"):
        warmup.write_warmup_requests(str(tmp_path), "text_encoder", [])


def test_matches_official_serving_api_when_installed():
    """Optional cross-check with the real generated classes (`pip install --no-deps
    tensorflow-serving-api`); the project does not depend on it."""
    apis = pytest.importorskip("tensorflow_serving.apis.prediction_log_pb2",
                               reason="tensorflow-serving-api not installed (optional check)")
    from tensorflow_serving.apis import model_pb2, predict_pb2
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    raw = warmup.prediction_log_bytes("m", {"image_features": x}, "serving_default", version=3)
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name="m", signature_name="serving_default"))
    request.model_spec.version.value = 3
    request.inputs["image_features"].CopyFrom(tf.make_tensor_proto(x))
    official = apis.PredictionLog(predict_log=apis.PredictLog(request=request))
    assert official.SerializeToString(deterministic=True) == raw
