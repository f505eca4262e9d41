"""Interventions and attribution on CPU, on sample_models/code_lstm.pt (goal: each ≤ 1 s, interactive).

    nice python bench/intervene.py
    nice python bench/intervene.py --tokens 2000 --window 40 --rounds 5

* intervene: the string unit ``rnn.l0.fwd.c`` 255 held at 1.0 over every step of a 2,000-token window of the
  held-out corpus, the full cache collected, against the plain forward of the same window (side by side,
  interleaved rounds, medians);
* integrated gradients with 64 steps at the window's last position, over the ``--window`` tokens before it
  (the context before them read once), and grad × input on the same window.

Threads default to 1: on a 2-core machine that other work shares, torch's two intra-op threads wait on each
other whenever one is descheduled (a 2,000-step forward measured 4–15 s instead of 0.35 s). Pass --threads 0
for torch's default on an idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import lstmviz
from lstmviz.causal import attribute, intervene

ROOT = Path(__file__).resolve().parents[1]


def timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=2000)
    p.add_argument("--window", type=int, default=40, help="tokens attributed before the position")
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    lm = lstmviz.load_model(ROOT / "sample_models/code_lstm.pt")
    text = (ROOT / "sample_models/corpora/python_stdlib.txt").read_text()
    ids = np.asarray(lm.tokenizer.encode(text[-args.tokens - 1 :]))[: args.tokens]
    x = torch.as_tensor(ids).view(1, -1)
    clamp = {"rnn.l0.fwd.c": {255: 1.0}}

    def plain():
        with torch.no_grad():
            lm.call(lm.module, x)

    def held():
        with torch.no_grad():
            intervene(lm, x, clamp=clamp)

    def ig():
        return attribute(lm, ids, len(ids) - 1, steps=args.steps, window=args.window)

    def gxi():
        attribute(lm, ids, len(ids) - 1, method="grad_x_input", window=args.window)

    for f in (plain, held, ig, gxi):  # warm-up: first-call allocation and weight packing
        f()
    times: dict[str, list[float]] = {"plain": [], "held": [], "ig": [], "gxi": []}
    for _ in range(args.rounds):
        for name, f in (("plain", plain), ("held", held), ("ig", ig), ("gxi", gxi)):
            times[name].append(timed(f))
    med = {k: statistics.median(v) for k, v in times.items()}
    a = ig()
    print(f"intervene_vs_plain_forward: {med['held'] / med['plain']:.2f}")
    print(f"intervene_s: {med['held']:.3f}")
    print(f"plain_forward_s: {med['plain']:.3f}")
    print(f"integrated_gradients_s: {med['ig']:.3f}")
    print(f"grad_x_input_s: {med['gxi']:.3f}")
    print("goal_s: 1")
    print(f"ig_completeness_gap_relative: {abs(a.delta) / max(abs(a.logp - a.baseline), 1e-12):.4f}")
    print(f"tokens: {len(ids)}")
    print(f"ig_window: {args.window}")
    print(f"ig_steps: {args.steps}")
    print(f"rounds: {args.rounds}")
    print(f"threads: {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
