"""What the unit cards cost in a recording, and the first calls of their reads on a fresh 1M-token run.

    python bench/cards.py                          # LSTM and GRU 2×512, 64 streams × 128, 50k tokens, 3 rounds
    python bench/cards.py --tokens 20000 --only lstm --rounds 2 --big 0

Records each model without and with the cards (``cards=True``), interleaved, ``--rounds`` times each, and times the
cards' parts inside those recordings (thread CPU seconds): ``sweep`` is the writer's closing pass over the stored
values (:class:`lstmviz.unit_sweep.Sweep`, which a quantile θ of the match index runs anyway) with the cards less
without them, ``finish`` the cards' finish (:func:`lstmviz.cards.merge_parts`: the greedy, the bands, the file).
Each part prints as a share of the recording's wall time without cards (``record_seconds_without_cards``,
median), as ``<model>_extra_pct_<part>``: what the part adds where the cores are busy. ``<model>_wall_ratio`` is the
median of the recordings' wall times with the cards over without (on a shared machine, noisier than the parts).
``first_call_s_<model>`` is a fresh process's first ``open_run`` + the Unit page's ``card`` (top contexts of both
signs, correlated units…) on the recorded run, after its imports; ``_first_use`` the same with the run's cards
deleted.

``--big N`` (default 1M) writes a run of N tokens of one 512-unit cell state (a random walk through tanh) with what a
recording builds (the match index, the overview, the cards), and times each read's first call in a fresh process,
wall and CPU seconds: ``big_first_call_s_<what>`` for ``unit_page`` (open_run + the Unit page's ``card``),
``top_contexts`` (both signs), ``correlated_units`` (one streamed pass over the whole activation) and ``first_use``
(the Unit page with the cards deleted: built from the file first).
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
from e2e import Char, fresh, record

import lstmviz
from lstmviz import unit_sweep
from lstmviz.analysis.match_pass import recording_observers
from lstmviz.cards import inpass
from lstmviz.store.format import tokens_frame

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
    """A run of n tokens of one 512-unit cell state (a random walk through tanh), recorded with the observers of a
    recording (the match index, the overview and the cards, all built by the writer)."""
    units = 512
    rng = np.random.default_rng(0)
    acts = [lstmviz.store.Activation.from_name("rnn.l0.fwd.c", units)]
    tokens = tokens_frame([chr(97 + i % 26) for i in range(n)])
    mix = rng.normal(size=(units, units)).astype(np.float32) / np.sqrt(units)
    level = np.zeros(units, np.float32)
    with lstmviz.store.RunWriter(tmp / "big", tokens, acts, observers=recording_observers(n, cards=True)) as w:
        for start in range(0, n, 16384):
            z = rng.normal(size=(min(16384, n - start), units)).astype(np.float32)
            walk = level + np.cumsum(z, 0) / 30
            level = walk[-1]
            w.write("rnn.l0.fwd.c", start, np.tanh(walk / 10 + z @ mix))
    return tmp / "big"


class Parts:
    """Thread CPU seconds spent in the cards' parts while recording (``Sweep.run``, ``PassCards.finish``)."""

    def __init__(self) -> None:
        self.seconds = {"sweep": 0.0, "finish": 0.0}
        for part, (owner, method) in {
            "sweep": (unit_sweep.Sweep, "run"),
            "finish": (inpass.PassCards, "finish"),
        }.items():
            setattr(owner, method, self._timed(part, getattr(owner, method)))

    def _timed(self, part: str, f):
        def timed(*args, **kw):
            t0 = time.thread_time()
            try:
                return f(*args, **kw)
            finally:
                self.seconds[part] += time.thread_time() - t0

        return timed

    def take(self) -> dict[str, float]:
        out, self.seconds = self.seconds, dict.fromkeys(self.seconds, 0.0)
        return out


def model_case(cell: str, a, tmp: Path, parts: Parts) -> dict[str, float]:
    torch.manual_seed(0)
    model = Char(cell, a.hidden).eval()
    ids = np.random.default_rng(0).integers(0, 96, a.tokens)
    record(model, ids[: a.streams * a.chunk * 2], a.streams, a.chunk, tmp / "warm", cards=True)
    runs: dict[bool, list[tuple[float, dict[str, float]]]] = {False: [], True: []}
    for r in range(a.rounds):
        for with_cards in (r % 2 == 0, r % 2 == 1):
            fresh(tmp / cell)  # as bench/e2e.py: no deleting or writeback of the last run inside the timing
            parts.take()
            t0 = time.perf_counter()
            path = record(model, ids, a.streams, a.chunk, tmp / cell, cards=with_cards)
            runs[with_cards].append((time.perf_counter() - t0, parts.take()))
    record_s = float(np.median([w for w, _ in runs[False]]))
    sweep = {c: float(np.median([p["sweep"] for _, p in runs[c]])) for c in runs}
    finish = float(np.median([p["finish"] for _, p in runs[True]]))
    out = {"record_seconds_without_cards": record_s}
    out["extra_pct_sweep"] = 100 * (sweep[True] - sweep[False]) / record_s
    out["extra_pct_finish"] = 100 * finish / record_s
    out["extra_pct_total"] = out["extra_pct_sweep"] + out["extra_pct_finish"]
    out["wall_ratio"] = float(np.median([w for w, _ in runs[True]])) / record_s
    name = f"rnn.l1.fwd.{'c' if cell == 'LSTM' else 'h'}"
    out["first_call_s"] = first_call(path, name, "unit_page")[0]
    shutil.rmtree(path / "cache" / "cards")
    out["first_call_s_first_use"] = first_call(path, name, "first_use")[0]
    shutil.rmtree(path)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--chunk", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--only", nargs="*", choices=["lstm", "gru"], help="models to run (default: both)")
    ap.add_argument("--big", type=int, default=1_000_000, help="tokens of the first-call run (0: none)")
    a = ap.parse_args()
    cells = {"lstm": "LSTM", "gru": "GRU"}
    with tempfile.TemporaryDirectory() as tmp:
        parts = Parts()
        res = {k: model_case(cells[k], a, Path(tmp), parts) for k in a.only or list(cells)}
        big = {}
        if a.big:
            path = big_run(a.big, Path(tmp))
            for what in ("unit_page", "top_contexts", "correlated_units"):
                big[what] = first_call(path, "rnn.l0.fwd.c", what)
            shutil.rmtree(path / "cache" / "cards")
            big["first_use"] = first_call(path, "rnn.l0.fwd.c", "first_use")
    for k, r in res.items():
        print(f"{k}_extra_pct_total: {r['extra_pct_total']:.2f}")
    for k, r in res.items():
        for metric, value in r.items():
            if metric != "extra_pct_total":
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
