"""`--mode=extract`: run a backbone over an image folder and write global + region features.

The .npz it writes is read by feature-mode training (`--image_file=out.npz
--image_key=features`, or `--image_key=regions` for region input); its keys are described in
udsph_tf/data/features.py.
"""

import os
import time

import numpy as np

from udsph_tf.data import images as image_data
from udsph_tf.data.features import extract, save_features
from udsph_tf.data.readers import MIRFLICKR730_FILE
from udsph_tf.errors import ConfigError, DataError, MissingFileError
from udsph_tf.models.backbones import build_backbone


def run(config):
    return extract_features(config)


def _rows_for(config):
    # The 730-row MIRFlickr subset has photos for only 730 of the 20,015 listed ids.
    if config.dataset == "mirflickr730" and config.data_dir:
        path = os.path.join(config.data_dir, MIRFLICKR730_FILE)
        if not os.path.isfile(path):
            raise MissingFileError(f"--dataset=mirflickr730: {path} not found")
        with np.load(path) as data:
            if "row_in_20015" not in data:
                raise DataError(f"{path}: key 'row_in_20015' missing")
            return np.asarray(data["row_in_20015"], np.int64)
    return None


def extract_features(config):
    """Extract the features of `config.image_dir` with `config.backbone` into `config.feature_file`.

    Returns a summary dict (path, counts, shapes, wall time).
    """
    if config.backbone == "features":
        raise ConfigError("--backbone=features: --mode=extract needs a CNN: set --backbone "
                          "(e.g. efficientnet_lite0)")
    if not config.feature_file:
        raise ConfigError("--feature_file: --mode=extract needs --feature_file=out.npz")
    if not config.feature_file.endswith(".npz"):
        raise ConfigError(f"--feature_file={config.feature_file}: must end in .npz")
    start = time.perf_counter()
    files = image_data.list_image_files(config.image_dir, rows=_rows_for(config),
                                        skip_bad=config.skip_bad_images)
    if files.missing or files.unreadable:
        print(f"extract: {files.summary()}", flush=True)
    backbone = build_backbone(config.backbone, config.backbone_weights)
    batch_size = min(config.batch_size, 64)  # activations of a 224x224 CNN, not a hashing batch
    features, regions = extract(backbone, files, batch_size, progress=config.progress)
    seconds = time.perf_counter() - start
    save_features(config.feature_file, backbone, files, features, regions, seconds)
    summary = {"feature_file": config.feature_file, "images": len(files),
               "listed": files.num_listed, "missing": len(files.missing),
               "unreadable": len(files.unreadable), "features": features.shape,
               "regions": regions.shape, "seconds": round(seconds, 2)}
    print(f"extract: wrote {summary}", flush=True)
    return summary
