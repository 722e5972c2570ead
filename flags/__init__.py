"""absl flag definitions: every field of `udsph_tf.config.Config` becomes one flag.

This folder is not installed as a package (it would shadow PyPI's `flags`); `main.py` imports it
from the repository root. Per-dataset presets are flagfiles beside this file.
"""

from absl import flags as absl_flags

from udsph_tf.config import Config, config_fields


def define_flags(flag_values=absl_flags.FLAGS):
    """Define one flag per Config field (idempotent, so tests may call it again)."""
    for field in config_fields():
        if field.name in flag_values:
            continue
        help_text = field.metadata["help"]
        choices = field.metadata.get("choices")
        if choices is not None:
            absl_flags.DEFINE_enum(field.name, field.default, list(choices), help_text,
                                   flag_values=flag_values)
        elif field.type in (bool, "bool"):
            absl_flags.DEFINE_bool(field.name, field.default, help_text, flag_values=flag_values)
        elif field.type in (int, "int"):
            absl_flags.DEFINE_integer(field.name, field.default, help_text,
                                      flag_values=flag_values)
        elif field.type in (float, "float"):
            absl_flags.DEFINE_float(field.name, field.default, help_text, flag_values=flag_values)
        else:
            absl_flags.DEFINE_string(field.name, field.default, help_text,
                                     flag_values=flag_values)


def config_from_flags(flag_values=absl_flags.FLAGS) -> Config:
    """Read the parsed flags into a Config."""
    return Config(**{f.name: flag_values[f.name].value for f in config_fields()})


def given_flags(flag_values=absl_flags.FLAGS):
    """Names of the Config flags set on the command line or in a --flagfile (absl's
    `present`), as opposed to those left at their defaults: --mode=eval/export/search take
    the others from the run's record, and refuse a given one that contradicts it."""
    return {f.name for f in config_fields() if flag_values[f.name].present}


def config_from_flagfile(path) -> Config:
    """The Config main.py builds from `--flagfile=path` alone (benches and tests read a preset
    this way; relative paths inside it are, as for main.py, from the current directory)."""
    values = absl_flags.FlagValues()
    define_flags(values)
    values(["main.py", f"--flagfile={path}"])
    return config_from_flags(values)
