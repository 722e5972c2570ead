"""A TF Serving REST stand-in: the same JSON in and out, answered by tf.saved_model.load.

No `tensorflow_model_server` installs here, so this adapter lets tests (and users without
docker) exercise the REST formats against a real export:
  POST /v1/models/NAME[/versions/V]:predict  {"signature_name": ..., "instances": [...]}
                                             or {"inputs": {...}} (never both)
  -> {"predictions": [...]} (row format) or {"outputs": ...} (columnar); {"error": "..."} on
  bad input. Binary strings travel as {"b64": "..."}; string outputs whose name ends in
  "_bytes" are returned that way, as TF Serving does.
  GET /v1/models/NAME[/versions/V][/metadata]  model status / signature metadata.
A malformed request of any kind gets a 4xx with a JSON error body; the connection is never
dropped (tests fuzz it with random and hostile bodies).
Run it: python -m tools.rest --model_config_file=export/RUN/models.config --port=8501
"""

import base64
import json
import os
import re

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.python.saved_model import loader_impl

DEFAULT_SIGNATURE = "serving_default"
MAX_BODY_BYTES = 64 << 20  # far above any sensible batch; refuse rather than buffer more


class RestError(Exception):
    def __init__(self, message, status=400, shape_of=None):
        super().__init__(message)
        self.status = status
        self.shape_of = shape_of  # the input whose shape was wrong, if that was the error


class ServedModel:
    """One loaded SavedModel version with its signatures' input specs."""

    def __init__(self, saved_model_dir, name=None, version=None):
        if not os.path.exists(os.path.join(saved_model_dir, "saved_model.pb")):
            raise FileNotFoundError(f"no saved_model.pb in {saved_model_dir}")
        self.path = saved_model_dir
        self.name = name or os.path.basename(os.path.dirname(os.path.abspath(saved_model_dir)))
        self.version = version if version is not None else _version_of(saved_model_dir)
        self.loaded = tf.saved_model.load(saved_model_dir)
        self.signatures = dict(self.loaded.signatures)
        # What one image's rows are when they are not a plain vector (a --region_grid run):
        # said with a shape error, as the in-graph check says it (udsph_tf/export/encoders.py).
        self.image_layout = _image_layout(saved_model_dir)

    def predict(self, body):
        """REST predict: request body (str/bytes/dict) -> (HTTP status, response dict)."""
        try:
            request = _parse_body(body)
            signature_name = request.get("signature_name", DEFAULT_SIGNATURE)
            if not isinstance(signature_name, str):
                raise RestError("'signature_name' must be a string, got "
                                f"{type(signature_name).__name__}")
            if signature_name not in self.signatures:
                raise RestError(f'Serving signature name: "{signature_name}" not found in '
                                f"signature def (available: {sorted(self.signatures)})")
            fn = self.signatures[signature_name]
            specs = fn.structured_input_signature[1]
            if "instances" in request:
                tensors = _row_inputs(request["instances"], specs)
            else:
                tensors = _columnar_inputs(request["inputs"], specs)
            outputs = _call(fn, tensors)
            if "instances" in request:
                return 200, {"predictions": _row_outputs(outputs)}
            return 200, {"outputs": _columnar_outputs(outputs)}
        except RestError as err:
            message = str(err)
            if self.image_layout and err.shape_of == "image_features":
                message += f"; one item is {self.image_layout}"
            return err.status, {"error": message}
        except RecursionError:  # numpy and the b64 walk recurse once per nesting level
            return 400, {"error": "request nested too deeply"}

    def metadata(self):
        """GET .../metadata: the SignatureDefs as TF Serving renders them (proto -> JSON)."""
        meta_graph = loader_impl.parse_saved_model(self.path).meta_graphs[0]
        sigs = {k: json_format.MessageToDict(v) for k, v in meta_graph.signature_def.items()
                if not k.startswith("__")}
        return {"model_spec": {"name": self.name, "signature_name": "",
                               "version": str(self.version)},
                "metadata": {"signature_def": {"signature_def": sigs}}}


