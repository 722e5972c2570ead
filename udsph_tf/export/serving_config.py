"""TF Serving `models.config` files (ModelServerConfig text protos) for an exported run."""

import os

from udsph_tf.files import write_text

# Where `docker run -v <export>/<run>:/models/<run>` puts the run inside the container.
DOCKER_MODELS_ROOT = "/models"


def _quote(value):
    """A text-proto string literal (TF Serving parses models.config with protobuf TextFormat)."""
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def models_config_text(models):
    """ModelServerConfig text for [(name, base_path)]; TF Serving serves each base's highest
    integer version (the default `latest` version policy)."""
    if not models:
        raise ValueError("models.config needs at least one model")
    names = [name for name, _ in models]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate model names in models.config: {names}")
    lines = ["model_config_list {"]
    for name, base_path in models:
        lines += ["  config {",
                  f"    name: {_quote(name)}",
                  f"    base_path: {_quote(base_path)}",
                  '    model_platform: "tensorflow"',
                  "  }"]
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_models_configs(run_dir, run_name, model_names):
    """Write `models.config` (absolute host paths) and `models.docker.config` (paths inside the
    tensorflow/serving container when the run is mounted at /models/<run>). Returns both paths."""
    run_dir = os.path.abspath(run_dir)
    host = [(name, os.path.join(run_dir, name)) for name in model_names]
    docker = [(name, f"{DOCKER_MODELS_ROOT}/{run_name}/{name}") for name in model_names]
    host_path = os.path.join(run_dir, "models.config")
    docker_path = os.path.join(run_dir, "models.docker.config")
    write_text(host_path, models_config_text(host))
    write_text(docker_path, models_config_text(docker))
    return host_path, docker_path
