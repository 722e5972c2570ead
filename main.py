"""Entry point: parse flags, build the Config, hand it to the library. Nothing else lives here.

    python main.py                                  # train + evaluate on the embedded default data
    python main.py --flagfile=flags/mirflickr.cfg --data_dir=/data/mirflickr25k --bits=32
    python main.py --helpfull                       # every flag
"""

from absl import app
from absl import flags as absl_flags

import flags as udsph_flags  # the repository's flags/ folder (not installed as a package)

udsph_flags.define_flags()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = udsph_flags.config_from_flags(absl_flags.FLAGS)
    from udsph_tf import app as udsph_app  # heavy imports after flag parsing (fast --help)
    udsph_app.run(config)


if __name__ == "__main__":
    app.run(main)