def _version_of(saved_model_dir):
    base = os.path.basename(os.path.normpath(saved_model_dir))
    return int(base) if base.isdigit() else 0


def _parse_body(body):
    if isinstance(body, (bytes, str)):
        try:
            body = json.loads(body)
        except RecursionError:  # json recurses per level: 5,000 '[' would crash the thread
            raise RestError("JSON Parse error: nested too deeply") from None
        except ValueError as err:  # JSONDecodeError, and UnicodeDecodeError for non-UTF-8
            raise RestError(f"JSON Parse error: {err}") from None
    if not isinstance(body, dict):
        raise RestError("request body must be a JSON object")
    has_rows, has_cols = "instances" in body, "inputs" in body
    if has_rows and has_cols:
        raise RestError("JSON Value: both 'instances' and 'inputs' given; use exactly one "
                        "(row or columnar format)")
    if not (has_rows or has_cols):
        raise RestError("Missing 'inputs' or 'instances' key")
    unknown = set(body) - {"instances", "inputs", "signature_name"}
    if unknown:
        raise RestError(f"unknown keys in request: {sorted(unknown)}")
    return body


def _decode_b64(value):
    if isinstance(value, dict):
        if set(value) != {"b64"}:
            raise RestError(f"an object value must be {{\"b64\": ...}}, got keys {sorted(value)}")
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (ValueError, TypeError) as err:
            raise RestError(f"invalid base64 value: {err}") from None
    if isinstance(value, list):
        return [_decode_b64(v) for v in value]
    return value


def _to_array(name, value, spec):
    value = _decode_b64(value)
    if spec.dtype == tf.string:
        arr = np.asarray(value, dtype=object)
        flat = [v.encode("utf-8") if isinstance(v, str) else v for v in arr.ravel()]
        if any(not isinstance(v, bytes) for v in flat):
            raise RestError(f"input '{name}' expects strings")
        arr = np.array(flat, dtype=object).reshape(arr.shape)
    else:
        try:
            arr = np.asarray(value)
        except ValueError as err:  # ragged nested lists
            raise RestError(f"input '{name}': rows of different lengths ({err})") from None
        if arr.dtype.kind == "b" and spec.dtype != tf.bool:
            raise RestError(f"input '{name}' expects {spec.dtype.name} numbers, got booleans")
        if arr.dtype.kind not in "biuf":
            raise RestError(f"input '{name}' expects {spec.dtype.name} numbers, got "
                            f"{_describe(arr)}")
        want = spec.dtype.as_numpy_dtype
        if np.issubdtype(want, np.integer):
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr) & (arr == np.round(arr))):
                raise RestError(f"input '{name}' expects integers ({spec.dtype.name}), got "
                                "non-integral numbers")
            info = np.iinfo(want)
            if arr.size and (arr.min() < info.min or arr.max() > info.max):
                raise RestError(f"input '{name}': values outside the {spec.dtype.name} range "
                                f"[{info.min}, {info.max}]")
        arr = arr.astype(want)
    _check_shape(name, arr.shape, spec.shape)
    return arr


def _image_layout(saved_model_dir):
    """The export metadata's image_layout, or None (no metadata: not a udsph-tf export)."""
    from udsph_tf.errors import DataError, MissingFileError
    from udsph_tf.export.layout import read_metadata
    try:
        return read_metadata(saved_model_dir).get("image_layout")
    except (MissingFileError, DataError, AttributeError):
        return None


def _describe(arr):
    if arr.dtype.kind in "US":
        return "strings"
    if arr.dtype == object:
        flat = list(arr.ravel())
        if any(v is None for v in flat):
            return "null values"
        return "strings" if any(isinstance(v, str) for v in flat) else "non-numeric values"
    return f"dtype {arr.dtype}"


def _check_shape(name, shape, spec_shape):
    want = spec_shape.as_list() if spec_shape.rank is not None else None
    if want is None:
        return
    ok = len(shape) == len(want) and all(w is None or w == s for s, w in zip(shape, want))
    if not ok:
        pretty = "[" + ", ".join("?" if w is None else str(w) for w in want) + "]"
        raise RestError(f"input '{name}' must have shape {pretty}, got {list(shape)}",
                        shape_of=name)
    if want and want[0] is None and shape[0] == 0:
        raise RestError(f"empty batch: input '{name}' has 0 rows; send at least one")


