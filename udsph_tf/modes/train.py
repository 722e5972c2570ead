"""`--mode=train`: prepare the data, build the Task, run the Trainer's loop, test once.

    metrics = train_and_evaluate(config)   # what `python main.py` does
"""

import dataclasses
import os
import time

import keras
import tensorflow as tf

from udsph_tf import run_identity
from udsph_tf.data import images as image_io
from udsph_tf.data.raw_images import (RawImageInput, check_image_files, decode_pixels,
                                      remap_split)
from udsph_tf.data.splits import data_and_split
from udsph_tf.models.backbones import build_backbone
from udsph_tf.models.backbones.cached import backbone_outputs, can_cache
from udsph_tf.modes.evaluate import test
from udsph_tf.training.strategy import make_strategy
from udsph_tf.training.refit import RefitModel, make_refit_trainer
from udsph_tf.training.task import Task
from udsph_tf.training.trainer import Trainer


def run(config):
    return train_and_evaluate(config)


def train_and_evaluate(config, strategy=None, data=None, split=None, image_size=None):
    """Train (resuming from config.workdir), select on validation, test once; returns the
    metrics (also in metrics.json). data/split/strategy: given (tests) or from the config."""
    return train_and_test(make_trainer(config, strategy, data, split, image_size))


def train_and_test(trainer):
    """Run a made Trainer's loop (make_trainer) and the final test; returns the metrics."""
    config = trainer.config
    os.makedirs(config.workdir, exist_ok=True)
    start = time.time()
    # run.json: a resume must be the recorded run; a fresh start records it.
    run_identity.start_training(config, trainer.task.data, trainer.task.split,
                                write=trainer.chief)
    history = trainer.run()
    refit = run_refit(trainer) if config.refit else None
    metrics = test(trainer.task, trainer.ckpt, history, train_seconds=time.time() - start,
                   summaries=trainer.summaries, refit=refit)
    trainer.cleanup()
    return metrics


def run_refit(trainer):
    """The --refit phase after the selection (resumed where it stopped), as a RefitModel
    for test(); None when there is nothing to refit."""
    refit = make_refit_trainer(trainer)
    if refit is None:
        return None
    run_identity.start_training(refit.config, refit.task.data, refit.task.split,
                                write=refit.chief)
    history = refit.run()
    refit.cleanup()
    return RefitModel(refit.task, refit.ckpt, history)


def make_trainer(config, strategy=None, data=None, split=None, image_size=None):
    """The seeded run's Trainer around its Task (nothing trained or written yet)."""
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)
    strategy = strategy or make_strategy(config.num_replicas)
    data, split, raw = prepare_data(config, data, split, image_size)
    # Loading may build a network and draw from the seeded generators (a backbone over raw
    # photos; the MIRFlickr-730 region cache's first build): seed again, so the initial
    # weights are the same whether or not a cache existed.
    keras.utils.set_random_seed(config.seed)
    return Trainer(Task(config, strategy, data, split, raw))


def prepare_data(config, data=None, split=None, image_size=None):
    """(data, split, raw): the run's rows; a raw-image data set (--image_dir) is decoded into
    memory (or through its frozen backbone) with `raw` saying how (else None)."""
    data, split = data_and_split(config, data, split)
    raw = None
    if data.images is None:
        data, split, raw = prepare_raw_images(config, data, split, image_size,
                                              progress=config.progress)
    return data, split, raw


def prepare_raw_images(config, data, split, image_size=None, progress=True):
    """Raw-image mode: (data with in-memory images, split over the kept rows, RawImageInput):
    pixels, or the frozen backbone's outputs when nothing trains or augments them.

    image_size: (H, W) of the backbone input; None = 224x224 (tests use smaller photos).
    """
    if not data.image_paths:
        raise ValueError(f"{data.name}: raw-image mode needs data.image_paths (--image_dir)")
    if config.backbone == "features":
        raise ValueError(f"{data.name}: the data has raw images (--image_dir) but "
                         "--backbone=features; choose a CNN, e.g. --backbone=efficientnet_lite0")
    kept = check_image_files(data.image_paths, skip_bad=config.skip_bad_images)
    if len(kept) < len(data.image_paths):
        split = remap_split(split, kept, len(data.image_paths))
        data = data.subset(kept)
    size = tuple(image_size or (224, 224))
    backbone = build_backbone(config.backbone, config.backbone_weights, (*size, 3),
                              trainable=False)
    spec = image_io.ImageSpec(**backbone.preprocessing)
    pixels = decode_pixels(data.image_paths, spec, progress=progress)
    cached = can_cache(config)
    images = (backbone_outputs(backbone, pixels, image_io.normalizer(spec), progress)
              if cached else pixels)
    data = dataclasses.replace(data, images=images)
    return data, split, RawImageInput(images=images, cached=cached, kept=kept, spec=spec)
