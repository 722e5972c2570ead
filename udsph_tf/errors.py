"""Errors the user can fix (flags, files, run directories); main.py prints them on one line.

Each class also derives from the builtin the code raised before, so callers that catch
ValueError / FileNotFoundError (and tests using pytest.raises) keep working. No TensorFlow
import: numpy-only modules (data readers, retrieval) raise these too.
"""

import os
import tempfile


class UserError(Exception):
    """Bad input, not a bug: shown as `error: <message>` with exit status 2, no traceback.
    The message starts with the file or flag at fault."""

    exit_code = 2


class ConfigError(UserError, ValueError):
    """A flag value, or a combination of flags, that cannot work."""


class DataError(UserError, ValueError):
    """A data file that cannot be read or holds the wrong thing."""


class MissingFileError(UserError, FileNotFoundError):
    """A file, folder or run that is not there."""


class WorkdirError(UserError, OSError):
    """A --workdir that cannot be created or written."""


def check_workdir(path, create: bool) -> str:
    """Fail at start-up, naming --workdir, instead of after the data load or an epoch.

    create=True (training): make the folder and prove it writable with a probe file.
    create=False (eval/export): the run must exist; never create it.
    """
    flag = f"--workdir={path}"
    if not path:
        raise ConfigError("--workdir: empty; name a run directory")
    if "://" in str(path):
        return path  # gs://, hdfs://: TF's file systems, checked when first written
    if os.path.exists(path) and not os.path.isdir(path):
        raise WorkdirError(f"{flag}: is a file, not a directory")
    if not create:
        if not os.path.isdir(path):
            raise MissingFileError(f"{flag}: no such run directory (train first: "
                                   "--mode=train with the same --workdir)")
        return path
    blocker = _file_ancestor(path)
    if blocker:
        raise WorkdirError(f"{flag}: cannot create it: {blocker} is a file, not a directory")
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write_probe_", dir=path)
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise WorkdirError(f"{flag}: not writable ({err.strerror or err})") from None
    return path


def _file_ancestor(path):
    """The nearest existing ancestor of `path` when it is a regular file (else None)."""
    parent = os.path.dirname(os.path.abspath(path))
    while parent and not os.path.exists(parent):
        up = os.path.dirname(parent)
        if up == parent:
            return None
        parent = up
    return parent if parent and not os.path.isdir(parent) else None
