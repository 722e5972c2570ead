"""The TF Serving REST stand-in: row/columnar JSON, b64, errors, routes, an HTTP round trip."""

import base64
import json
import os
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

from tools import rest
from udsph_tf.export import exporter
from udsph_tf.codes import to_codes
from udsph_tf.models import build_models
from udsph_tf.retrieval import pack_codes
from udsph_tf.training.testing import tiny_config, tiny_data


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    config = tiny_config("unused", bits=16)
    data = tiny_data()
    models = build_models(config, data.images.shape[1:], data.tag_dim, data.num_labels)
    img, txt = models["imgnet"], models["txtnet"]
    result = exporter.export_run(
        str(tmp_path_factory.mktemp("rest") / "run1"), imgnet=img, txtnet=txt,
        image_shape=data.images.shape[1:], tag_dim=data.tag_dim, bits=16, database_ids=data.ids,
        database_image_packed=pack_codes(to_codes(img(data.images)["hash"].numpy())),
        database_text_packed=pack_codes(to_codes(txt(data.tags)["hash"].numpy())),
        top_k=3, warmup_images=data.images[:2], warmup_tags=data.tags[:2],
        tag_vocab=[f"tag{j}" for j in range(data.tag_dim)])
    server = rest.ModelServer.from_config_file(result.models_config)
    return dict(result=result, server=server, data=data)


