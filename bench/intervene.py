"""Interventions and attribution on CPU, on sample_models/code_lstm.pt (goal: each ≤ 1 s, interactive).

    nice python bench/intervene.py
    nice python bench/intervene.py --tokens 2000 --window 20 --rounds 5 --positions 8

* intervene: the string unit ``rnn.l0.fwd.c`` 255 held at 1.0 over every step of a 2,000-token window of the
  held-out corpus, the full cache collected, against the plain forward of the same window (side by side,
  interleaved rounds, medians);
* integrated gradients at the window's last position over the ``--window`` tokens before it (the context before
  them read once): exactly ``--steps`` nodes (``tol=None``), and the default that refines until the completeness
  gap is within 1 % (``max_steps`` 512), with the gap and the evaluations spent at ``--positions`` positions;
  grad × input on the same window.

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
    p.add_argument("--window", type=int, default=20, help="tokens attributed before the position")
    p.add_argument("--positions", type=int, default=8, help="positions sampled for the adaptive gap")
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
        return attribute(lm, ids, len(ids) - 1, steps=args.steps, window=args.window, tol=None)

    def adaptive(position: int = len(ids) - 1):
        return attribute(lm, ids, position, window=args.window)

    def gxi():
        attribute(lm, ids, len(ids) - 1, method="grad_x_input", window=args.window)

    for f in (plain, held, ig, gxi, adaptive):  # warm-up: first-call allocation and weight packing
        f()
    work = (("plain", plain), ("held", held), ("ig", ig), ("adaptive", adaptive), ("gxi", gxi))
    times: dict[str, list[float]] = {name: [] for name, _ in work}
    for _ in range(args.rounds):
        for name, f in work:
            times[name].append(timed(f))
    med = {k: statistics.median(v) for k, v in times.items()}
    a = ig()
    print(f"intervene_vs_plain_forward: {med['held'] / med['plain']:.2f}")
    print(f"intervene_s: {med['held']:.3f}")
    print(f"plain_forward_s: {med['plain']:.3f}")
    print(f"integrated_gradients_s: {med['ig']:.3f}")
    print(f"ig_adaptive_s: {med['adaptive']:.3f}")
    print(f"grad_x_input_s: {med['gxi']:.3f}")
    print("goal_s: 1")
    print(f"ig_completeness_gap_relative: {a.relative_delta:.4f}")
    spread = np.linspace(args.window, len(ids) - 2, args.positions).astype(int)
    sampled = [adaptive(int(t)) for t in spread]
    print(f"ig_adaptive_gap_relative_max: {max(b.relative_delta for b in sampled):.4f}")
    print(f"ig_adaptive_under_1pct: {sum(b.relative_delta <= 0.01 for b in sampled)}/{len(sampled)}")
    print(f"ig_adaptive_steps_median: {statistics.median(b.steps for b in sampled):.0f}")
    print(f"ig_adaptive_steps_max: {max(b.steps for b in sampled)}")
    print(f"tokens: {len(ids)}")
    print(f"ig_window: {args.window}")
    print(f"ig_steps: {args.steps}")
    print(f"rounds: {args.rounds}")
    print(f"threads: {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
