"""The writer's per-chunk stats pass, new against the one it replaced, side by side in one process.

    python bench/chunk_pass.py                  # 64 streams × 128 steps × 512 units, 15 interleaved rounds
    python bench/chunk_pass.py --rounds 5 --units 300

``new`` is :meth:`lstmviz.store.stats.Stats.update` without cards (:func:`lstmviz.store._stats_jit.stats_pass`:
the unit-major tiles, the stats, the histogram) and ``new_overview`` the same with an
:class:`~lstmviz.analysis.overview.OverviewBuilder`'s bin sums fed in the pass (a 50k-token run's bins).
``old`` is the pass it replaced, kept below as ``OLD_*`` (a copy of ``lstmviz.f16keys.chunk_pass`` without
its cards), and ``old_overview`` that plus the overview's own kernel over the same rows, as the writer ran them
(``OverviewBuilder.update`` per stream). Each prints as ns per value (median of the rounds, the rounds
interleaved), for a sigmoid-like activation (a gate: [0, 1]) and a tanh-like one; ratios (old ÷ new) first.
``same_results`` is 1 when both ways agree: the tiles, the stats (sums of squares to float64 rounding) and the
overview's bin sums, bit for bit.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit

from lstmviz import f16keys as cs
from lstmviz.analysis.overview import OverviewBuilder
from lstmviz.store.format import Activation
from lstmviz.store.stats import HIGH, HIST_BINS, LOW, Stats

_DENORMAL, _ZERO = np.float32(2.0**-24), np.float32(0)
_FAST = {"fastmath": {"nsz", "arcp", "contract", "reassoc"}, "error_model": "numpy", "nogil": True, "cache": True}
_STRICT = {"error_model": "numpy", "nogil": True, "cache": True}


@njit(**_STRICT)
def OLD_transpose(bits, b, c, tile):
    U = bits.shape[2]
    for u0 in range(0, U, 16):
        u1 = min(u0 + 16, U)
        for t in range(c):
            for u in range(u0, u1):
                tile[u * c + t] = bits[b, t, u]


@njit(**_FAST)
def OLD_moments(row, xi, xf, keys, low_key, high_key, acc, cnt, u):
    c = row.shape[0]
    for t in range(c):
        h = np.int32(row[t])
        mag = h & 0x7FFF
        sign = (h & 0x8000) << 16
        xi[t] = (sign | ((mag << 13) + (112 << 23))) if h & 0x7C00 else sign
        keys[t] = -mag if h & 0x8000 else mag
    s = 0.0
    s2 = 0.0
    for t in range(c):
        h = np.int32(row[t])
        e = h & 0x7C00
        small = np.float32(h & 0x3FF) * _DENORMAL
        x = xf[t] + (-small if h & 0x8000 else small) if e == 0 else xf[t]
        x = x if e != 0x7C00 else _ZERO
        xf[t] = x
        d = np.float64(x)
        s += d
        s2 += d * d
    k_min, k_max, n_low, n_high, n_nan, n_inf = cs.NO_KEY, -cs.NO_KEY, 0, 0, 0, 0
    for t in range(c):
        k = keys[t]
        a = k if k >= 0 else -k
        finite = a < 0x7C00
        nan = a > 0x7C00
        k_min = min(k_min, k if finite else cs.NO_KEY)
        k_max = max(k_max, k if finite else -cs.NO_KEY)
        n_low += (k <= low_key) & (not nan)
        n_high += (k >= high_key) & (not nan)
        n_nan += nan
        n_inf += a == 0x7C00
    acc[0, u] += s
    acc[1, u] += s2
    cnt[0, u] += n_low
    cnt[1, u] += n_high
    cnt[2, u] += n_nan
    cnt[3, u] += n_inf
    cnt[4, u] = min(cnt[4, u], k_min)
    cnt[5, u] = max(cnt[5, u], k_max)


@njit(**_STRICT)
def OLD_histogram(xf, keys, c, lo, scale, hist, bins):
    top = np.float32(hist.shape[1] - 2)
    lo32, scale32 = np.float32(lo), np.float32(scale)
    for t in range(c):
        v = min(max((xf[t] - lo32) * scale32, _ZERO), top)
        a = keys[t] if keys[t] >= 0 else -keys[t]
        bins[t] = np.int32(v) if a < 0x7C00 else hist.shape[1] - 1
    t = 0
    while t + 4 <= c:
        hist[0, bins[t]] += 1
        hist[1, bins[t + 1]] += 1
        hist[2, bins[t + 2]] += 1
        hist[3, bins[t + 3]] += 1
        t += 4
    while t < c:
        hist[0, bins[t]] += 1
        t += 1


@njit(**_STRICT)
def OLD_chunk_pass(bits, counts, low_key, high_key, lo, scale, tiles, acc, cnt, hist):
    T, U = bits.shape[1], bits.shape[2]
    xi = np.empty(T, np.int32)
    xf = xi.view(np.float32)
    keys = np.empty(T, np.int32)
    bins = np.empty(T, np.int32)
    for b in range(bits.shape[0]):
        c = counts[b]
        if c <= 0:
            continue
        tile = tiles[b]
        OLD_transpose(bits, b, c, tile)
        for u in range(U):
            row = tile[u * c : (u + 1) * c]
            OLD_moments(row, xi, xf, keys, low_key, high_key, acc, cnt, u)
            OLD_histogram(xf, keys, c, lo, scale, hist[u], bins)


def measure(kind: str, B: int, T: int, U: int, tokens: int, rounds: int) -> dict[str, float]:
    """ns per value of each way, median of interleaved rounds, for one activation kind."""
    rng = np.random.default_rng(0)
    counts = np.full(B, T, np.int64)
    keys = cs.threshold_keys(LOW, HIGH)
    act = Activation.from_name(f"rnn.l0.fwd.{kind}", U)
    x = rng.normal(0, 1.5, (B, T, U))
    x = 1 / (1 + np.exp(-x)) if kind == "f" else np.tanh(x)
    bits = x.astype(np.float16).view(np.uint16)
    stride = max(tokens // B, T)
    starts = np.arange(B) * stride
    tiles, old_tiles = np.zeros((B, U * T), np.uint16), np.zeros((B, U * T), np.uint16)
    new, new_ov = Stats(act), Stats(act)
    builder = OverviewBuilder(act.name, U, stride * B, max_bins=1500)
    old_builder = OverviewBuilder(act.name, U, stride * B, max_bins=1500)
    lo, hi = (0.0, 1.0) if kind == "f" else (-1.0, 1.0)
    olds = [(np.zeros((2, U)), np.zeros((6, U), np.int64), np.zeros((U, 4, HIST_BINS + 1), np.int64)) for _ in "ab"]
    for _, cnt, _ in olds:
        cnt[4], cnt[5] = cs.NO_KEY, -cs.NO_KEY

    def old(i: int = 0) -> None:
        OLD_chunk_pass(bits, counts, *keys, lo, HIST_BINS / (hi - lo), old_tiles, *olds[i])

    def old_overview() -> None:
        old(1)
        half = bits.view(np.float16)
        for b in range(B):
            old_builder.update(int(starts[b]), half[b])

    runs = {
        "old": old,
        "new": lambda: new.update(bits, counts, tiles, starts),
        "old_overview": old_overview,
        "new_overview": lambda: new_ov.update(bits, counts, tiles, starts, builder.overview_state),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    for f in runs.values():  # compile, warm the caches
        f()
    for _ in range(rounds):
        for k, f in runs.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    same = np.array_equal(tiles, old_tiles)  # each way ran as often: the totals must agree
    for stats, (acc, cnt, hist) in zip((new, new_ov), olds, strict=True):
        new_hist, new_counts = stats._counts()
        same &= np.array_equal(stats.acc[0], acc[0]) and np.allclose(stats.acc[1], acc[1], rtol=1e-12)
        same &= np.array_equal(stats.extent, cnt[4:]) and np.array_equal(new_counts, cnt[:4])
        same &= np.array_equal(new_hist, hist[:, :, :HIST_BINS].sum(1))
    same &= np.array_equal(builder.sum.view(np.int64), old_builder.sum.view(np.int64))
    same &= np.array_equal(builder.count, old_builder.count)
    return {**{k: float(np.median(v)) / bits.size * 1e9 for k, v in times.items()}, "same": float(same)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--streams", type=int, default=64)
    p.add_argument("--steps", type=int, default=128)
    p.add_argument("--units", type=int, default=512)
    p.add_argument("--tokens", type=int, default=50_000, help="the run's length, for the overview's bins")
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args()
    ratios: dict[str, float] = {}
    times: dict[str, float] = {}
    for label, kind in (("sigmoid", "f"), ("tanh", "c")):
        ns = measure(kind, args.streams, args.steps, args.units, args.tokens, args.rounds)
        ratios[f"{label}_old_over_new"] = ns["old"] / ns["new"]
        ratios[f"{label}_old_over_new_with_overview"] = ns["old_overview"] / ns["new_overview"]
        ratios[f"{label}_overview_extra_pct"] = 100 * (ns["new_overview"] / ns["new"] - 1)
        ratios[f"{label}_same_results"] = ns.pop("same")  # 1: the stats, tiles and bin sums agree with the old pass
        times.update({f"{label}_{k}_ns_per_value": v for k, v in ns.items()})
    for k, v in {**ratios, **times}.items():
        print(f"{k}: {v:.3f}")


if __name__ == "__main__":
    main()
