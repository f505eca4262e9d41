"""LSTMVis match through the bitset index versus a brute-force scan, on a 1M-token × 512-unit synthetic run.

    nice python bench/match.py                      # synthetic values cached in /tmp after the first run
    nice python bench/match.py --tokens 200000      # smaller

The run is written twice, in one process: without derived data, and with the recording observers (match
indices at the default θs, overview), which prints the recording-time cost of building them. The first query on
the freshly recorded run, opened afresh, is timed at both default θs.

The synthetic activation is tanh of per-unit AR(1) noise (time constants 2…50 steps) plus 32 planted
"concepts": on/off processes (mean on-run 12 steps, off-run 200) each driving 8 units. Queries select a few units
of one concept, or random units, at an absolute θ and at a per-unit quantile θ.

The brute force is :func:`match_scan` on the whole activation held in memory as float16 (1 GB; loading it is
not timed); the index path is the public :func:`match`, context strings included. Both must return the same
spans in the same order. Prints ``metric: value`` lines, the speed ratio first.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

from lstmviz.analysis.match_bits import DEFAULT_THRESHOLDS
from lstmviz.analysis.match_pass import recording_observers
from lstmviz.analysis.select_match import Threshold, match, match_scan, on_index
from lstmviz.store import Activation, RunWriter, open_run, tokens_frame

NAME = "rnn.l0.fwd.c"
BLOCK = 1 << 16
GROUP = 8


def concepts(n_tokens: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """bool ``[n_tokens, n]``: alternating off/on runs with geometric lengths (means 200 and 12)."""
    out = np.zeros((n_tokens, n), bool)
    for k in range(n):
        lengths = np.stack(
            [rng.geometric(1 / 200, n_tokens // 100 + 2), rng.geometric(1 / 12, n_tokens // 100 + 2)], axis=1
        ).ravel()
        state = np.tile([False, True], len(lengths) // 2)
        out[:, k] = np.repeat(state, lengths)[:n_tokens]
    return out


def concept_units(n_units: int, seed: int) -> np.ndarray:
    """int ``[concepts, 8]``: the units each concept drives."""
    n_concepts = min(32, n_units // GROUP)
    return np.random.default_rng(seed).permutation(n_units)[: n_concepts * GROUP].reshape(n_concepts, GROUP)


def synthetic(n_tokens: int, n_units: int, seed: int) -> np.ndarray:
    """float16 ``[n_tokens, n_units]``, block by block, carrying each unit's AR(1) state across blocks."""
    rng = np.random.default_rng(seed + 1)
    a = np.exp(-1 / np.exp(rng.uniform(np.log(2), np.log(50), n_units)))  # AR(1) coefficient per unit
    driven = concept_units(n_units, seed)
    n_concepts = len(driven)
    on = concepts(n_tokens, n_concepts, rng)
    zi = np.zeros(n_units)
    out = np.empty((n_tokens, n_units), np.float16)
    for start in range(0, n_tokens, BLOCK):
        n = min(BLOCK, n_tokens - start)
        noise = rng.normal(size=(n, n_units))
        base = np.empty((n, n_units))
        for u in range(n_units):
            base[:, u], z = lfilter([np.sqrt(1 - a[u] ** 2)], [1, -a[u]], noise[:, u], zi=zi[u : u + 1])
            zi[u] = z[0]
        drive = np.zeros((n, n_units))
        for k in range(n_concepts):
            drive[:, driven[k]] += 2.0 * on[start : start + n, k, None]
        out[start : start + n] = np.tanh(0.7 * base + drive - 0.6)
    return out


