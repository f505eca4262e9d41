"""What each part of the unit cards costs in the recording pass, and the Unit page's first call on a fresh run.

    python bench/cards.py                          # LSTM and GRU 2×512, 64 streams × 128, 50k tokens, 5 rounds
    python bench/cards.py --tokens 20000 --only lstm --rounds 3

Records each model once with the cards in the pass (``cards=True``), then replays its stored activations through the
writer's pass as the recording hands them (``[streams, chunk, units]`` blocks, streams interleaved), timing per
part, in interleaved rounds (medians):

- ``top``: the chunk pass with a :class:`lstmviz.chunkstats.CardState` (top-context candidates of both signs,
  counts beyond ±θ, the strip) less the same pass without;
- ``bands``: :class:`lstmviz.cards.PassCards`'s gather of the bands' sample rows;
- ``corr_<kind>``: the correlation sums (one float32 GEMM per 2048 rows) of the activations of one kind.

Each part's CPU time prints as a share of the recording's wall time without cards
(``record_seconds_without_cards``, median of ``--record-rounds`` recordings in this process), as
``<model>_extra_pct_<part>``: what the part adds where the cores are busy (the writer's thread overlaps the
forward, so on idle cores it adds less); ``record_cpu_seconds_without_cards`` is the recording's CPU time (all
threads). ``pass_ns_per_value`` is the chunk pass alone. ``first_call_s_<model>`` is a fresh process's
first ``open_run`` + the Unit page's ``card`` + ``top_contexts`` of both signs + ``correlated_units`` on the
recorded run, after its imports; ``first_call_s_<model>_first_use`` the same on the run with its cards deleted
(built on first use, as for a run recorded before cards were in the pass).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from e2e import Char, record

import lstmviz
from lstmviz import cards
from lstmviz.store.stats import Stats

FIRST_CALL = """
import sys, time
import lstmviz
from lstmviz.analysis import units
t0 = time.perf_counter()
run = lstmviz.open_run(sys.argv[1])
units.card(run, sys.argv[2], 255)
run.top_contexts(sys.argv[2], 255, sign=1)
run.top_contexts(sys.argv[2], 255, sign=-1)
run.correlated_units(sys.argv[2], 255)
print(time.perf_counter() - t0)
"""


def blocks(x: np.ndarray, streams: int, chunk: int):
    """The ``(starts [S], half [S, chunk, U], counts [S])`` blocks a stateful recording of x ``[n, U]`` writes."""
    n, U = x.shape
    L = -(-n // streams)
    out = []
    for j in range(-(-L // chunk)):
        starts = np.arange(streams) * L + j * chunk
        counts = np.clip(np.minimum(n - starts, L - j * chunk), 0, chunk)
        half = np.zeros((streams, chunk, U), np.float16)
        for s in range(streams):
            half[s, : counts[s]] = x[starts[s] : starts[s] + counts[s]]
        out.append((starts, half, counts))
    return out


def replay(act, data, n: int, part: str) -> float:
    """CPU seconds of one part (see the module docstring) over one activation's blocks."""
    stats = Stats(act)
    stats.range = (-1.0, 1.0)
    pc = cards.PassCards(act, n, correlations=part == "corr")
    tiles = np.empty((len(data[0][0]), act.units * data[0][1].shape[1]), np.uint16)
    t0 = time.process_time()
    for starts, half, counts in data:
        bits = half.view(np.uint16)
        if part in ("pass", "top"):
            stats.update(bits, counts, tiles, starts, pc.card_state if part == "top" else None)
        else:
            for s in range(len(starts)):
                if counts[s]:
                    rows = half[s, : counts[s]]
                    if part == "bands":
                        lo, hi = np.searchsorted(pc.sample_pos, [starts[s], starts[s] + counts[s]])
                        if hi > lo:
                            pc.sample[lo:hi] = rows[pc.sample_pos[lo:hi] - starts[s]]
                    else:
                        pc.moments.add(rows)
    if part == "corr":
        pc.moments.sums()
    return time.process_time() - t0


