"""The two data records everything else passes around: aligned cross-modal rows and a split."""

import dataclasses
from typing import Optional

import numpy as np

from udsph_tf.errors import DataError


def _as_index_array(values, name):
    arr = np.asarray(values if values is not None else [], dtype=np.int64).reshape(-1)
    if arr.size and arr.min() < 0:
        raise ValueError(f"Split.{name} holds a negative index ({int(arr.min())})")
    return arr


@dataclasses.dataclass
class Split:
    """Row indices into a CrossModalData; every field is an int64 array.

    query_idx is disjoint from all the others (training never sees a query item);
    train_idx and val_idx are disjoint subsets of database_idx.
    """

    query_idx: np.ndarray
    database_idx: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    seed: int
    source: str = "seeded"  # "seeded" or the split file it came from (recorded with the run)

    def __post_init__(self):
        for name in ("query_idx", "database_idx", "train_idx", "val_idx"):
            setattr(self, name, _as_index_array(getattr(self, name), name))
        self.seed = int(self.seed)

    def check(self, num_items: int, where: str = "split") -> "Split":
        """Raise DataError (a ValueError) naming `where` if the split breaks an invariant;
        return self."""
        parts = {"query_idx": self.query_idx, "database_idx": self.database_idx,
                 "train_idx": self.train_idx, "val_idx": self.val_idx}
        for name, idx in parts.items():
            if idx.size and idx.max() >= num_items:
                raise DataError(f"{where}: {name} holds index {int(idx.max())} but the dataset "
                                f"has only {num_items} rows")
            ordered = np.sort(idx)  # sort-based: numpy 2's hashing np.unique is slower here
            if (ordered[1:] == ordered[:-1]).any():
                raise DataError(f"{where}: {name} holds duplicate indices")

        def _overlap(a, b):
            return np.intersect1d(a, b, assume_unique=True).size

        if _overlap(self.query_idx, self.database_idx):
            raise DataError(f"{where}: query_idx and database_idx share "
                            f"{_overlap(self.query_idx, self.database_idx)} rows")
        for name in ("train_idx", "val_idx"):
            outside = parts[name][~np.isin(parts[name], self.database_idx)]
            if outside.size:
                raise DataError(f"{where}: {outside.size} rows of {name} are not in "
                                f"database_idx (first: {outside[:5].tolist()})")
            if _overlap(parts[name], self.query_idx):
                raise DataError(f"{where}: {name} shares rows with query_idx")
        if _overlap(self.train_idx, self.val_idx):
            raise DataError(f"{where}: train_idx and val_idx share "
                            f"{_overlap(self.train_idx, self.val_idx)} rows")
        return self

    def sizes(self) -> dict:
        return {"query": int(self.query_idx.size), "database": int(self.database_idx.size),
                "train": int(self.train_idx.size), "val": int(self.val_idx.size)}

    def to_dict(self) -> dict:
        """JSON-ready (plain ints and lists), so a run can record exactly which rows it used."""
        return {"seed": self.seed, "source": self.source,
                "query_idx": self.query_idx.tolist(),
                "database_idx": self.database_idx.tolist(),
                "train_idx": self.train_idx.tolist(),
                "val_idx": self.val_idx.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Split":
        missing = [k for k in ("query_idx", "database_idx", "train_idx", "seed") if k not in d]
        if missing:
            raise ValueError(f"Split.from_dict: missing keys {missing}; got {sorted(d)}")
        return cls(query_idx=d["query_idx"], database_idx=d["database_idx"],
                   train_idx=d["train_idx"], val_idx=d.get("val_idx", []),
                   seed=int(np.asarray(d["seed"])), source=str(d.get("source", "seeded")))


@dataclasses.dataclass
class CrossModalData:
    """One row per image/text pair; every per-row field is aligned with `labels`.

    `images` holds float32 features, (N, D) global or (N, R, d) regions, or raw pixel arrays
    (N, H, W, C) kept in their stored dtype (a 20k x 224x224x3 uint8 IAll would take 12 GB as
    float32). It is None in raw-image mode, where `image_paths` names one file per row.
    """

    name: str
    images: Optional[np.ndarray]
    tags: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    image_paths: Optional[list] = None
    tag_vocab: Optional[list] = None
    label_names: Optional[list] = None
    default_split: Optional[Split] = None

    def __post_init__(self):
        if self.images is None and self.image_paths is None:
            raise ValueError(f"{self.name}: give either image features or image_paths")
        n = len(self.labels)
        rows = {"tags": len(self.tags), "ids": len(self.ids)}
        if self.images is not None:
            rows["images"] = len(self.images)
        if self.image_paths is not None:
            rows["image_paths"] = len(self.image_paths)
        bad = {k: v for k, v in rows.items() if v != n}
        if bad:
            raise ValueError(f"{self.name}: row counts disagree with labels ({n} rows): {bad}")

    @property
    def num_items(self) -> int:
        return len(self.labels)

    @property
    def num_labels(self) -> int:
        return self.labels.shape[1]

    @property
    def tag_dim(self) -> int:
        return self.tags.shape[1]

    def __len__(self):
        return self.num_items

    def subset(self, idx) -> "CrossModalData":
        """The rows `idx` (in that order); the default split does not carry over."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        return dataclasses.replace(
            self,
            images=None if self.images is None else self.images[idx],
            tags=self.tags[idx], labels=self.labels[idx], ids=self.ids[idx],
            image_paths=None if self.image_paths is None else [self.image_paths[i] for i in idx],
            default_split=None)

    def arrays(self) -> dict:
        """The per-row arrays by name, ready for `make_dataset_fn` (image_paths as bytes)."""
        out = {"tags": self.tags, "labels": self.labels}
        if self.images is not None:
            out["images"] = self.images
        else:
            out["image_paths"] = np.char.encode(np.asarray(self.image_paths, dtype=str), "utf-8")
        return out

    def summary(self) -> str:
        image = (f"images {self.images.shape} {self.images.dtype}" if self.images is not None
                 else f"{len(self.image_paths)} image paths")
        return (f"{self.name}: {self.num_items} rows, {image}, tags {self.tags.shape}, "
                f"labels {self.labels.shape} ({self.labels.sum(1).mean():.2f} per row)")
