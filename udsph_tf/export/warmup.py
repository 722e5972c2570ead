"""TF Serving warm-up records (PredictionLog protos) written without tensorflow-serving-api.

tensorflow-serving-api would pull in full `tensorflow` next to tensorflow-cpu, so the four
small messages are encoded here by hand in protobuf wire format. Field numbers, from
tensorflow_serving/apis/{prediction_log,predict,model}.proto:
  PredictionLog { PredictLog predict_log = 6; }
  PredictLog    { PredictRequest request = 1; }
  PredictRequest{ ModelSpec model_spec = 1; map<string, TensorProto> inputs = 2; }
  ModelSpec     { string name = 1; google.protobuf.Int64Value version = 2;
                  string signature_name = 3; }          Int64Value { int64 value = 1; }
A map field is a repeated message { key = 1; value = 2; }. TensorProto itself comes from
tensorflow.core.framework.tensor_pb2 (via tf.make_tensor_proto).
"""

import os

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

WARMUP_FILE = "tf_serving_warmup_requests"  # read by TF Serving from <version>/assets.extra/
_LENGTH_DELIMITED = 2
_VARINT = 0


def varint(value):
    if value < 0:
        raise ValueError(f"varint fields here are non-negative, got {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field_number, wire_type):
    return varint((field_number << 3) | wire_type)


def _bytes_field(field_number, payload):
    return _key(field_number, _LENGTH_DELIMITED) + varint(len(payload)) + payload


def model_spec_bytes(name, signature_name="serving_default", version=None):
    out = _bytes_field(1, name.encode("utf-8"))
    if version is not None:
        out += _bytes_field(2, _key(1, _VARINT) + varint(int(version)))
    if signature_name:
        out += _bytes_field(3, signature_name.encode("utf-8"))
    return out


def predict_request_bytes(model_name, inputs, signature_name="serving_default", version=None):
    """Serialized PredictRequest; `inputs` maps input names to arrays (or TensorProtos)."""
    out = _bytes_field(1, model_spec_bytes(model_name, signature_name, version))
    for key in sorted(inputs):  # deterministic bytes, as protobuf's own map serialisation
        value = inputs[key]
        if not isinstance(value, tensor_pb2.TensorProto):
            value = tf.make_tensor_proto(np.asarray(value))
        entry = _bytes_field(1, key.encode("utf-8")) + _bytes_field(2, value.SerializeToString())
        out += _bytes_field(2, entry)
    return out


def prediction_log_bytes(model_name, inputs, signature_name="serving_default", version=None):
    """Serialized PredictionLog{predict_log{request}}: one record of the warm-up file."""
    request = predict_request_bytes(model_name, inputs, signature_name, version)
    return _bytes_field(6, _bytes_field(1, request))


def write_warmup_requests(saved_model_dir, model_name, requests):
    """Write `requests` [(signature_name, {input: array})] as the SavedModel's warm-up file.

    TF Serving replays these on load (it reads at most 1000) so the first real request does
    not pay for graph initialisation. Returns the file path.
    """
    if not requests:
        raise ValueError("no warm-up requests given")
    extra = os.path.join(saved_model_dir, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    path = os.path.join(extra, WARMUP_FILE)
    with tf.io.TFRecordWriter(path) as writer:
        for signature_name, inputs in requests:
            writer.write(prediction_log_bytes(model_name, inputs, signature_name))
    return path