def model_case(cell: str, a, tmp: Path) -> dict[str, float]:
    torch.manual_seed(0)
    model = Char(cell, a.hidden).eval()
    ids = np.random.default_rng(0).integers(0, 96, a.tokens)
    record(model, ids[: a.streams * a.chunk * 2], a.streams, a.chunk, tmp / "warm")
    path = record(model, ids, a.streams, a.chunk, tmp / cell, cards=True)
    wall, cpu = [], []
    for _ in range(a.record_rounds):
        t0, c0 = time.perf_counter(), time.process_time()
        record(model, ids, a.streams, a.chunk, tmp / "nocards")
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    shutil.rmtree(tmp / "nocards")
    run = lstmviz.open_run(path)
    acts = {name: lstmviz.store.Activation.from_name(name, run.units(name)) for name in run.names}
    data = {name: blocks(run.activations(name).astype(np.float16), a.streams, a.chunk) for name in run.names}
    parts = ["pass", "top", "bands", "corr"]
    times: dict[tuple[str, str], list[float]] = {}
    for r in range(a.rounds):
        for part in parts[::-1] if r % 2 else parts:
            for name in run.names:
                times.setdefault((name, part), []).append(replay(acts[name], data[name], a.tokens, part))
    med = {key: float(np.median(v)) for key, v in times.items()}
    record_s = float(np.median(wall))
    values = sum(run.units(n) for n in run.names) * a.tokens
    out = {"record_seconds_without_cards": record_s, "record_cpu_seconds_without_cards": float(np.median(cpu))}
    pass_s = sum(med[(n, "pass")] for n in run.names)
    top_s = sum(med[(n, "top")] for n in run.names) - pass_s
    bands_s = sum(med[(n, "bands")] for n in run.names)
    out["pass_ns_per_value"] = pass_s / values * 1e9
    out["extra_pct_top"] = 100 * top_s / record_s
    out["extra_pct_bands"] = 100 * bands_s / record_s
    for kind in sorted({acts[n].kind for n in run.names}):
        corr_s = sum(med[(n, "corr")] for n in run.names if acts[n].kind == kind)
        out[f"extra_pct_corr_{kind}"] = 100 * corr_s / record_s
    in_pass = [n for n in run.names if acts[n].kind in cards.CORR_KINDS]
    out["extra_pct_corr_in_pass"] = 100 * sum(med[(n, "corr")] for n in in_pass) / record_s
    out["extra_pct_total_in_pass"] = out["extra_pct_top"] + out["extra_pct_bands"] + out["extra_pct_corr_in_pass"]
    name = f"rnn.l1.fwd.{'c' if cell == 'LSTM' else 'h'}"
    first = [sys.executable, "-c", FIRST_CALL]
    out["first_call_s"] = float(subprocess.run([*first, str(path), name], capture_output=True, text=True,
                                               check=True).stdout.split()[-1])  # fmt: skip
    shutil.rmtree(path / "cache" / "cards")
    out["first_call_s_first_use"] = float(subprocess.run([*first, str(path), name], capture_output=True, text=True,
                                                         check=True).stdout.split()[-1])  # fmt: skip
    shutil.rmtree(path)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--record-rounds", type=int, default=2)
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--chunk", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--only", nargs="*", choices=["lstm", "gru"], help="models to run (default: both)")
    a = ap.parse_args()
    cells = {"lstm": "LSTM", "gru": "GRU"}
    with tempfile.TemporaryDirectory() as tmp:
        res = {k: model_case(cells[k], a, Path(tmp)) for k in a.only or list(cells)}
    for k, r in res.items():
        print(f"{k}_extra_pct_total_in_pass: {r['extra_pct_total_in_pass']:.2f}")
    for k, r in res.items():
        for metric, value in r.items():
            if metric != "extra_pct_total_in_pass":
                print(f"{k}_{metric}: {value:.3f}")
    print(f"corr_kinds_in_pass: {','.join(cards.CORR_KINDS)}")
    print(f"tokens: {a.tokens}")
    print(f"threads: {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
