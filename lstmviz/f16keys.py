"""Float16 values as integer keys: the order keys that compare as the values do, and the unit cards' keys.

numba has no float16 on the CPU, and comparisons of floats with NaN in play do not vectorise, so the compiled passes
over stored values (:mod:`lstmviz.store._stats_jit`, :mod:`lstmviz.unit_sweep`, the cards) compare the bit patterns
as integers: :func:`key` orders them as the values (both zeros alike, NaN's magnitudes above inf's), and a card key
(:func:`card_keys`) packs a value's key with its position so that the order has no ties.
"""

from __future__ import annotations

import numpy as np

LUT = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)  # float16 bits → value
NO_KEY = 0x7FFF  # the min key of a unit with no finite value (its max key is −NO_KEY)
POS_BITS = 47  # a card key: (order key + 2¹⁵) << POS_BITS | (POS_MAX − position)
POS_MAX = (1 << POS_BITS) - 1


def key(bits: np.ndarray) -> np.ndarray:
    """Order keys int64 of float16 bit patterns: ``−magnitude`` for negative, ``magnitude`` for positive values,
    so keys order as the values do (both zeros are 0). NaN's magnitudes are above inf's, 0x7C00."""
    bits = np.asarray(bits, np.int64)
    return np.where(bits & 0x8000, -(bits & 0x7FFF), bits & 0x7FFF)


def key_bits(k: np.ndarray) -> np.ndarray:
    """The float16 bit patterns ``uint16`` of order keys (the inverse of :func:`key`)."""
    k = np.asarray(k, np.int64)
    return np.where(k < 0, 0x8000 | -k, k).astype(np.uint16)


def threshold_keys(low: float, high: float) -> tuple[int, int]:
    """Keys such that for a non-NaN float16 x: ``x < low`` ⇔ key ≤ low_key and ``x > high`` ⇔ key ≥ high_key.

    The comparisons are float32 ones, as ``x < low`` on the stored values reads.
    """
    ok = ~np.isnan(LUT)
    keys = key(np.arange(1 << 16))
    return int(keys[ok & (np.float32(low) > LUT)].max()), int(keys[ok & (np.float32(high) < LUT)].min())


def card_keys(k: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """int64 card keys of order keys ``k`` (:func:`key`, of the value times the sign) at corpus positions ``pos``:
    larger is better, value first, then the earlier position; all distinct for distinct positions, all > 0."""
    return ((np.asarray(k, np.int64) + 0x8000) << POS_BITS) | (POS_MAX - np.asarray(pos, np.int64))


def card_order_keys(ck: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The order keys and positions int64 of card keys (the inverse of :func:`card_keys`)."""
    ck = np.asarray(ck, np.int64)
    return (ck >> POS_BITS) - 0x8000, POS_MAX - (ck & POS_MAX)
