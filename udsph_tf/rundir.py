"""What a run directory (--workdir) holds, in one place: every name below is relative to it.

    run.json        the run's identity: config + data fingerprint (udsph_tf/run_identity.py)
    inputs.json     the input handling resolved at training (image_norm, text_encoder, ...)
    ckpt/           the full resumable state: step, networks, optimizers, buffers
    best/           the selected (best validation) weights and scalars; eval/export/search
    history.json    one entry per epoch: losses, validation MAP, timings
    metrics.json    the test report (evaluation/report.py)
    curves_*.png    precision-recall and precision@N curves of the test
    train/, eval/   TensorBoard events
    codes/          --mode=search's cached code databases of an unexported run
    refit/          --refit: a run directory of its own (the same layout) that trains again
                    on every training row for the selected epochs; its best/ is the run's model
"""

import json
import os

RUN_FILE = "run.json"
INPUTS_FILE = "inputs.json"
CKPT_DIR, CKPT_NAME = "ckpt", "ckpt"
BEST_DIR, BEST_NAME = "best", "best"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
CURVES_PREFIX = {"i2t": "curves_i2t", "t2i": "curves_t2i"}
SUMMARY_DIRS = ("train", "eval")
CODES_DIR = "codes"
REFIT_DIR = "refit"


def path(workdir, name):
    return os.path.join(workdir, name)


def checkpoint_label(checkpoint):
    """A checkpoint's name for stamps and caches: "best-N", or "refit/best-N" for a refit's
    (whose step count may equal the selection's)."""
    name = os.path.basename(checkpoint)
    run_dir = os.path.dirname(os.path.dirname(os.path.normpath(checkpoint)))
    return f"{REFIT_DIR}/{name}" if os.path.basename(run_dir) == REFIT_DIR else name


def read_history(workdir):
    """The epochs trained so far (history.json), or [] for a fresh run."""
    file = path(workdir, HISTORY_FILE)
    if not os.path.exists(file):
        return []
    with open(file) as f:
        return json.load(f)