def _row_inputs(instances, specs):
    if not isinstance(instances, list):
        raise RestError("'instances' must be a JSON list (one element per example)")
    if not instances:
        raise RestError("empty batch: 'instances' is an empty list; send at least one")
    names = sorted(specs)
    columns = {name: [] for name in names}
    for i, row in enumerate(instances):
        if isinstance(row, dict) and not (set(row) == {"b64"}):
            missing, extra = set(names) - set(row), set(row) - set(names)
            if missing or extra:
                raise RestError(f"instance {i}: expected inputs {names}, missing "
                                f"{sorted(missing)}, unknown {sorted(extra)}")
            for name in names:
                columns[name].append(row[name])
        elif len(names) == 1:
            columns[names[0]].append(row)
        else:
            raise RestError(f"instance {i}: this signature has several inputs {names}; each "
                            "instance must be an object naming them")
    for name in names:
        if specs[name].shape.rank == 0:
            raise RestError(f"input '{name}' is a scalar (no batch dimension): use the "
                            "columnar format {\"inputs\": {...}} for this signature")
    return {name: _to_array(name, columns[name], specs[name]) for name in names}


def _columnar_inputs(inputs, specs):
    names = sorted(specs)
    # A single-input signature may receive its value bare (or as one {"b64": ...} value).
    bare = not isinstance(inputs, dict) or set(inputs) == {"b64"}
    if bare:
        if len(names) != 1:
            raise RestError(f"'inputs' must be an object with the inputs {names}")
        inputs = {names[0]: inputs}
    missing, extra = set(names) - set(inputs), set(inputs) - set(names)
    if missing or extra:
        raise RestError(f"expected inputs {names}, missing {sorted(missing)}, unknown "
                        f"{sorted(extra)}")
    return {name: _to_array(name, inputs[name], specs[name]) for name in names}


def _call(fn, arrays):
    try:
        outputs = fn(**{k: tf.constant(v) for k, v in arrays.items()})
    except tf.errors.InvalidArgumentError as err:
        raise RestError(_first_line(err.message)) from None
    except (TypeError, ValueError) as err:
        raise RestError(_first_line(str(err))) from None
    except tf.errors.OpError as err:
        raise RestError(_first_line(err.message), status=500) from None
    return {k: v.numpy() for k, v in outputs.items()}


_NOISE = re.compile(r"^(Graph execution error:|Detected at node |<stack traces unavailable>|"
                    r"\[\[\{\{)")


def _first_line(message):
    """The informative part of a TF error: drop the 'Graph execution error' header, the
    node trace and the op suffix TF adds around the assert's own message."""
    lines = [ln.strip() for ln in message.replace("\\'", "'").splitlines()]
    kept = [re.sub(r"^\{\{function_node [^}]*\}\}\s*", "",
                   re.sub(r"\s*\[Op:[^\]]*\]$", "", ln))
            for ln in lines if ln and not _NOISE.match(ln)]
    return " ".join(k for k in kept if k) or message.strip()


def _json_value(name, arr):
    if arr.dtype == object or arr.dtype.kind == "S":
        as_b64 = name.endswith("_bytes")
        flat = []
        for v in arr.ravel():
            if as_b64:
                flat.append({"b64": base64.b64encode(v).decode("ascii")})
            else:
                flat.append(v.decode("utf-8") if isinstance(v, bytes) else v)
        return np.array(flat, dtype=object).reshape(arr.shape).tolist()
    return arr.tolist()


def _row_outputs(outputs):
    sizes = {k: (v.shape[0] if v.ndim else None) for k, v in outputs.items()}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise RestError(f"outputs have inconsistent batch sizes {sizes}: use the columnar "
                        "format", status=500)
    values = {k: _json_value(k, v) for k, v in outputs.items()}
    n = next(iter(sizes.values()))
    if len(values) == 1:
        return next(iter(values.values()))
    return [{k: values[k][i] for k in sorted(values)} for i in range(n)]