def _direct(export, model, signature="serving_default", **inputs):
    sig = export["server"].models[model].signatures[signature]
    return {k: v.numpy() for k, v in sig(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def test_row_format_equals_signature_call(export):
    x = export["data"].images[:3]
    status, body = export["server"].handle(
        "POST", "/v1/models/image_encoder:predict", json.dumps({"instances": x.tolist()}))
    assert status == 200 and list(body) == ["predictions"] and len(body["predictions"]) == 3
    ref = _direct(export, "image_encoder", image_features=x)
    for i, row in enumerate(body["predictions"]):
        assert sorted(row) == ["codes", "hash", "label_scores", "packed_codes"]
        np.testing.assert_allclose(row["hash"], ref["hash"][i], rtol=1e-6)
        assert row["codes"] == ref["codes"][i].tolist()
        assert row["packed_codes"] == ref["packed_codes"][i].tolist()
    # Instances may also name the input; same answer.
    named = [{"image_features": r} for r in x.tolist()]
    status2, body2 = export["server"].handle(
        "POST", "/v1/models/image_encoder/versions/1:predict", {"instances": named})
    assert status2 == 200 and body2 == body


def test_columnar_format_and_signature_name(export):
    tags = export["data"].tags[:2]
    status, body = export["server"].handle("POST", "/v1/models/text_to_image:predict", {
        "signature_name": "search_top_k", "inputs": {"tags": tags.tolist(), "k": 5}})
    assert status == 200 and list(body) == ["outputs"]
    ref = _direct(export, "text_to_image", "search_top_k", tags=tags, k=np.int32(5))
    assert body["outputs"]["ids"] == ref["ids"].tolist()
    assert body["outputs"]["distances"] == ref["distances"].tolist()
    assert np.asarray(body["outputs"]["ids"]).shape == (2, 5)
    # A bare value is accepted for a single-input signature.
    status, bare = export["server"].handle("POST", "/v1/models/text_encoder:predict",
                                           {"inputs": tags.tolist()})
    assert status == 200 and bare["outputs"]["codes"] == \
        _direct(export, "text_encoder", tags=tags)["codes"].tolist()


def test_search_packed_takes_integers(export):
    packed = _direct(export, "image_encoder", image_features=export["data"].images[:2])[
        "packed_codes"]
    status, body = export["server"].handle("POST", "/v1/models/image_to_text:predict", {
        "signature_name": "search_packed", "instances": packed.tolist()})
    ref = _direct(export, "image_to_text", image_features=export["data"].images[:2])
    assert status == 200
    assert [p["ids"] for p in body["predictions"]] == ref["ids"].tolist()
    status, err = export["server"].handle("POST", "/v1/models/image_to_text:predict", {
        "signature_name": "search_packed", "instances": [[300, 1]]})
    assert status == 400 and "outside the uint8 range" in err["error"]


@pytest.mark.parametrize("body,message", [
    ("{not json", "JSON Parse error"),
    ({"instances": [[0.0] * 16], "inputs": [[0.0] * 16]}, "both 'instances' and 'inputs'"),
    ({"signature_name": "serving_default"}, "Missing 'inputs' or 'instances'"),
    ({"instances": [[0.0] * 16], "signature_name": "nope"}, 'signature name: "nope" not found'),
    ({"instances": [[0.0] * 15]}, r"must have shape [?, 16], got [1, 15]"),
    ({"instances": [["a"] * 16]}, "expects float32 numbers, got strings"),
    ({"instances": [[None] + [0.0] * 15]}, "expects float32 numbers, got null values"),
    ({"instances": [[True] * 16]}, "expects float32 numbers, got booleans"),
    ({"instances": []}, "empty batch"),
    ({"instances": [[0.0] * 16, [0.0] * 15]}, "rows of different lengths"),
    ({"instances": [[float("nan")] + [0.0] * 15]}, "contains NaN or Inf"),
    ({"inputs": {"wrong": [[0.0] * 16]}}, "missing ['image_features'], unknown ['wrong']"),
    ({"instances": [{"image_features": [0.0] * 16, "x": 1}]}, "unknown ['x']"),
])
def test_bad_requests_give_error_bodies(export, body, message):
    if isinstance(body, dict) and body.get("instances") and \
            body["instances"][0] and isinstance(body["instances"][0], list) and \
            isinstance(body["instances"][0][0], float) and np.isnan(body["instances"][0][0]):
        body = json.dumps(body)  # NaN travels as the JSON literal NaN, as TF Serving accepts
    status, response = export["server"].handle("POST", "/v1/models/image_encoder:predict", body)
    assert status == 400 and list(response) == ["error"]
    assert message in response["error"], response["error"]


def test_scalar_input_needs_columnar_format(export):
    status, response = export["server"].handle("POST", "/v1/models/image_to_text:predict", {
        "signature_name": "search_top_k",
        "instances": [{"image_features": [0.0] * 16, "k": 3}]})
    assert status == 400 and "use the columnar format" in response["error"]


def test_routes_status_and_metadata(export):
    server = export["server"]
    assert server.handle("GET", "/v1/models/image_encoder")[1]["model_version_status"][0] == {
        "version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    status, meta = server.handle("GET", "/v1/models/image_to_text/metadata")
    sigs = meta["metadata"]["signature_def"]["signature_def"]
    assert status == 200 and set(sigs) == {"serving_default", "search_top_k", "search_packed"}
    assert set(sigs["serving_default"]["inputs"]) == {"image_features"}
    assert sigs["serving_default"]["inputs"]["image_features"]["dtype"] == "DT_FLOAT"
    assert sigs["serving_default"]["outputs"]["ids"]["dtype"] == "DT_INT64"
    assert server.handle("GET", "/v1/models/nope")[0] == 404
    assert server.handle("POST", "/v1/models/image_encoder/versions/7:predict", "{}")[0] == 404
    assert server.handle("GET", "/v2/whatever")[0] == 404


def test_b64_strings_in_and_bytes_out(tmp_path):
    """Binary inputs arrive as {"b64": ...}; outputs named *_bytes go back that way."""
    module = tf.Module()
    module.f = tf.function(
        lambda image_bytes: {"echo_bytes": image_bytes,
                             "length": tf.strings.length(image_bytes)},
        input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    path = str(tmp_path / "m" / "1")
    tf.saved_model.save(module, path, signatures={"serving_default": module.f})
    model = rest.ServedModel(path)
    payload = b"\xff\xd8\x00binary"
    enc = base64.b64encode(payload).decode()
    status, body = model.predict({"instances": [{"b64": enc}, {"b64": enc}]})
    assert status == 200
    assert body["predictions"] == [{"echo_bytes": {"b64": enc}, "length": len(payload)}] * 2
    status, body = model.predict({"inputs": {"image_bytes": [{"b64": "!!"}]}})
    assert status == 400 and "invalid base64" in body["error"]


def test_parse_models_config_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="models.config not found"):
        rest.parse_models_config(str(tmp_path / "models.config"))
    bad = tmp_path / "bad.config"
    bad.write_text("model_config_list { }\n")
    with pytest.raises(ValueError, match="no `config"):
        rest.parse_models_config(str(bad))
    empty_base = tmp_path / "empty.config"
    empty_base.write_text(f'model_config_list {{ config {{ name: "a" base_path: '
                          f'"{tmp_path}/nothing" model_platform: "tensorflow" }} }}\n')
    with pytest.raises(FileNotFoundError, match="no integer version folder"):
        rest.ModelServer.from_config_file(str(empty_base))


def test_http_round_trip(export):
    httpd = rest.serve_http(export["server"], port=0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        port = httpd.server_address[1]
        x = export["data"].tags[:1].tolist()
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/models/text_to_image:predict",
            data=json.dumps({"instances": x}).encode(), method="POST",
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = json.loads(resp.read())
        assert resp.status == 200 and len(body["predictions"][0]["ids"]) == 3
        bad = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/models/text_to_image:predict",
            data=b'{"instances": []}', method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(bad, timeout=30)
        assert err.value.code == 400 and "empty batch" in json.loads(err.value.read())["error"]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
    assert os.path.exists(export["result"].models_config)


def test_tag_words_over_rest(export):
    server = export["server"]
    status, body = server.handle("POST", "/v1/models/text_to_image:predict", {
        "signature_name": "search_tag_words", "instances": ["tag1, tag2", "tag3"]})
    assert status == 200 and len(body["predictions"]) == 2
    bow = np.zeros((2, export["data"].tag_dim), np.float32)
    bow[0, [1, 2]] = bow[1, 3] = 1.0
    ref = _direct(export, "text_to_image", tags=bow)
    assert [p["ids"] for p in body["predictions"]] == ref["ids"].tolist()
    status, err = server.handle("POST", "/v1/models/text_encoder:predict", {
        "signature_name": "from_tag_words", "inputs": {"tag_words": ["tag1 skyy"]}})
    assert status == 400 and err["error"].startswith("assertion failed: [unknown tag(s)")
    assert "skyy" in err["error"]


# --- hostile input: always an answer, never a dropped connection ---------------------------

@pytest.mark.parametrize("body,message", [
    ({"instances": [[0.0] * 16], "signature_name": ["serving_default"]},
     "'signature_name' must be a string, got list"),
    ({"instances": [[0.0] * 16], "signature_name": {"a": 1}},
     "'signature_name' must be a string, got dict"),
    ({"instances": [[0.0] * 16], "signature_name": None}, "must be a string, got NoneType"),
    ("[" * 5000 + "]" * 5000, "nested too deeply"),
    ('{"instances": ' + "[" * 5000 + "]" * 5000 + "}", "nested too deeply"),
    (b"\xff\xfe\x00garbage", "JSON Parse error"),
    ({"instances": [0.0] * 16}, "must have shape [?, 16], got [16]"),  # 1-D: not a batch of 1
    ({"inputs": [0.0] * 16}, "must have shape [?, 16], got [16]"),
    ({"inputs": {"image_features": [0.0] * 16}}, "must have shape [?, 16], got [16]"),
], ids=["signature-list", "signature-dict", "signature-null", "nested-5000", "instances-5000",
        "not-utf8", "1d-instances", "1d-inputs", "1d-named-input"])
def test_hostile_bodies_give_400_with_a_json_error(export, body, message):
    status, response = export["server"].handle("POST", "/v1/models/image_encoder:predict", body)
    assert status == 400 and list(response) == ["error"], (status, response)
    assert message in response["error"], response["error"]


def _random_json(rng, depth=0):
    kind = rng.randrange(9 if depth < 4 else 5)
    if kind == 0:
        return rng.choice([0, 1, -1, 255, 256, 2 ** 31, 2 ** 63, 2 ** 70, -(2 ** 70)])
    if kind == 1:
        return rng.choice([0.5, -1e30, 1e300, 1e-320, float("inf"), float("nan")])
    if kind == 2:
        return rng.choice(["", "sky", "tag1, tag2", "\u00e9\u4e2d", "\x00", "b64", "NaN"])
    if kind == 3:
        return rng.choice([None, True, False])
    if kind == 4:
        return {"b64": rng.choice(["", "!!", "AAEC", 7, None, ["AA"]])}
    if kind in (5, 6):
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 7:  # a numeric matrix, sometimes the right width
        width = rng.choice([0, 1, 15, 16, 17])
        return [[rng.uniform(-3, 3) for _ in range(width)] for _ in range(rng.randrange(3))]
    keys = ["instances", "inputs", "signature_name", "image_features", "tags", "k", "x"]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


def _fuzz_bodies(rng, count):
    """Seeded random and hostile request bodies (bytes)."""
    good = json.dumps({"instances": [[0.1] * 16]})
    fixed = [b"", b"null", b"[]", b"{}", b"{", b"\xff" * 10, good[:-3].encode(),
             ("[" * 5000).encode(), ('{"a":' * 5000 + "1" + "}" * 5000).encode(),
             json.dumps({"instances": [[0.1] * 16], "signature_name": ["x"]}).encode(),
             json.dumps({"inputs": {"image_features": [[[[[0.0]]]]]}}).encode(),
             json.dumps({"signature_name": "search_top_k",
                         "inputs": {"image_features": [[0.0] * 16], "k": 2 ** 40}}).encode(),
             json.dumps({"signature_name": "search_packed", "instances": [[1, 2]]}).encode()]
    bodies = list(fixed)
    while len(bodies) < count:
        kind = rng.randrange(4)
        if kind == 0:
            bodies.append(bytes(rng.randrange(256) for _ in range(rng.randrange(64))))
        elif kind == 1:  # a valid body cut short or with one byte flipped
            raw = bytearray(good.encode())
            if rng.random() < 0.5:
                raw = raw[:rng.randrange(len(raw))]
            else:
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            bodies.append(bytes(raw))
        else:
            bodies.append(json.dumps(_random_json(rng)).encode())
    return bodies


def test_fuzzed_bodies_over_http_always_get_a_json_answer(export):
    """A few hundred seeded random/hostile bodies over loopback HTTP: every one gets a 200 or
    a 4xx with a JSON body, none a dropped connection or a 500."""
    import http.client
    import random
    import time
    rng = random.Random(14)
    bodies = _fuzz_bodies(rng, 300)
    paths = ["/v1/models/image_encoder:predict", "/v1/models/image_to_text:predict",
             "/v1/models/text_encoder:predict", "/v1/models/text_to_image/versions/1:predict"]
    httpd = rest.serve_http(export["server"], port=0, host="127.0.0.1")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    deadline = time.monotonic() + 240
    statuses = []
    try:
        port = httpd.server_address[1]
        for i, body in enumerate(bodies):
            assert time.monotonic() < deadline, f"fuzzing took over 240 s ({i} bodies)"
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                conn.request("POST", rng.choice(paths), body=body,
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                status, payload = resp.status, resp.read()
            except (ConnectionError, http.client.HTTPException) as err:
                pytest.fail(f"body {i} {body[:80]!r}: connection dropped ({err!r})")
            finally:
                conn.close()
            answer = json.loads(payload)
            assert status == 200 or 400 <= status < 500, (i, body[:200], status, answer)
            assert isinstance(answer, dict) and (status == 200) != ("error" in answer), answer
            statuses.append(status)
        # Headers a client can get wrong: still an answer.
        for length in ("abc", "-5"):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.putrequest("POST", paths[0])
            conn.putheader("Content-Length", length)
            conn.endheaders()
            resp = conn.getresponse()
            assert resp.status == 400 and "Content-Length" in json.loads(resp.read())["error"]
            conn.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
    assert len(statuses) == len(bodies) and statuses.count(200) >= 1
