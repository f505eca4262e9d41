"""What the unit cards cost in the recording pass, and the first calls of their reads on a fresh 1M-token run.

    python bench/cards.py                          # LSTM and GRU 2×512, 64 streams × 128, 50k tokens, 5 rounds
    python bench/cards.py --tokens 20000 --only lstm --rounds 3 --big 0

Records each model once with the cards in the pass (``cards=True``), then replays its stored activations through the
writer's pass as the recording hands them (``[streams, chunk, units]`` blocks, streams interleaved), in interleaved
rounds (medians): ``pass`` is the chunk pass without cards, ``top`` the same pass with a
:class:`lstmviz.chunkstats.CardState` (top-context candidates of both signs, the bands' sample rows, counts beyond
±θ, the strip) less ``pass``; ``finish`` is the cards' finish (:func:`lstmviz.cards.merge_parts`: the greedy,
the bands). Each part's CPU time prints as a share of the recording's wall time without cards
(``record_seconds_without_cards``, median of ``--record-rounds`` recordings in this process), as
``<model>_extra_pct_<part>``: what the part adds where the cores are busy (the writer's thread overlaps the
forward, so on idle cores it adds less). ``pass_ns_per_value`` is the chunk pass alone. ``first_call_s_<model>``
is a fresh process's first ``open_run`` + the Unit page's ``card`` (top contexts of both signs, correlated
units…) on the recorded run, after its imports; ``_first_use`` the same with the run's cards deleted.

``--big N`` (default 1M) writes a run of N tokens of one 512-unit cell state (a random walk through tanh) with the
cards built by the writer, and times each read's first call in a fresh process, wall and CPU seconds:
``big_first_call_s_<what>`` for ``unit_page`` (open_run + the Unit page's ``card``), ``top_contexts`` (both
signs), ``correlated_units`` (one streamed pass over the whole activation) and ``first_use`` (the Unit page with
the cards deleted: built from the file first).
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
from lstmviz.store.format import tokens_frame
from lstmviz.store.stats import Stats

FIRST_CALL = """
import sys, time
import lstmviz
from lstmviz.analysis import units
name, what = sys.argv[2], sys.argv[3]
t0, c0 = time.perf_counter(), time.process_time()
run = lstmviz.open_run(sys.argv[1])
if what in ("unit_page", "first_use"):
    units.card(run, name, 255)
elif what == "top_contexts":
    run.top_contexts(name, 255, sign=1)
    run.top_contexts(name, 255, sign=-1)
else:
    run.correlated_units(name, 255)
print(time.perf_counter() - t0, time.process_time() - c0)
"""


def first_call(path: Path, name: str, what: str) -> tuple[float, float]:
    """Wall and CPU seconds of one read's first call in a fresh process (see FIRST_CALL)."""
    out = subprocess.run([sys.executable, "-c", FIRST_CALL, str(path), name, what], capture_output=True, text=True,
                         check=True).stdout.split()  # fmt: skip
    return float(out[-2]), float(out[-1])


def big_run(n: int, tmp: Path) -> Path:
    """A run of n tokens of one 512-unit cell state (a random walk through tanh), cards built by the writer."""
    units = 512
    rng = np.random.default_rng(0)
    acts = [lstmviz.store.Activation.from_name("rnn.l0.fwd.c", units)]
    tokens = tokens_frame([chr(97 + i % 26) for i in range(n)])
    mix = rng.normal(size=(units, units)).astype(np.float32) / np.sqrt(units)
    level = np.zeros(units, np.float32)
    with lstmviz.store.RunWriter(tmp / "big", tokens, acts, observers=cards.card_observers(n)) as w:
        for start in range(0, n, 16384):
            z = rng.normal(size=(min(16384, n - start), units)).astype(np.float32)
            walk = level + np.cumsum(z, 0) / 30
            level = walk[-1]
            w.write("rnn.l0.fwd.c", start, np.tanh(walk / 10 + z @ mix))
    return tmp / "big"


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
    pc = cards.PassCards(act, n)
    tiles = np.empty((len(data[0][0]), act.units * data[0][1].shape[1]), np.uint16)
    if part == "finish":
        for starts, half, counts in data:
            stats.update(half.view(np.uint16), counts, tiles, starts, pc.card_state)
    t0 = time.process_time()
    if part == "finish":
        cards.merge_parts([pc.parts()], n)
    else:
        for starts, half, counts in data:
            stats.update(half.view(np.uint16), counts, tiles, starts, pc.card_state if part == "top" else None)
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
        record(model, ids, a.streams, a.chunk, tmp / "nocards", cards=False)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    shutil.rmtree(tmp / "nocards")
    run = lstmviz.open_run(path)
    acts = {name: lstmviz.store.Activation.from_name(name, run.units(name)) for name in run.names}
    data = {name: blocks(run.activations(name).astype(np.float16), a.streams, a.chunk) for name in run.names}
    parts = ["pass", "top", "finish"]
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
    finish_s = sum(med[(n, "finish")] for n in run.names)
    out["pass_ns_per_value"] = pass_s / values * 1e9
    out["extra_pct_top"] = 100 * top_s / record_s
    out["extra_pct_finish"] = 100 * finish_s / record_s
    out["extra_pct_total_in_pass"] = out["extra_pct_top"] + out["extra_pct_finish"]
    name = f"rnn.l1.fwd.{'c' if cell == 'LSTM' else 'h'}"
    out["first_call_s"] = first_call(path, name, "unit_page")[0]
    shutil.rmtree(path / "cache" / "cards")
    out["first_call_s_first_use"] = first_call(path, name, "first_use")[0]
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
    ap.add_argument("--big", type=int, default=1_000_000, help="tokens of the first-call run (0: none)")
    a = ap.parse_args()
    cells = {"lstm": "LSTM", "gru": "GRU"}
    with tempfile.TemporaryDirectory() as tmp:
        res = {k: model_case(cells[k], a, Path(tmp)) for k in a.only or list(cells)}
        big = {}
        if a.big:
            path = big_run(a.big, Path(tmp))
            for what in ("unit_page", "top_contexts", "correlated_units"):
                big[what] = first_call(path, "rnn.l0.fwd.c", what)
            shutil.rmtree(path / "cache" / "cards")
            big["first_use"] = first_call(path, "rnn.l0.fwd.c", "first_use")
    for k, r in res.items():
        print(f"{k}_extra_pct_total_in_pass: {r['extra_pct_total_in_pass']:.2f}")
    for k, r in res.items():
        for metric, value in r.items():
            if metric != "extra_pct_total_in_pass":
                print(f"{k}_{metric}: {value:.3f}")
    for what, (wall_s, cpu_s) in big.items():
        print(f"big_first_call_s_{what}: {wall_s:.3f}")
        print(f"big_first_call_cpu_s_{what}: {cpu_s:.3f}")
    if a.big:
        print(f"big_tokens: {a.big}")
    print(f"tokens: {a.tokens}")
    print(f"threads: {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
