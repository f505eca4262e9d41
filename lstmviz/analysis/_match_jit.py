"""Compiled loops (numba) for the match index: building its bits from float16 rows, and answering a query.

The index is time-major: ``bits`` uint8 ``[T, ⌈U/8⌉]``, unit u of step t is bit ``u & 7`` (least significant
first) of byte ``u >> 3`` of row t. Values arrive as the bit patterns of float16 (uint16 views), compared as
*keys*: the pattern mapped so that integer order is float order (−0 folded onto +0, NaN flagged apart).
:mod:`lstmviz.analysis.match_index` holds the numpy equivalents used when numba cannot run here.

Importing this module compiles nothing; the first call compiles (seconds) and caches the machine code on disk.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Same reasoning as lstmviz.fused: no ZeroDivisionError branches; nogil so dashboard sessions run side by side.
_JIT = {"error_model": "numpy", "cache": True, "nogil": True}
NO_KEY = 1 << 16  # a threshold key above every value: nothing is on (θ is NaN)
POP8 = np.array([bin(i).count("1") for i in range(256)], np.int64)


@njit(inline="always", **_JIT)
def _key(b: int) -> int:
    """Monotone key of a float16 bit pattern (−0 folded onto +0), −1 for NaN. Branch-free: a positive pattern
    gets its sign bit set, a negative one all its bits flipped."""
    b = np.int32(b)
    b = b * (b != 0x8000)
    key = b ^ (0x8000 | ((b >> 15) * 0x7FFF))
    return key if (b & 0x7FFF) <= 0x7C00 else -1


@njit(**_JIT)
def pack_on(h: np.ndarray, kth: np.ndarray, out: np.ndarray) -> None:
    """out uint8 ``[n, ⌈U/8⌉]`` ← bits of ``key(h) >= kth``; h uint16 ``[n, U]``, kth int64 ``[U]``."""
    n, U = h.shape
    for t in range(n):
        for j in range(out.shape[1]):
            byte = 0
            for i in range(min(8, U - 8 * j)):
                u = 8 * j + i
                k = _key(h[t, u])
                if k >= 0 and k >= kth[u]:
                    byte |= 1 << i
            out[t, j] = byte


@njit(**_JIT)
def coarse_hist(h: np.ndarray, hist: np.ndarray) -> None:
    """hist int32 ``[U, 257]`` += counts of each key's high byte, NaNs in column 256. h uint16 ``[n, U]``."""
    n, U = h.shape
    for t in range(n):
        for u in range(U):
            k = _key(h[t, u])
            hist[u, (k >> 8) if k >= 0 else 256] += 1


@njit(**_JIT)
def fine_hist(h: np.ndarray, bins: np.ndarray, fine: np.ndarray) -> None:
    """fine int32 ``[U, 2, 257]`` += low-byte counts of the keys whose high byte is ``bins[u, 0]`` (side 0) or
    ``bins[u, 1]`` (side 1); every other value lands in column 256. h uint16 ``[n, U]``, bins ``[U, 2]``.

    Branch-free: the share of values in a unit's bin is anything from none to all, so a branch on it
    mispredicts; two increments per value, one of them into column 256, do not."""
    n, U = h.shape
    b0 = bins[:, 0].astype(np.int32)
    b1 = bins[:, 1].astype(np.int32)
    for t in range(n):
        for u in range(U):
            k = _key(h[t, u])
            hi = k >> 8  # −1 for NaN: no bin
            lo = k & 255
            fine[u, 0, lo if hi == b0[u] else 256] += 1
            fine[u, 1, lo if hi == b1[u] else 256] += 1


