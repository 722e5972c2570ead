"""Checks on loaded arrays; every error names the file, the key and what is wrong."""

import os
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from udsph_tf.errors import DataError, MissingFileError

# Dimensions of the standard releases: a mismatch almost always means the wrong file or key.
KNOWN_TAG_DIMS = {"mirflickr": 1386, "mirflickr730": 1386, "nuswide": 1000}
KNOWN_LABEL_DIMS = {"mirflickr": 24, "mirflickr730": 24, "nuswide": 21, "coco": 80}


def where(path, key=None) -> str:
    """How errors name an array: the file and, when the format has keys, the key."""
    keyed = key and not str(path).lower().endswith(".npy")  # a .npy holds one unnamed array
    return f"{path} (key {key!r})" if keyed else str(path)


def require_file(path, what: str, hint: str = "") -> str:
    if not path or not os.path.isfile(path):
        msg = f"{what}: file not found: {path!r}"
        raise MissingFileError(msg + (f". {hint}" if hint else ""))
    return path


def missing_key(path, key, available: Sequence[str]) -> DataError:
    return DataError(f"{path}: no key {key!r}; the file holds {sorted(available)} "
                     "(choose one with --image_key/--tag_key/--label_key)")


def check_numeric(arr: np.ndarray, src: str) -> np.ndarray:
    if arr.dtype == np.bool_:
        return arr
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise DataError(f"{src}: expected a numeric array, got dtype {arr.dtype}")
    return arr


def check_ndim(arr: np.ndarray, src: str, allowed: Sequence[int]) -> np.ndarray:
    if arr.ndim not in allowed:
        dims = ", ".join(map(str, allowed[:-1])) + (" or " if len(allowed) > 1 else "")
        raise DataError(f"{src}: expected an array with {dims}{allowed[-1]} dimensions, "
                        f"got shape {arr.shape}")
    return arr


def check_finite(arr: np.ndarray, src: str) -> np.ndarray:
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr)
        if bad.any():
            rows = np.unique(np.nonzero(bad.reshape(len(arr), -1))[0])
            raise DataError(f"{src}: {int(bad.sum())} NaN/inf values in {rows.size} rows "
                            f"(first rows: {rows[:5].tolist()})")
    return arr


def class_indices_to_one_hot(labels: np.ndarray, num_rows: int):
    """(one-hot labels, class values) when `labels` is one class index per item, else
    (labels, None).

    Single-label sets (Wikipedia, Pascal Sentences) often ship a class index per item: 1-D,
    (n, 1) or MATLAB's (1, n), n = num_rows, non-negative integers with at least two distinct
    values. Each distinct value becomes a column, in increasing order (0- and 1-based indices
    alike). Anything else is returned as it is, for the checks to judge.
    """
    arr = np.asarray(labels)
    if arr.ndim == 2 and 1 in arr.shape and arr.size == num_rows:
        flat = arr.reshape(-1)
    elif arr.ndim == 1:
        flat = arr
    else:
        return labels, None
    if not (np.issubdtype(flat.dtype, np.integer) or np.issubdtype(flat.dtype, np.floating)):
        return labels, None
    if not np.isfinite(flat).all() or (flat < 0).any() or (flat != np.round(flat)).any():
        return labels, None
    values = np.unique(flat)
    if len(values) < 2:
        return labels, None
    return (flat[:, None] == values[None, :]).astype(np.float32), values


def check_binary(arr: np.ndarray, src: str) -> np.ndarray:
    if arr.dtype == np.bool_:
        return arr
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        values = np.unique(arr[bad])[:5].tolist()
        raise DataError(f"{src}: labels must be 0/1, found {int(bad.sum())} other values "
                        f"(e.g. {values})")
    return arr


def check_nonnegative(arr: np.ndarray, src: str) -> np.ndarray:
    if np.issubdtype(arr.dtype, np.signedinteger) or np.issubdtype(arr.dtype, np.floating):
        if (arr < 0).any():
            raise DataError(f"{src}: tag bag-of-words must be >= 0, found "
                            f"{int((arr < 0).sum())} negative entries")
    return arr


def check_no_empty_rows(labels: np.ndarray, src: str) -> np.ndarray:
    empty = np.nonzero(labels.sum(axis=1) == 0)[0]
    if empty.size:
        raise DataError(f"{src}: {empty.size} of {len(labels)} items have no label "
                        f"(first rows: {empty[:10].tolist()}); the cleaned releases drop such "
                        "items, so filter them before training")
    return labels


