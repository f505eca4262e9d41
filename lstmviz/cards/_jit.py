"""Compiled per-unit steps of the cards' finish (numba): the best m card keys of each unit's candidate buffer, and
the greedy de-duplicated picks among them (:func:`lstmviz.cards.build.greedy` is the definition)."""

from __future__ import annotations

import numpy as np
from numba import njit

from ..f16keys import POS_MAX


@njit(cache=True, nogil=True)
def best_keys(keys: np.ndarray, length: np.ndarray, floor: np.ndarray, m: int, out: np.ndarray) -> None:
    """out int64 ``[U, m]`` ← per unit the m largest of those of ``keys[u, :length[u]]`` (int64 card keys) above
    ``floor[u]``, descending, 0 padded."""
    kept = np.empty(keys.shape[1], np.int64)
    for u in range(keys.shape[0]):
        n = 0
        for i in range(length[u]):
            if keys[u, i] > floor[u]:
                kept[n] = keys[u, i]
                n += 1
        row = np.sort(kept[:n])[::-1]
        n = min(m, n)
        out[u, :n] = row[:n]
        out[u, n:] = 0


@njit(cache=True, nogil=True)
def greedy(keys: np.ndarray, k: int, window: int, picked: np.ndarray, best: np.ndarray) -> None:
    """keys int64 ``[U, M]`` each row descending (0 = empty) → picked int64 ``[U, k]`` the positions (−1 pads)
    and best int64 ``[U, k]`` their card keys (0 pads): take the best remaining key, drop every position within
    ±window of it, repeat."""
    for u in range(keys.shape[0]):
        count = 0
        for r in range(keys.shape[1]):
            ck = keys[u, r]
            if ck <= 0 or count == k:
                break
            p = POS_MAX - (ck & POS_MAX)
            clash = False
            for j in range(count):
                if abs(picked[u, j] - p) <= window:
                    clash = True
                    break
            if not clash:
                picked[u, count] = p
                best[u, count] = ck
                count += 1
        picked[u, count:] = -1
        best[u, count:] = 0


@njit(cache=True, nogil=True)
def nan_counts(sample: np.ndarray, rank: np.ndarray, out: np.ndarray) -> None:
    """out int64 ``[U]`` ← how many of each unit's float16 bit patterns sample uint16 ``[U, S]`` have rank key 0
    (NaN) in rank uint16 ``[2¹⁶]``, as :func:`bands` counts them."""
    for u in range(sample.shape[0]):
        n = 0
        for i in range(sample.shape[1]):
            n += rank[sample[u, i]] == 0
        out[u] = n


@njit(cache=True, nogil=True)
def bands(
    sample: np.ndarray, rank: np.ndarray, lut: np.ndarray, sample_pos: np.ndarray, draws: np.ndarray,
    which: np.ndarray, lo: np.ndarray, hi: np.ndarray, pos: np.ndarray,
) -> None:  # fmt: skip
    """Each unit's quantile bands (:func:`lstmviz.cards.build.bands` is the definition). sample uint16 ``[U, S]``
    float16 bit patterns, rank uint16 ``[2¹⁶]`` their rank keys (0 for NaN), lut float32 ``[2¹⁶]`` their
    values, sample_pos int64 ``[S]``; draws int64 ``[D, B, E]`` the example ranks within each band (−1 pads)
    of the unit's count of NaN, whose row is ``which[S − m]`` for m non-NaN samples. Out: lo, hi float32
    ``[U, B]``, pos int64 ``[U, B, E]`` (left as they are past a band's examples, and where a band is empty).

    The unit's samples are put in value order by a stable two-pass radix sort of their rank keys (ties in
    sample order), NaN first; the m others are cut into B runs whose sizes differ by at most one, the larger
    first (``np.array_split``)."""
    U, S = sample.shape
    B, E = draws.shape[1], draws.shape[2]
    keys = np.empty(S, np.uint16)
    tmp = np.empty(S, np.int64)
    order = np.empty(S, np.int64)
    count = np.empty(257, np.int64)
    for u in range(U):
        n_nan = 0
        for i in range(S):
            keys[i] = rank[sample[u, i]]
            n_nan += keys[i] == 0
        count[:] = 0
        for i in range(S):
            count[(keys[i] & 0xFF) + 1] += 1
        for j in range(256):
            count[j + 1] += count[j]
        for i in range(S):
            d = keys[i] & 0xFF
            tmp[count[d]] = i
            count[d] += 1
        count[:] = 0
        for i in range(S):
            count[(keys[i] >> 8) + 1] += 1
        for j in range(256):
            count[j + 1] += count[j]
        for i in range(S):
            j = tmp[i]
            d = keys[j] >> 8
            order[count[d]] = j
            count[d] += 1
        m = S - n_nan
        row = which[n_nan]
        at = n_nan
        for b in range(B):
            size = m // B + (1 if b < m % B else 0)
            if size == 0:
                continue
            lo[u, b] = lut[sample[u, order[at]]]
            hi[u, b] = lut[sample[u, order[at + size - 1]]]
            e = 0
            for r in range(E):  # into corpus order as they come: an insertion sort of at most E
                if draws[row, b, r] >= 0:
                    p = sample_pos[order[at + draws[row, b, r]]]
                    j = e
                    while j > 0 and pos[u, b, j - 1] > p:
                        pos[u, b, j] = pos[u, b, j - 1]
                        j -= 1
                    pos[u, b, j] = p
                    e += 1
            at += size
