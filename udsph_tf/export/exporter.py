"""Write one exported run: encoders + retrieval models as versioned SavedModels, models.config."""

import dataclasses
import os
from typing import Dict

import numpy as np

from udsph_tf.export import layout, serving_config, warmup
from udsph_tf.export.encoders import (image_encoder_module, image_input_layout,
                                      text_encoder_module)
from udsph_tf.export.retrieval_model import RetrievalModule

IMAGE_ENCODER = "image_encoder"
TEXT_ENCODER = "text_encoder"
IMAGE_TO_TEXT = "image_to_text"  # query: image features; database: text codes
TEXT_TO_IMAGE = "text_to_image"  # query: tag bag-of-words; database: image codes
MODEL_NAMES = (IMAGE_ENCODER, TEXT_ENCODER, IMAGE_TO_TEXT, TEXT_TO_IMAGE)


@dataclasses.dataclass
class ExportResult:
    run_dir: str
    version: int
    paths: Dict[str, str]          # model name -> <run_dir>/<model>/<version>
    models_config: str
    docker_models_config: str


def export_run(run_dir, *, imgnet, txtnet, image_shape, tag_dim, bits, database_ids,
               database_image_packed, database_text_packed, top_k, warmup_images,
               warmup_tags, version=0, metadata=None, tag_vocab=None):
    """Export the four serving models of a trained run under `run_dir`.

    database_*_packed: uint8 (N, bits/8) codes of the database items (pack_codes order);
    warmup_images / warmup_tags: a few real query inputs replayed by TF Serving on load.
    tag_vocab: tag names of the bag-of-words columns; adds the tag-name signatures
    (text_encoder `from_tag_words`, text_to_image `search_tag_words`).
    metadata["run"]: the run stamp (run_identity.export_stamp: run id, checkpoint and its
    step), written into every model's udsph_export.json; versions of another run under
    `run_dir` are refused.
    Every model of the call gets the same integer version; existing versions stay untouched.
    """
    image_shape = tuple(int(s) for s in image_shape)
    tag_dim = int(tag_dim)
    warmup_images = np.asarray(warmup_images, np.float32)
    warmup_tags = np.asarray(warmup_tags, np.float32)
    if len(warmup_images) == 0 or len(warmup_tags) == 0:
        raise ValueError("warm-up inputs must hold at least one row each")
    layout.check_run_owner(run_dir, MODEL_NAMES, (metadata or {}).get("run"))
    version = layout.choose_version(run_dir, MODEL_NAMES, version)
    image_input = ("image_features", image_shape)
    text_input = ("tags", (tag_dim,))
    modules = {
        IMAGE_ENCODER: image_encoder_module(imgnet, image_shape),
        TEXT_ENCODER: text_encoder_module(txtnet, tag_dim, tag_vocab),
        IMAGE_TO_TEXT: RetrievalModule(imgnet, *image_input, database_text_packed, database_ids,
                                       bits, top_k, name=IMAGE_TO_TEXT),
        TEXT_TO_IMAGE: RetrievalModule(txtnet, *text_input, database_image_packed,
                                       database_ids, bits, top_k, name=TEXT_TO_IMAGE,
                                       tag_vocab=tag_vocab),
    }
    # Warm-up: one single-row and one small-batch request per signature that takes raw input.
    one_img, few_img = warmup_images[:1], warmup_images[:8]
    one_txt, few_txt = warmup_tags[:1], warmup_tags[:8]
    warm = {
        IMAGE_ENCODER: [("serving_default", {"image_features": one_img}),
                        ("serving_default", {"image_features": few_img})],
        TEXT_ENCODER: [("serving_default", {"tags": one_txt}),
                       ("serving_default", {"tags": few_txt})],
        IMAGE_TO_TEXT: [("serving_default", {"image_features": one_img}),
                        ("serving_default", {"image_features": few_img})],
        TEXT_TO_IMAGE: [("serving_default", {"tags": one_txt}),
                        ("serving_default", {"tags": few_txt})],
    }
    if tag_vocab is not None:
        words = [" ".join(np.asarray(tag_vocab)[np.flatnonzero(row > 0)][:8])
                 for row in warmup_tags[:1]]
        if words[0]:
            warm[TEXT_ENCODER].append(("from_tag_words", {"tag_words": np.array(words, object)}))
            warm[TEXT_TO_IMAGE].append(("search_tag_words",
                                        {"tag_words": np.array(words, object)}))
    meta = dict(metadata or {}, bits=int(bits), version=version,
                image_shape=list(image_shape), image_layout=image_input_layout(imgnet),
                tag_dim=tag_dim,
                database_size=int(len(database_ids)), top_k=int(min(top_k, len(database_ids))))
    paths = {}
    for name, module in modules.items():
        target = os.path.join(run_dir, name, str(version))
        model_meta = dict(meta, model=name)

        def extras(tmp_dir, name=name, model_meta=model_meta):
            warmup.write_warmup_requests(tmp_dir, name, warm[name])
            layout.write_metadata(tmp_dir, model_meta)

        paths[name] = layout.save_atomically(module, module.signatures(), target,
                                             extra_files={"extras": extras})
    run_name = os.path.basename(os.path.normpath(run_dir))
    host_cfg, docker_cfg = serving_config.write_models_configs(run_dir, run_name, MODEL_NAMES)
    return ExportResult(run_dir=os.path.abspath(run_dir), version=version, paths=paths,
                        models_config=host_cfg, docker_models_config=docker_cfg)
