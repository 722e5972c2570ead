"""What export and search read of a trained run besides its weights: its recorded input
handling, and the error for runs that cannot be served."""

import json
import os

from udsph_tf.errors import ConfigError, DataError
from udsph_tf.rundir import INPUTS_FILE


def raw_image_run_error(dataset_name, what):
    """The ConfigError for export/search of a run that reads raw images (--image_dir): only
    runs trained on image features are served, so say how to get one."""
    return ConfigError(
        f"--image_dir: {what} needs a run trained on image features, and this one "
        f"({dataset_name}) reads raw images; serving a raw-image ImgNet is not supported. "
        "Extract the "
        "features with the same backbone (--mode=extract --image_dir=... --backbone=... "
        "--feature_file=F), train on them (--image_file=F --image_key=features) and use that "
        "run")


def recorded_input_spec(workdir):
    """The input handling the run resolved at training (rundir.INPUTS_FILE), or None for
    runs that predate it (then the config alone decides)."""
    path = os.path.join(workdir, INPUTS_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: unreadable run record ({err})") from None
