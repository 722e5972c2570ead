"""CodeDatabase: packed hash codes + ids (+ labels) + provenance, saved as one .npz file."""

import dataclasses
import pathlib
import zipfile
from typing import Optional

import numpy as np

from udsph_tf.codes import check_packed, pack_codes
from udsph_tf.files import write_npz

FORMAT = "udsph-code-db"
FORMAT_VERSION = 1
_REQUIRED = ("format", "format_version", "packed", "ids", "bits", "model_version",
             "run_name", "modality")


@dataclasses.dataclass
class CodeDatabase:
    """A searchable set of binary codes and where they came from.

    packed: uint8 (n, bits // 8), np.packbits big-endian order (see udsph_tf/codes.py).
    ids: (n,) unique integer or unicode ids of the items (e.g. dataset indices, file names).
    labels: optional (n, C) array (e.g. 0/1 labels, to score retrieval).
    model_version / run_name: the SavedModel version and training run that encoded them.
    modality: which encoder produced the codes ("image", "text"; free text, may be empty).
    """

    packed: np.ndarray
    ids: np.ndarray
    bits: int
    labels: Optional[np.ndarray] = None
    model_version: str = ""
    run_name: str = ""
    modality: str = ""

    def __post_init__(self):
        self.validate()

    @classmethod
    def from_codes(cls, codes, ids=None, **fields):
        """Pack +-1 codes (n, K); ids default to 0..n-1."""
        packed = pack_codes(codes)
        if ids is None:
            ids = np.arange(packed.shape[0], dtype=np.int64)
        return cls(packed=packed, ids=ids, bits=packed.shape[1] * 8, **fields)

    def __len__(self):
        return self.packed.shape[0]

    def validate(self, source="CodeDatabase"):
        """Normalise array types and raise ValueError (naming `source`) on any inconsistency."""
        try:
            self.bits = int(self.bits)
            self.packed = check_packed(self.packed, self.bits, name=f"{source}: packed codes")
        except (TypeError, ValueError) as err:
            raise ValueError(str(err) if str(err).startswith(source)
                             else f"{source}: {err}") from None
        n = self.packed.shape[0]
        ids = np.asarray(self.ids)
        if ids.dtype.kind not in "iuU":
            raise ValueError(f"{source}: ids must be integers or strings, got dtype {ids.dtype}")
        if ids.shape != (n,):
            raise ValueError(f"{source}: ids have shape {ids.shape}, expected ({n},) to match "
                             f"{n} packed codes")
        if np.unique(ids).size != n:
            raise ValueError(f"{source}: ids are not unique")
        self.ids = ids
        if self.labels is not None:
            labels = np.asarray(self.labels)
            if labels.ndim != 2 or labels.shape[0] != n or labels.dtype == object:
                raise ValueError(f"{source}: labels must be a numeric (n={n}, C) array, got "
                                 f"shape {labels.shape} dtype {labels.dtype}")
            self.labels = labels
        for name in ("model_version", "run_name", "modality"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise ValueError(f"{source}: {name} must be a string, got {value!r}")

    def index(self, backend="auto", **options):
        """A HammingIndex over these codes whose search_ids returns this database's ids."""
        from udsph_tf.retrieval.search import HammingIndex
        return HammingIndex.build(self.packed, backend, ids=self.ids, **options)

    def save(self, path):
        """Write an .npz atomically (temp file in the same folder, then os.replace)."""
        path = pathlib.Path(path)
        if path.suffix != ".npz":
            raise ValueError(f"code database path must end in .npz, got {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"format": np.array(FORMAT), "format_version": np.array(FORMAT_VERSION),
                  "packed": self.packed, "ids": self.ids, "bits": np.array(self.bits),
                  "model_version": np.array(self.model_version),
                  "run_name": np.array(self.run_name), "modality": np.array(self.modality)}
        if self.labels is not None:
            arrays["labels"] = self.labels
        write_npz(path, arrays)
        return path

    @classmethod
    def load(cls, path):
        """Read a file written by save; FileNotFoundError / ValueError name the problem."""
        path = pathlib.Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"code database not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                contents = {key: data[key] for key in data.files}
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
            raise ValueError(f"{path}: not a readable code database .npz ({err})") from None
        missing = [key for key in _REQUIRED if key not in contents]
        if missing:
            raise ValueError(f"{path}: missing key(s) {missing} (not written by "
                             "CodeDatabase.save?)")
        if str(contents["format"]) != FORMAT:
            raise ValueError(f"{path}: format is {str(contents['format'])!r}, expected {FORMAT!r}")
        if int(contents["format_version"]) > FORMAT_VERSION:
            raise ValueError(f"{path}: format_version {int(contents['format_version'])} is "
                             f"newer than this reader ({FORMAT_VERSION})")
        fields = {"packed": contents["packed"], "ids": contents["ids"],
                  "labels": contents.get("labels")}
        try:
            fields["bits"] = int(contents["bits"])
            for name in ("model_version", "run_name", "modality"):
                fields[name] = str(contents[name])
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: bad scalar field ({err})") from None
        db = cls.__new__(cls)
        for name, value in fields.items():
            setattr(db, name, value)
        db.validate(source=str(path))
        return db
