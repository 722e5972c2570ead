"""The UDSPH networks (one module each) and `build_models`, which makes them all from a Config."""

import numpy as np

from udsph_tf.models.attention import CrossModalAttention
from udsph_tf.models.discriminator import Discriminator
from udsph_tf.models.image_input import FeatureInput, make_image_input
from udsph_tf.models.imgnet import ImgNet
from udsph_tf.models.labnet import LabNet
from udsph_tf.models.normalization import (InputNormalizer, resolve_image_norm,
                                           resolve_text_encoder, resolve_text_norm)
from udsph_tf.models.txtnet import TxtNet

__all__ = ["LabNet", "ImgNet", "TxtNet", "Discriminator", "CrossModalAttention",
           "FeatureInput", "make_image_input", "build_models", "resolve_input_spec",
           "InputNormalizer", "MODEL_NAMES", "attention_mode", "ATTENTION_SKIPPED"]

MODEL_NAMES = ("labnet", "imgnet", "txtnet", "disc_img", "disc_txt", "attention")
ATTENTION_SKIPPED = "skipped (dense text: no word tokens)"

def resolve_input_spec(config, train_tags=None):
    """The resolved input handling of a run: {"image_norm", "text_encoder", "text_norm"}.

    'auto' values are decided from the training text (`train_tags`); without it auto text is
    taken as a bag of words. Raw-image runs normalise in their backbone, not here.
    """
    encoder = resolve_text_encoder(config.text_encoder, train_tags) if train_tags is not None \
        else ("bow" if config.text_encoder == "auto" else config.text_encoder)
    image_norm = resolve_image_norm(config.image_norm) if config.backbone == "features" \
        else "none"
    return {"image_norm": image_norm, "text_encoder": encoder,
            "text_norm": resolve_text_norm(config.text_norm, encoder),
            "hold_constant_columns": bool(config.hold_constant_columns)}


def attention_mode(config, input_spec):
    """What the cross-modal attention does in a run: "scan", "none" (--attention=none) or
    ATTENTION_SKIPPED.

    Dense text (--text_encoder=dense: topic proportions, mean word vectors) has no words. As
    one token its i2t softmax is over a single token (identically 1) and SCAN's clipped l2 norm
    over that length-1 axis turns every t2i cosine into +-1, so the "attention" would be a
    mean over the regions of positive cosine, not word-region alignment: it is skipped, and
    the run trains as SSAH would (the flag keeps its value; metrics.json records this).
    """
    if config.attention == "none":
        return "none"
    return config.attention if input_spec["text_encoder"] == "bow" else ATTENTION_SKIPPED


def build_models(config, image_shape, tag_dim, num_labels, input_spec=None, image_input=None,
                 word_vectors=None):
    """All networks of a run, built (variables created) by a call on a zero batch of 2.

    image_shape: one image input without the batch axis, (D,) or (R, d) features or (H, W, 3)
    raw images for a backbone. Returns {"labnet", "imgnet", "txtnet", "disc_img", "disc_txt",
    "attention"}; labnet, the discriminators and attention are None when config.label_net,
    config.adversarial or config.attention ("none") switch them off, attention also for dense
    text (attention_mode). The discriminators need
    the label network (its features are their 'real' samples), so they are None without it.
    image_input: ImgNet's image input layer; None = the one config.backbone names
    (models/image_input.py); raw-image training on cached backbone outputs passes
    models/backbones/cached.CachedBackboneInput.
    With the attention on, ImgNet owns the region projection and TxtNet the word projection
    into the attention space (width config.attention_dim), so the attention loss trains both;
    the attention layer itself has no variables.
    word_vectors: None, or (vectors (tag_dim, config.token_dim), found (tag_dim,) bool) that
    initialise TxtNet's tag embedding rows where found (--word_init=glove; made by the data
    layer, since models read no files).
    """
    image_shape = tuple(int(s) for s in image_shape)
    tag_dim, num_labels = int(tag_dim), int(num_labels)
    if tag_dim < 1 or num_labels < 1:
        raise ValueError(f"tag_dim and num_labels must be positive, got {tag_dim}, {num_labels}")
    spec = input_spec or resolve_input_spec(config)
    region_dim = config.region_dim or None
    attending = attention_mode(config, spec) == "scan"
    attention_dim = config.attention_dim if attending else None
    vectors, found = word_vectors if word_vectors is not None else (None, None)
    hold = bool(spec.get("hold_constant_columns", False))
    image_norm = (InputNormalizer(spec["image_norm"], image_shape[-1], hold_constant=hold,
                                  name="image_norm")
                  if spec["image_norm"] != "none" else None)  # feature inputs only
    text_norm = (InputNormalizer(spec["text_norm"], tag_dim, hold_constant=hold,
                                 name="text_norm")
                 if spec["text_norm"] != "none" or hold else None)
    imgnet = ImgNet(config.bits, num_labels, hidden=config.imgnet_hidden,
                    feature_dim=config.feature_dim, dropout=config.dropout,
                    region_dim=region_dim,
                    image_input=image_input or make_image_input(config, image_shape),
                    normalizer=image_norm, batch_norm=config.batch_norm,
                    attention_dim=attention_dim)
    txtnet = TxtNet(tag_dim, config.bits, num_labels, hidden=config.txtnet_hidden,
                    feature_dim=config.feature_dim, scales=tuple(config.txt_scale_list),
                    max_tokens=config.max_tokens, token_dim=config.token_dim,
                    dropout=config.dropout, tag_dropout=config.tag_dropout,
                    encoder=spec["text_encoder"],
                    normalizer=text_norm, batch_norm=config.batch_norm,
                    attention_dim=attention_dim, word_vectors=vectors, word_found=found)
    images = np.zeros((2,) + image_shape, np.float32)
    tags = np.zeros((2, tag_dim), np.float32)
    img_out, txt_out = imgnet(images), txtnet(tags)
    models = {"labnet": None, "imgnet": imgnet, "txtnet": txtnet,
              "disc_img": None, "disc_txt": None, "attention": None}
    if config.label_net:
        labnet = LabNet(num_labels, config.bits, hidden=config.labnet_hidden,
                        feature_dim=config.feature_dim)
        labnet(np.zeros((2, num_labels), np.float32))
        models["labnet"] = labnet
        if config.adversarial:
            features = np.zeros((2, config.feature_dim), np.float32)
            for name in ("disc_img", "disc_txt"):
                disc = Discriminator(config.disc_hidden_list, name=name)
                disc(features)
                models[name] = disc
    if attending:
        attention = CrossModalAttention(
            img_out["regions"].shape[-1], txt_out["tokens"].shape[-1],
            dim=config.attention_dim, lambda_softmax=config.lambda_softmax,
            lambda_lse=config.lambda_lse, pool=config.attention_pool,
            direction=config.attention_direction, project=False, name="attention")
        attention(img_out["regions"], txt_out["tokens"], txt_out["token_mask"])
        models["attention"] = attention
    return models