def check_row_counts(rows: Dict[str, Tuple[str, int]]) -> None:
    """rows maps a modality to (source, row count); all counts must agree."""
    counts = {n for _, n in rows.values()}
    if len(counts) > 1:
        listing = "; ".join(f"{m}: {n} rows in {src}" for m, (src, n) in rows.items())
        raise DataError(f"row counts disagree between modalities: {listing}. A .h5 written "
                        "by MATLAB stores arrays transposed; save it as a .mat v7.3 (which "
                        "is transposed back here) or transpose it")


def check_known_dims(dataset: str, tags: np.ndarray, tag_src: str,
                     labels: np.ndarray, label_src: str) -> None:
    want_t = KNOWN_TAG_DIMS.get(dataset)
    if want_t is not None and tags.shape[1] != want_t:
        raise DataError(f"{tag_src}: {dataset} tags should be {want_t}-d, got {tags.shape[1]} "
                        "columns (wrong file or key? use --dataset=custom for other vocabularies)")
    want_l = KNOWN_LABEL_DIMS.get(dataset)
    if want_l is not None and labels.shape[1] != want_l:
        raise DataError(f"{label_src}: {dataset} has {want_l} labels, got {labels.shape[1]} "
                        "columns (wrong file or key? use --dataset=custom for other label sets)")


def validate_arrays(dataset: str, *, labels: np.ndarray, label_src: str,
                    tags: np.ndarray, tag_src: str,
                    images: Optional[np.ndarray] = None, image_src: str = "",
                    num_paths: Optional[int] = None, path_src: str = "") -> None:
    """Every check of a freshly read dataset, cheapest first."""
    check_numeric(labels, label_src)
    check_ndim(labels, label_src, (2,))
    check_numeric(tags, tag_src)
    check_ndim(tags, tag_src, (2,))
    rows = {"labels": (label_src, len(labels)), "tags": (tag_src, len(tags))}
    if images is not None:
        check_numeric(images, image_src)
        check_ndim(images, image_src, (2, 3, 4))
        rows["images"] = (image_src, len(images))
    if num_paths is not None:
        rows["image paths"] = (path_src, num_paths)
    check_row_counts(rows)
    check_known_dims(dataset, tags, tag_src, labels, label_src)
    check_binary(labels, label_src)
    check_no_empty_rows(labels, label_src)
    check_finite(tags, tag_src)
    # Negative text values are legal (z-scored topics, sentence embeddings): the bag-of-words
    # front-end checks non-negativity itself when --text_encoder resolves to bow.
    if images is not None:
        check_finite(images, image_src)


def degenerate_inputs(name: str, images: Optional[np.ndarray], tags: np.ndarray) -> list:
    """Warnings about training rows that carry little or no signal; DataError when the image
    side is all zeros (the run would train one constant image code and still print a MAP).

    images may be None (raw photos, checked by the image pipeline) or rank > 2 (regions:
    checked per column of the flattened rows).
    """
    warnings = []
    for side, arr in (("image features", images), ("text", tags)):
        if arr is None or arr.ndim > 4 or (arr.ndim == 4 and side == "image features"):
            continue
        x = np.asarray(arr).reshape(len(arr), -1)
        if not x.size:
            continue
        if not np.any(x):
            if side == "image features":
                raise DataError(f"{name}: the image features of the training rows are all "
                                "zero; nothing can be learned from them (wrong file or key?)")
            warnings.append(f"{name}: the {side} of the training rows is all zero")
            continue
        constant = int(np.count_nonzero(np.ptp(x, axis=0) == 0))
        if constant == x.shape[1]:
            warnings.append(f"{name}: every column of the {side} is constant over the "
                            "training rows: this modality carries no signal")
        elif constant > x.shape[1] // 2 and side == "image features":
            # (A bag of words over a large vocabulary leaves many words unused: normal.)
            warnings.append(f"{name}: {constant} of {x.shape[1]} {side} columns are constant "
                            "over the training rows")
        zero_rows = int(np.count_nonzero(~np.any(x, axis=1)))
        if zero_rows:
            warnings.append(f"{name}: {zero_rows} of {len(x)} training rows have all-zero "
                            f"{side}")
    return warnings