def _columnar_outputs(outputs):
    values = {k: _json_value(k, v) for k, v in outputs.items()}
    if len(values) == 1:
        return next(iter(values.values()))
    return {k: values[k] for k in sorted(values)}


# --- a tiny model server over models.config ------------------------------------------------

_CONFIG_BLOCK = re.compile(r"config\s*\{(.*?)\}", re.S)
_FIELD = re.compile(r'(\w+)\s*:\s*"((?:[^"\\]|\\.)*)"')


def parse_models_config(path):
    """[(name, base_path)] from a models.config text proto (the fields this project writes)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"models.config not found: {path}")
    with open(path) as f:
        text = f.read()
    models = []
    for block in _CONFIG_BLOCK.findall(text):
        fields = dict(_FIELD.findall(block))
        if "name" not in fields or "base_path" not in fields:
            raise ValueError(f"{path}: a config block lacks name or base_path: {block.strip()}")
        models.append((fields["name"], fields["base_path"].replace('\\"', '"')))
    if not models:
        raise ValueError(f"{path}: no `config {{ ... }}` blocks found")
    return models


class ModelServer:
    """name -> latest version of each model in a models.config; routes REST paths."""

    _PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?(?::(predict)|/(metadata))?$")

    def __init__(self, models):
        self.models = {}
        for name, base_path in models:
            versions = sorted(int(d) for d in os.listdir(base_path) if d.isdigit()) \
                if os.path.isdir(base_path) else []
            if not versions:
                raise FileNotFoundError(f"model {name!r}: no integer version folder under "
                                        f"{base_path}")
            self.models[name] = ServedModel(os.path.join(base_path, str(versions[-1])),
                                            name=name, version=versions[-1])

    @classmethod
    def from_config_file(cls, path):
        return cls(parse_models_config(path))

    def handle(self, method, path, body=None):
        """(HTTP method, URL path, body) -> (status, response dict); never raises."""
        try:
            return self._route(method, path, body)
        except Exception as err:  # a bug here, yet the client gets an answer, not a reset
            return 500, {"error": f"internal error: {type(err).__name__}: {err}"}

    def _route(self, method, path, body):
        match = self._PATH.match(path)
        if not match:
            return 404, {"error": f"Malformed request: {method} {path}"}
        name, version, predict, metadata = match.groups()
        model = self.models.get(name)
        if model is None:
            return 404, {"error": f"Servable not found for request: Latest({name})"}
        if version is not None and int(version) != model.version:
            return 404, {"error": f"Servable not found for request: Specific({name}, {version})"}
        if predict:
            if method != "POST":
                return 405, {"error": "predict needs POST"}
            return model.predict(body)
        if metadata:
            return 200, model.metadata()
        return 200, {"model_version_status": [{"version": str(model.version),
                                               "state": "AVAILABLE",
                                               "status": {"error_code": "OK",
                                                          "error_message": ""}}]}


def serve_http(server, port, host="127.0.0.1"):
    """Blocking HTTP front end of a ModelServer (for local tries; TF Serving in production)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, method):
            status, response = self._answer(method)
            data = json.dumps(response).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _answer(self, method):
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY_BYTES:
                self.close_connection = True  # an unread body must not be parsed as a request
                if length > MAX_BODY_BYTES:
                    return 413, {"error": f"request body over {MAX_BODY_BYTES} bytes"}
                return 400, {"error": "invalid Content-Length header"}
            body = self.rfile.read(length) if length else None
            return server.handle(method, self.path, body)

        def do_GET(self):  # noqa: N802 (http.server naming)
            self._reply("GET")

        def do_POST(self):  # noqa: N802
            self._reply("POST")

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer((host, port), Handler)
    return httpd


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_config_file", required=True)
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    httpd = serve_http(ModelServer.from_config_file(args.model_config_file), args.port, args.host)
    print(f"serving REST on http://{args.host}:{httpd.server_address[1]}/v1/models/...")
    httpd.serve_forever()


if __name__ == "__main__":
    main()
