"""8-bit gates: a sigmoid gate's values in [0, 1] stored as one of 256 levels, 1 byte per value.

A value x is stored as level ``k = rint(clip(255·x, 0, 255))`` (255·x in float32, ties to even), whose value is
``LEVELS[k]``, the float16 nearest to k/255. The file is a dictionary-encoded float16 column whose dictionary is
:data:`LEVELS` (:mod:`lstmviz.store.parquet_f16`), so every parquet reader decodes it to those float16 values.

Error bound (docs/FORMAT.md), for x in [0, 1]:

    |x − LEVELS[k]| ≤ |x − k/255| + |k/255 − LEVELS[k]| ≤ (1/510 + 2⁻²⁴) + 2⁻¹²  =  :data:`MAX_ERROR` ≈ 0.00221

The first term: 255·x is rounded once in float32 (relative error ≤ 2⁻²⁴, and 255·x ≤ 255), then to the nearest
integer (≤ ½), and dividing by 255 scales both. The second: k/255 ≤ 1 rounds to float16, whose spacing in
[½, 1) is 2⁻¹¹, so it moves by at most 2⁻¹² (less below ½; 0 and 1 are exact).

Everything the writer derives from an 8-bit gate (stats, histograms, match index, overview) is computed from
the stored level values, so it agrees with what a reader of the file gets.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..errors import RunError
from ..names import SIGMOID_KINDS

GATES = ("float16", "8bit")
"""How a recording stores sigmoid gates: float16 like every other kind, or as 8-bit levels."""
LEVELS = (np.arange(256) / 255).astype(np.float16)
"""float16 ``[256]``: the value of each level, the float16 nearest to k/255."""
LEVEL_BITS = LEVELS.view(np.uint16)
INDEX = np.zeros(1 << 16, np.uint8)
"""uint8 ``[65536]``: a level's float16 bit pattern → its index (0 for every other pattern)."""
INDEX[LEVEL_BITS] = np.arange(256, dtype=np.uint8)
MAX_ERROR = 1 / 510 + 2.0**-24 + 2.0**-12
"""The most a stored 8-bit gate differs from the exact value in [0, 1] (the derivation is above)."""


def eight_bit(kind: str, gates: str) -> bool:
    """Whether an activation of ``kind`` is stored as 8-bit levels when recording with ``gates``."""
    if gates not in GATES:
        raise RunError(f"gates must be one of {', '.join(GATES)}, got {gates!r}", arguments=("gates=",))
    return gates == "8bit" and kind in SIGMOID_KINDS


def quantize(name: str, values: np.ndarray) -> np.ndarray:
    """uint8 level indices of float values in [0, 1] (any shape); a NaN is a :class:`RunError` naming ``name``.

    The definition (numpy); :func:`level_bits` computes the same in one compiled pass."""
    x = np.asarray(values, np.float32)
    if np.isnan(x).any():
        raise nan_error(name)
    return np.rint(np.clip(x * np.float32(255), 0, 255)).astype(np.uint8)


def level_bits(name: str, values: np.ndarray) -> np.ndarray:
    """The stored float16 values ``LEVELS[quantize(values)]`` of float32 values (any shape, C-contiguous), in one
    pass that releases the GIL (the writer's thread runs it beside the forward)."""
    x = np.ascontiguousarray(values, np.float32)
    out = np.empty(x.shape, np.float16)
    if _level_bits(x.reshape(-1), LEVEL_BITS, out.reshape(-1).view(np.uint16)):
        raise nan_error(name)
    return out


@njit(nogil=True, cache=True, error_model="numpy")
def _level_bits(x: np.ndarray, bits: np.ndarray, out: np.ndarray) -> bool:
    """out uint16 ``[n]`` ← bits[rint(clip(255·x, 0, 255))] for float32 x ``[n]``; True if some x is NaN."""
    scale, magic = np.float32(255), np.float32(1.5 * 2**23)
    nan = 0
    for i in range(x.shape[0]):
        v = x[i]
        nan += v != v
        # y + 1.5·2²³ − 1.5·2²³ is rint(y) for 0 ≤ y < 2²²: float32's rounding to an integer step, ties to even
        y = min(max(v * scale, np.float32(0)), scale)
        out[i] = bits[np.int32((y + magic) - magic) & 255]
    return nan > 0


def nan_error(name: str) -> RunError:
    """The error for NaN in an 8-bit gate (a diverged model): its levels have no NaN."""
    return RunError(
        f"{name} has NaN values, which 8-bit gates cannot store: record with gates='float16'",
        arguments=("gates='float16'",),
    )
