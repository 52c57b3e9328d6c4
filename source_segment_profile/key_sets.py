"""Sets of 64-bit profile keys, as sorted numpy arrays in memory and as compact text in the state.

The user_events state must say, exactly, which profiles were ever read: at a million profiles
that record is nearly all of the state, and every checkpoint carries it. A set of n random 64-bit
keys holds about 64 - log2(n) + 1.44 bits a key; the Elias-Fano code used here comes within
about one bit of that (~49 bits a key at 100,000 keys, ~46 at a million), and base85 makes it
JSON text at 5 characters per 4 bytes, with no character JSON escapes.

Text format of n keys (sorted, distinct, unsigned 64-bit):
  L = max(0, 64 - n.bit_length()) low bits of every key, in order, packed most significant bit
  first; then the high parts (key >> L) as a bit vector with bit (high_i + i) set for the i-th
  key; the two concatenated (the first part is ceil(n * L / 8) bytes), zero-padded to whole
  bytes, and encoded with base85 (RFC 1924's alphabet: Python's base64.b85encode). The count n
  is stored beside the text.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np

KEY_BITS = 64
# Keys are packed and unpacked this many at a time (a multiple of 8: each chunk then fills whole
# bytes), so that the bit-per-byte arrays numpy works on stay a few MiB at a million keys.
CHUNK_KEYS = 1 << 16


class KeySetError(ValueError):
    """The text is not an encoded key set of the stated count."""


def sorted_keys(keys) -> np.ndarray:
    """Distinct keys, sorted, as uint64 (from any iterable or array of unsigned 64-bit integers)."""
    return np.unique(np.asarray(keys, dtype=np.uint64))


def contains(sorted_set: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """For each of `keys`, whether it is in `sorted_set` (sorted, distinct): a boolean array."""
    if len(sorted_set) == 0 or len(keys) == 0:
        return np.zeros(len(keys), dtype=bool)
    positions = np.minimum(np.searchsorted(sorted_set, keys), len(sorted_set) - 1)
    return sorted_set[positions] == keys


def encode(keys: np.ndarray) -> str:
    """The text of a sorted array of distinct uint64 keys (see the module's docstring)."""
    count = len(keys)
    if count == 0:
        return ""
    low_bits = _low_bits(count)
    lows = _pack_lows(keys, low_bits)
    highs = (keys >> np.uint64(low_bits)).astype(np.int64)
    upper = np.zeros(count + int(highs[-1]), dtype=np.uint8)
    upper[highs + np.arange(count)] = 1
    return base64.b85encode(lows + np.packbits(upper).tobytes()).decode("ascii")


def decode(text: str, count: int) -> np.ndarray:
    """The sorted uint64 keys of `text`; raises KeySetError if it does not hold `count` keys."""
    if count == 0:
        if text:
            raise KeySetError("keys given for a count of 0")
        return np.zeros(0, dtype=np.uint64)
    try:
        blob = base64.b85decode(text)
    except (ValueError, binascii.Error, TypeError):
        raise KeySetError("not base85 text") from None
    low_bits = _low_bits(count)
    lows_size = (count * low_bits + 7) // 8
    if len(blob) <= lows_size:
        raise KeySetError("too short for its count")
    ones = np.flatnonzero(np.unpackbits(np.frombuffer(blob, dtype=np.uint8, offset=lows_size)))
    if len(ones) != count:
        raise KeySetError(f"{len(ones)} keys, not {count}")
    highs = (ones - np.arange(count)).astype(np.uint64)
    keys = (highs << np.uint64(low_bits)) | _unpack_lows(blob[:lows_size], count, low_bits)
    if count > 1 and not np.all(keys[1:] > keys[:-1]):
        raise KeySetError("keys not strictly increasing")
    return keys


def _low_bits(count: int) -> int:
    # The Elias-Fano split: each key's high part is then below 2**bit_length(count), so the upper
    # bit vector is under 3 bits a key (about 2.3 on average). Between 0 and 63 for any count >= 1.
    return max(0, KEY_BITS - count.bit_length())


def _pack_lows(keys: np.ndarray, low_bits: int) -> bytes:
    if low_bits == 0:
        return b""
    chunks = []
    for start in range(0, len(keys), CHUNK_KEYS):
        chunk = keys[start : start + CHUNK_KEYS].astype(">u8")
        bits = np.unpackbits(chunk.view(np.uint8).reshape(-1, 8), axis=1)[:, KEY_BITS - low_bits :]
        chunks.append(np.packbits(bits.ravel()).tobytes())
    # Every chunk but the last holds a multiple of 8 keys, so its bits end on a byte boundary.
    return b"".join(chunks)


def _unpack_lows(packed: bytes, count: int, low_bits: int) -> np.ndarray:
    if low_bits == 0:
        return np.zeros(count, dtype=np.uint64)
    lows = np.empty(count, dtype=np.uint64)
    chunk_bytes = CHUNK_KEYS * low_bits // 8
    for chunk_index, start in enumerate(range(0, count, CHUNK_KEYS)):
        size = min(CHUNK_KEYS, count - start)
        raw = np.frombuffer(packed, dtype=np.uint8, count=(size * low_bits + 7) // 8, offset=chunk_index * chunk_bytes)
        bits = np.unpackbits(raw)[: size * low_bits].reshape(size, low_bits)
        padded = np.zeros((size, KEY_BITS), dtype=np.uint8)
        padded[:, KEY_BITS - low_bits :] = bits
        lows[start : start + size] = np.packbits(padded, axis=1).view(">u8").ravel()
    return lows
