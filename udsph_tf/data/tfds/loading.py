"""Read a built TFDS cross-modal data set back into the data layer's CrossModalData and Split."""

import logging
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from etils import epath

from udsph_tf.data.types import CrossModalData, Split
from udsph_tf.errors import ConfigError, DataError, MissingFileError

# Config.dataset name -> (TFDS builder name, config used when none is given and several exist).
BUILDERS = {
    "mirflickr": ("mirflickr25k", "iall"),
    "mirflickr730": ("mirflickr25k", "lite0_730"),
    "nuswide": ("nus_wide", "tc21_iall"),
    "coco": ("coco_multilabel", "2014"),
}


def _register_builders():
    # Importing the modules registers the builders with TFDS.
    from udsph_tf.data.tfds import coco_multilabel, mirflickr25k, nuswide  # noqa: F401


def built_configs(builder_name: str, data_dir: str):
    """Config names with a finished build (a dataset_info.json) under data_dir/builder_name."""
    root = epath.Path(data_dir) / builder_name
    if not root.exists():
        return []
    return sorted(cfg.name for cfg in root.iterdir() if cfg.is_dir() and
                  any((v / "dataset_info.json").exists() for v in cfg.iterdir() if v.is_dir()))


def resolve(name: str, data_dir: str, config_name: str = "") -> Tuple[str, str]:
    """(builder name, config name) for a Config.dataset or builder name."""
    if not data_dir:
        raise ConfigError("--tfds_data_dir: --data_source=tfds needs --tfds_data_dir (the TFDS "
                          "data_dir the data set was built into)")
    builder_name, preferred = BUILDERS.get(name, (name, ""))
    if builder_name not in {b for b, _ in BUILDERS.values()}:
        raise ConfigError(f"--dataset={name}: no TFDS builder for dataset {name!r}; choose one "
                          f"of {sorted(BUILDERS)}")
    built = built_configs(builder_name, data_dir)
    if config_name:
        if config_name not in built:
            raise MissingFileError(
                f"--tfds_config={config_name}: {builder_name}/{config_name} is not built in "
                f"{data_dir} (built: {built or 'none'}). Build it: python tools/build_tfds.py "
                f"--dataset={name} --config={config_name} --manual_dir=DIR "
                f"--data_dir={data_dir}")
        return builder_name, config_name
    if not built:
        raise MissingFileError(
            f"--tfds_data_dir={data_dir}: no build of {builder_name} in {data_dir}. Build one: "
            f"python tools/build_tfds.py --dataset={name} --config=CONFIG --manual_dir=DIR "
            f"--data_dir={data_dir}")
    if len(built) == 1:
        return builder_name, built[0]
    if preferred in built:
        return builder_name, preferred
    raise ConfigError(f"--tfds_config: several configs of {builder_name} are built in {data_dir} "
                      f"({built}); choose one (--tfds_config=NAME, or "
                      "load_tfds_as_crossmodal(..., config_name=...))")


def build_dataset(name: str, config_name: str, manual_dir: str, data_dir: str, *,
                  split_seed: Optional[int] = None, num_query: int = -1, num_train: int = -1,
                  num_val: int = -1):
    """Build one config into data_dir from the files in manual_dir; returns the builder.

    With split_seed (or sizes) the registered config is copied under a new name
    (e.g. vgg_seed3), so builds with different splits never overwrite each other.
    (`tfds build` needs apache_beam, which is not installed here; this is its stand-in.)
    """
    _register_builders()
    builder_name, preferred = BUILDERS.get(name, (name, ""))
    cls = tfds.builder_cls(builder_name)
    config_name = config_name or preferred
    if config_name not in cls.builder_configs:
        raise ConfigError(f"--config={config_name}: {builder_name} has no config "
                          f"{config_name!r}; choose one of {sorted(cls.builder_configs)}")
    config = cls.builder_configs[config_name]
    if split_seed is not None or num_query >= 0 or num_train >= 0 or num_val >= 0:
        from udsph_tf.data.tfds.common import with_split
        seed = config.split_seed if split_seed is None else split_seed
        config = with_split(config, split_seed=seed, num_query=num_query, num_train=num_train,
                            num_val=num_val)
    builder = cls(config=config, data_dir=data_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    return builder


def _decode(image_size: Optional[int]):
    def fn(ex):
        img = tf.io.decode_image(ex["image"], channels=3, expand_animations=False)
        if image_size:
            img = tf.image.resize(img, (image_size, image_size), method="bilinear")
            img = tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)
        return {**ex, "image": img}
    return fn