def write(path: Path, values: np.ndarray, derived: bool) -> float:
    """Write the run as a recording does (chunks of 64 streams × 128 steps); returns seconds in the writer."""
    shutil.rmtree(path, ignore_errors=True)
    n, units = values.shape
    tokens = tokens_frame(list(np.random.default_rng(0).choice(list("abcdefghij klmnop"), n)))
    observers = recording_observers(n) if derived else None
    t0 = time.perf_counter()
    with RunWriter(path, tokens, [Activation.from_name(NAME, units)], observers=observers) as w:
        per = -(-n // 64)
        for t in range(0, per, 128):
            for s in range(64):
                a, b = s * per + t, min(s * per + t + 128, (s + 1) * per, n)
                if b > a:
                    w.write(NAME, a, values[a:b])
    return time.perf_counter() - t0


def queries(driven: np.ndarray, n_units: int, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Half: 3…6 units of one concept; half: 4 random units."""
    out = []
    for q in range(n):
        if q % 2 == 0:
            out.append(rng.choice(driven[rng.integers(len(driven))], rng.integers(3, 7), replace=False))
        else:
            out.append(rng.choice(n_units, 4, replace=False))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=1_000_000)
    p.add_argument("--units", type=int, default=512)
    p.add_argument("--queries", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dir", type=Path, default=None)
    args = p.parse_args()
    path = args.dir or Path(f"/tmp/lstmviz-bench-match-{args.tokens}x{args.units}-s{args.seed}")
    cached = path.with_name(path.name + ".values.npy")
    if not cached.exists():
        np.save(cached, synthetic(args.tokens, args.units, args.seed))
    values = np.load(cached)
    plain_s = write(path.with_name(path.name + ".plain"), values, derived=False)
    derived_s = write(path, values, derived=True)
    shutil.rmtree(path.with_name(path.name + ".plain"))
    rng = np.random.default_rng(args.seed + 2)
    driven = concept_units(args.units, args.seed)
    first_ms = {}
    for th in DEFAULT_THRESHOLDS:
        run = open_run(path)  # as a fresh dashboard session opens it
        t0 = time.perf_counter()
        match(run, NAME, driven[0][:4], th)
        first_ms[th.key] = 1e3 * (time.perf_counter() - t0)
    run = open_run(path)
    thresholds = [Threshold(0.5), Threshold(0.95, quantile=True)]
    build_s = {}
    for th in thresholds:
        t0 = time.perf_counter()
        on_index(run, NAME, th)
        build_s[th.key] = time.perf_counter() - t0
    fast_ms, slow_ms, identical = [], [], True
    match(run, NAME, [0, 1, 2], thresholds[0])  # warm: tokens table, memory maps
    for i, units in enumerate(queries(driven, args.units, args.queries, rng)):
        th = thresholds[i % len(thresholds)]
        t0 = time.perf_counter()
        got = match(run, NAME, units, th)
        fast_ms.append(1e3 * (time.perf_counter() - t0))
        t0 = time.perf_counter()
        want = match_scan(values, on_index(run, NAME, th).theta, units)
        slow_ms.append(1e3 * (time.perf_counter() - t0))
        identical &= got[want.columns].values.tolist() == want.values.tolist() and len(want) > 0
    fast, slow = np.array(fast_ms), np.array(slow_ms)
    print(f"speedup_vs_bruteforce: {slow.sum() / fast.sum():.1f}")
    print(f"record_with_derived_ratio: {derived_s / plain_s:.2f}")
    for key, ms in first_ms.items():
        print(f"first_match_ms_fresh_run[{key}]: {ms:.1f}")
    print(f"match_ms_per_query_mean: {fast.mean():.1f}")
    print(f"match_ms_per_query_max: {fast.max():.1f}")
    print(f"bruteforce_ms_per_query_mean: {slow.mean():.1f}")
    print(f"identical_results: {identical}")
    for key, seconds in build_s.items():
        print(f"index_build_s[{key}]: {seconds:.2f}")
    print(f"record_s_plain: {plain_s:.1f}")
    print(f"record_s_with_derived: {derived_s:.1f}")
    print(f"tokens: {args.tokens}")
    print(f"units: {args.units}")
    print(f"queries: {args.queries}")
    if not identical:
        raise SystemExit("index and brute force disagree")


if __name__ == "__main__":
    main()