@njit(**_JIT)
def count_on(cols: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """int32 ``[T]``: how many of the units ``sel`` are on at each step; cols uint8 ``[⌈U/8⌉, T]`` (bits.T)."""
    T = cols.shape[1]
    out = np.zeros(T, np.int32)
    for s in sel:
        row, shift = cols[s >> 3], s & 7
        for t in range(T):
            out[t] += (row[t] >> shift) & 1
    return out


@njit(inline="always", **_JIT)
def _pop64(x: np.uint64) -> np.uint64:
    """Set bits of a 64-bit word (SWAR: the sums of bit pairs, nibbles and bytes, then one multiply)."""
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@njit(**_JIT)
def count_words(words: np.ndarray, which: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """int32 ``[T]``: set bits of ``words[t, which[i]] & masks[i]`` summed over i; words uint64 ``[T, W]`` (the
    time-major bits read eight bytes at a time), masks uint64 ``[len(which)]``. One pass over the rows, which
    beats a pass per unit over ``cols`` once more than a few units are selected."""
    T = words.shape[0]
    out = np.empty(T, np.int32)
    for t in range(T):
        c = np.uint64(0)
        for i in range(len(which)):
            c += _pop64(words[t, which[i]] & masks[i])
        out[t] = np.int32(c)
    return out


@njit(**_JIT)
def level_spans(count: np.ndarray, lowest: int, highest: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every maximal run of ``count >= m`` for every level m in ``[lowest, highest]`` from one scan, each listed
    once, at the level where it first appears (its minimum count): (starts, stops, levels), int64 ``[n]`` twice
    and int16 ``[n]``, ordered by stop, so each level's runs are in corpus order.

    A stack of (start, height), heights strictly increasing, as in the largest-rectangle-in-a-histogram scan:
    a height popped at t closes the run [start, t) of the steps at or above it, the maximal run at every level
    from above its higher neighbour up to its minimum, the popped height. Counts below ``lowest`` read as 0, so
    the stack works only where the count is that high, and the runs of the levels at or above ``lowest`` are
    unchanged."""
    n = _spans(count, lowest, highest, np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int16), False)
    a, b, level = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int16)
    _spans(count, lowest, highest, a, b, level, True)  # again, into arrays of the size the first scan found
    return a, b, level


@njit(**_JIT)
def _spans(
    count: np.ndarray, lowest: int, highest: int, a: np.ndarray, b: np.ndarray, level: np.ndarray, fill: bool
) -> int:
    """The scan of :func:`level_spans`: how many runs it lists, written into a, b, level when ``fill``."""
    stack_s = np.empty(highest + 2, np.int64)
    stack_h = np.empty(highest + 2, np.int64)
    n, sp, T = 0, 0, len(count)
    for t in range(T + 1):
        c = np.int64(count[t]) if t < T else np.int64(0)
        if c < lowest:
            c = 0
        elif c > highest:  # the levels above the band are one level: their runs are popped, not listed
            c = highest + 1
        s = t
        while sp > 0 and stack_h[sp - 1] > c:
            sp -= 1
            s = stack_s[sp]
            if stack_h[sp] <= highest:
                if fill:
                    a[n], b[n], level[n] = s, t, stack_h[sp]
                n += 1
        if c > 0 and (sp == 0 or stack_h[sp - 1] < c):
            stack_s[sp], stack_h[sp] = s, c
            sp += 1
    return n


@njit(**_JIT)
def on_sets(
    bits: np.ndarray, a: np.ndarray, b: np.ndarray, pad_before: int, pad_after: int, sel_mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each span [a, b): the units on at all its steps and off in its padding; returns int64 ``[G]`` counts
    (selected units among them, all units among them). sel_mask uint8 ``[⌈U/8⌉]`` marks the selected units."""
    T, nb = bits.shape
    G = len(a)
    n_sel = np.zeros(G, np.int64)
    n_all = np.zeros(G, np.int64)
    acc = np.empty(nb, np.uint8)
    for g in range(G):
        acc[:] = 0xFF
        alive = 1
        for t in range(a[g], b[g]):
            alive = 0
            for k in range(nb):
                acc[k] &= bits[t, k]
                alive |= acc[k]
            if not alive:  # no unit is on at every step so far: the rest cannot bring one back
                break
        if not alive:
            continue
        for t in range(max(a[g] - pad_before, 0), a[g]):
            for k in range(nb):
                acc[k] &= ~bits[t, k]
        for t in range(b[g], min(b[g] + pad_after, T)):
            for k in range(nb):
                acc[k] &= ~bits[t, k]
        s, c = 0, 0
        for k in range(nb):
            c += POP8[acc[k]]
            s += POP8[acc[k] & sel_mask[k]]
        n_sel[g], n_all[g] = s, c
    return n_sel, n_all