def load_tfds_as_crossmodal(name: str, data_dir: str, config_name: str = "", *,
                            image_size: Optional[int] = None) -> CrossModalData:
    """All rows of a built data set, in build-row order, with the build's split attached.

    Feature configs give float32 `images` (N, D); image configs give uint8 pixels (N, H, W, 3),
    resized to image_size x image_size when given (needed when the photos differ in size).
    `default_split` is the exact split recorded at build time (udsph_tf.data.make_split).
    """
    _register_builders()
    builder_name, config_name = resolve(name, data_dir, config_name)
    builder = tfds.builder(builder_name, config=config_name, data_dir=data_dir)
    feature = builder.info.features["image"]
    is_image = isinstance(feature, tfds.features.Image)
    decoders = {"image": tfds.decode.SkipDecoding()} if is_image else None

    keys = ("image", "tags", "labels", "id", "index")
    # Fixed-shape examples are read in batches (much faster in Python than one by one);
    # photos of different sizes can only be read one at a time.
    batched = not is_image or bool(image_size)
    chunks = {k: [] for k in keys}
    split_rows = {}
    for split_name in ("query", "database"):
        ds = builder.as_dataset(split=split_name, decoders=decoders, shuffle_files=False)
        ds = ds.map(lambda ex: {k: ex[k] for k in keys})
        if is_image:
            ds = ds.map(_decode(image_size), num_parallel_calls=tf.data.AUTOTUNE)
        if batched:
            ds = ds.batch(1024)
        rows = []
        for ex in tfds.as_numpy(ds):
            for k in keys:
                chunks[k].append(ex[k] if batched else ex[k][None])
            rows.append(np.atleast_1d(ex["index"]))
        split_rows[split_name] = np.concatenate(rows).astype(np.int64)
    if is_image and not batched:
        shapes = sorted({c.shape[1:] for c in chunks["image"]})
        if len(shapes) > 1:
            raise DataError(f"--tfds_data_dir={data_dir}: {builder_name}/{config_name}: the "
                            f"images differ in size ({shapes[:3]}...); pass image_size= to "
                            "resize them")
    columns = {k: np.concatenate(v) for k, v in chunks.items()}
    order = np.argsort(columns["index"], kind="stable")
    if not np.array_equal(columns["index"][order], np.arange(len(order))):
        raise DataError(f"--tfds_data_dir={data_dir}: {builder_name}/{config_name}: "
                        "query+database rows are not exactly 0..N-1 (an incomplete or mixed "
                        "build?)")
    images = columns["image"][order]
    if not is_image:
        images = images.astype(np.float32)
    meta = builder.info.metadata or {}
    split = _split_from_metadata(meta, split_rows, builder_name, config_name)
    return CrossModalData(
        name=name,
        images=images,
        tags=columns["tags"][order].astype(np.float32),
        labels=columns["labels"][order].astype(np.float32),
        ids=columns["id"][order].astype(np.int64),
        tag_vocab=meta.get("tag_vocab"),
        label_names=meta.get("label_names"),
        default_split=split)


def _split_from_metadata(meta, split_rows, builder_name, config_name) -> Split:
    recorded = meta.get("split")
    if not recorded:
        raise DataError(f"{builder_name}/{config_name}: the build records no split metadata")
    split = Split.from_dict(recorded)
    for split_name, field in (("query", "query_idx"), ("database", "database_idx")):
        if not np.array_equal(np.sort(split_rows[split_name]), np.sort(getattr(split, field))):
            raise DataError(f"{builder_name}/{config_name}: the {split_name} examples do not "
                            "match the split recorded in the build metadata")
    return split


def load_tfds_from_config(config) -> CrossModalData:
    """The `--data_source=tfds` entry point: Config.dataset + Config.tfds_data_dir
    + Config.tfds_config."""
    data = load_tfds_as_crossmodal(config.dataset, config.tfds_data_dir,
                                   config.tfds_config)
    split = data.default_split
    # Only a seeded build can disagree with --split_seed (a split file carries its own seed).
    if (split is not None and split.source == "seeded" and not config.split_file
            and config.split_seed != split.seed):
        logging.warning("--split_seed=%d differs from the seed %d the TFDS build was split "
                        "with; the build's split is used (rebuild with another config to change "
                        "it)", config.split_seed, split.seed)
    return data
