"""What the unit cards add to a recording: ``record_corpus`` with its default observers (the cards) against the
same recording with none, side by side.

    python bench/cards.py                     # LSTM 2×512, 64 streams, 100k tokens, 3 rounds
    python bench/cards.py --tokens 30000 --rounds 2

Prints ``metric: value`` lines, ratios first. A ratio is the median over interleaved rounds of (with cards ÷
without) in the same round, in wall time and in process CPU time (all threads). ``first_call_s`` is the first
``open_run`` + ``top_contexts`` + ``correlated_units`` of a fresh process (after its imports) on the recorded
run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from e2e import Char, record

FIRST_CALL = """
import sys, time
import lstmviz
t0 = time.perf_counter()
run = lstmviz.open_run(sys.argv[1])
run.top_contexts("rnn.l1.fwd.c", 255)
run.correlated_units("rnn.l1.fwd.c", 255)
print(time.perf_counter() - t0)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--cell", default="LSTM")
    a = ap.parse_args()
    torch.manual_seed(0)
    model = Char(a.cell, a.hidden).eval()
    ids = np.random.default_rng(0).integers(0, 96, a.tokens)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        record(model, ids[: a.streams * a.chunk * 2], a.streams, a.chunk, tmp / "warm")
        wall: dict[str, list[float]] = {"cards": [], "none": []}
        cpu: dict[str, list[float]] = {"cards": [], "none": []}
        for r in range(a.rounds):
            for which in ("none", "cards") if r % 2 else ("cards", "none"):
                kw = {} if which == "cards" else {"observers": lambda act: []}
                t0, c0 = time.perf_counter(), time.process_time()
                record(model, ids, a.streams, a.chunk, tmp / which, **kw)
                wall[which].append(time.perf_counter() - t0)
                cpu[which].append(time.process_time() - c0)
        first = subprocess.run(
            [sys.executable, "-c", FIRST_CALL, str(tmp / "cards")], capture_output=True, text=True, check=True
        )
    print(f"cards_wall_ratio: {np.median(np.divide(wall['cards'], wall['none'])):.4f}")
    print(f"cards_cpu_ratio: {np.median(np.divide(cpu['cards'], cpu['none'])):.4f}")
    print(f"record_s_with_cards: {np.median(wall['cards']):.3f}")
    print(f"record_s_without: {np.median(wall['none']):.3f}")
    print(f"first_call_s: {float(first.stdout.split()[-1]):.3f}")


if __name__ == "__main__":
    main()
