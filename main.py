"""Entry point: flags -> Config -> udsph_tf.modes.run(config). Nothing else lives here.

    python main.py                                  # train + evaluate on the embedded default data
    python main.py --flagfile=flags/mirflickr.cfg --data_dir=/data/mirflickr25k --bits=32
    python main.py --helpfull                       # every flag

A user error (bad flag, file or --workdir; udsph_tf.errors.UserError) prints one line
`error: <flag or file>: <problem>` and exits with status 2; `--verbosity=1` or
UDSPH_TRACEBACK=1 adds the traceback. Any other exception is a bug: traceback, status 1.
"""

import os
import sys
import traceback

from absl import app
from absl import flags as absl_flags

import flags as udsph_flags  # the repository's flags/ folder (not installed as a package)
from udsph_tf import errors  # no TensorFlow import: --help stays fast

udsph_flags.define_flags()


def main(argv):
    try:
        if len(argv) > 1:
            raise errors.ConfigError(f"unexpected arguments {argv[1:]}: flags take the form "
                                     "--name=value")
        config = udsph_flags.config_from_flags(absl_flags.FLAGS)
        _quiet_unless_verbose()
        from udsph_tf import modes  # heavy imports after flag parsing (fast --help)
        modes.run(config, given=udsph_flags.given_flags(absl_flags.FLAGS))
    except errors.UserError as err:
        _exit_user_error(str(err))


def _quiet_unless_verbose():
    """At the default verbosity: no absl INFO lines (TF's checkpoint saver logs each shard),
    no C++ INFO/WARNING lines and no tf.function retracing notices; --verbosity shows them."""
    if absl_flags.FLAGS["verbosity"].present:
        return
    from absl import logging as absl_logging
    absl_logging.set_verbosity(absl_logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # read when TensorFlow loads, below
    # TensorFlow's C++ start-up notices (oneDNN, CPU features) are written through absl
    # before its log level is read: import it once with the stderr descriptor muted.
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    import logging
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)


def _parse_flags(argv):
    """absl's parser, with a bad flag reported like every other user error."""
    try:
        return absl_flags.FLAGS(argv)
    except absl_flags.Error as err:
        # absl words these "flag --bits=x: ...", "Unknown command line flag 'x'" and
        # "ERROR:: Unable to open flagfile"; make each one line starting with the flag.
        message = " ".join(str(err).replace("ERROR:: ", "").split())
        if message.startswith("flag --"):
            message = message[len("flag "):]
        elif isinstance(err, absl_flags.UnrecognizedFlagError):
            message = f"--{err.flagname}: {message}"
        elif isinstance(err, absl_flags.CantOpenFlagFileError):
            message = f"--flagfile: {message}"
        _exit_user_error(message)


def _exit_user_error(message):
    verbosity = absl_flags.FLAGS["verbosity"].value if absl_flags.FLAGS.is_parsed() else 0
    if verbosity >= 1 or os.environ.get("UDSPH_TRACEBACK", "") not in ("", "0"):
        traceback.print_exc()
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(errors.UserError.exit_code)


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
