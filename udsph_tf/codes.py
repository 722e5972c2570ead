"""The +-1 hash code format, once: sign -> codes, byte packing (one bit layout), words.

numpy only and no other project import: evaluation, retrieval, training and export all use it.
"""

import os

import numpy as np

# Bit order, shared with the SavedModel export (which packs inside TF the same way): code
# bit j of an item is bit (7 - j % 8) of byte j // 8, i.e. the first code bit is the most
# significant bit of byte 0 (np.packbits(..., bitorder="big")), and a set bit means +1.
# The Hamming distance does not depend on the bit order as long as queries and database use
# the same one; FAISS's own helpers (faiss.pack_bitstrings, real_to_binary) put the first
# bit in the least significant position, so never mix codes packed by them with ours.


def to_codes(h):
    """Real-valued hash outputs -> int8 +-1 codes; 0 goes to +1 (sign() would give 0, which
    is no code). The same rule in-graph: udsph_tf.models.encoding.sign_codes."""
    return np.where(np.asarray(h) >= 0, 1, -1).astype(np.int8)


def _check_bits(bits):
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise ValueError(f"bits must be an integer, got {bits!r}")
    if bits <= 0 or bits % 8:
        raise ValueError(f"bits must be a positive multiple of 8, got {bits}")
    return int(bits)


def pack_codes(codes):
    """+-1 codes (n, K) of any numeric dtype -> uint8 (n, K // 8), big-endian bit order.

    Raises ValueError when codes are not 2-D, K is not a positive multiple of 8, or any
    entry is not exactly +1 or -1 (a 0 usually means sign() of an exact zero upstream).
    """
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must be 2-D (items, bits), got shape {codes.shape}")
    if codes.dtype == bool or not (np.issubdtype(codes.dtype, np.integer)
                                   or np.issubdtype(codes.dtype, np.floating)):
        raise ValueError(f"codes must be numeric +-1, got dtype {codes.dtype}")
    _check_bits(codes.shape[1])
    positive = codes == 1
    bad = ~(positive | (codes == -1))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"codes must contain only +1 and -1; found {codes[i, j]!r} at "
                         f"item {i}, bit {j} ({int(bad.sum())} bad entries; a 0 usually "
                         "comes from sign() of an exact zero)")
    return np.packbits(positive, axis=1, bitorder="big")


def unpack_codes(packed, bits):
    """uint8 (n, bits // 8) packed codes -> int8 +-1 codes (n, bits); inverse of pack_codes."""
    packed = check_packed(packed, bits, name="packed")
    unpacked = np.unpackbits(packed, axis=1, bitorder="big")
    return (unpacked.astype(np.int8) * 2 - 1).astype(np.int8)


def check_packed(packed, bits=None, name="packed codes"):
    """Validate a packed code array: 2-D uint8, and K/8 bytes per item when bits is given."""
    packed = np.asarray(packed)
    if packed.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 (from pack_codes), got dtype {packed.dtype}")
    if packed.ndim != 2:
        raise ValueError(f"{name} must be 2-D (items, bits // 8), got shape {packed.shape}")
    if bits is not None:
        bits = _check_bits(bits)
        if packed.shape[1] * 8 != bits:
            raise ValueError(f"{name} have {packed.shape[1]} bytes per item "
                             f"({packed.shape[1] * 8} bits), expected {bits} bits")
    elif packed.shape[1] == 0:
        raise ValueError(f"{name} have 0 bytes per item")
    return packed


def pack_words(bits):
    """A bool matrix (n, m), e.g. `codes > 0` or 0/1 labels, -> word-major (W, n) words: the
    bytes of np.packbits (the layout of pack_codes; m need not be a multiple of 8, padding
    bits are 0) grouped as as_words groups them."""
    return as_words(np.packbits(np.asarray(bits, dtype=bool), axis=1, bitorder="big"))


def as_words(packed):
    """Packed bytes (n, B) -> word-major (W, n) unsigned words for XOR + popcount.

    Wide words mean fewer numpy passes per distance: B <= 2 keeps uint8/uint16, B <= 4 pads
    to one uint32, longer codes pad to uint64 words. Zero padding adds nothing to a Hamming
    distance, and grouping bytes into words (either endianness) leaves popcounts unchanged.
    Word-major layout makes each word a contiguous row, which the chunked search slices.
    """
    packed = np.asarray(packed)
    n, nbytes = packed.shape
    if nbytes <= 2:
        width, dtype = nbytes, (np.uint8 if nbytes == 1 else np.uint16)
    elif nbytes <= 4:
        width, dtype = 4, np.uint32
    else:
        width, dtype = -(-nbytes // 8) * 8, np.uint64
    if width != nbytes:
        padded = np.zeros((n, width), np.uint8)
        padded[:, :nbytes] = packed
        packed = padded
    words = np.ascontiguousarray(packed).view(dtype)  # (n, W)
    return np.ascontiguousarray(words.T)


def default_num_threads():
    """Worker threads of the numpy Hamming work (ranking for MAP, search): the CPUs this
    process may use (the numpy calls release the GIL)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
