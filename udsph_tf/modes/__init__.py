"""One module per `--mode`, each with `run(config)`: the only modules that import across the
packages (data, models, training, evaluation, retrieval, export).

    python main.py --mode=train    -> modes/train.py     train, select on validation, test once
    python main.py --mode=eval     -> modes/evaluate.py  test the selected checkpoint again
    python main.py --mode=export   -> modes/export.py    SavedModels + code databases
    python main.py --mode=search   -> modes/search.py    one query against a code database
    python main.py --mode=extract  -> modes/extract.py   backbone features of an image folder

Nothing heavy is imported here (main.py's --help stays fast): `run` imports the mode's module.
"""

import importlib

from udsph_tf import errors
from udsph_tf.config import check_values

MODULES = {"train": "train", "eval": "evaluate", "export": "export", "search": "search",
           "extract": "extract"}


def run(config, given=None):
    """Check the flags' values and --workdir, take the run's recorded fields
    (run_identity.config_for_mode; `given`: the flags set on the command line, None = those
    off their defaults) and run the mode."""
    if config.mode not in MODULES:
        raise errors.ConfigError(f"--mode={config.mode}: unknown mode; one of {list(MODULES)}")
    check_values(config)
    from udsph_tf.training.schedule import epoch_phases
    epoch_phases(config)  # a negative pass count; --adversarial without --label_net
    check_workdir(config)
    from udsph_tf.run_identity import config_for_mode
    config = config_for_mode(config, given)
    module = importlib.import_module(f"udsph_tf.modes.{MODULES[config.mode]}")
    return module.run(config)


def check_workdir(config):
    """Before any data is read: training needs a writable --workdir; eval and export need a
    trained one and must not create it (search may run from an export alone)."""
    if config.mode == "train":
        errors.check_workdir(config.workdir, create=True)
    elif config.mode in ("eval", "export"):
        errors.check_workdir(config.workdir, create=False)
        from udsph_tf.run_identity import require_trained_run
        require_trained_run(config.workdir)
