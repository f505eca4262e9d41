"""Dashboard server time on a 1M-token run (goal: every cached interaction ≤ 300 ms).

    nice python bench/app.py
    nice python bench/app.py --tokens 200000 --units 128

Builds a synthetic run once (random characters, three activations of ``--units`` units, written block by block with
RunWriter under /tmp), then drives the real pages with Streamlit's AppTest, without a browser: each interaction is
one widget change and one script run, timed after a first (uncached) visit. The first-visit times, which include
reading and downsampling the whole activation, building the match index, counting gate saturation from the stats
and projecting 5,000 sampled states with PCA, are printed too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from lstmviz.store import Activation, RunWriter, open_run, tokens_frame

APP = str(Path(__file__).resolve().parents[1] / "app.py")
NAMES = ("rnn.l0.fwd.f", "rnn.l0.fwd.c", "rnn.l0.fwd.h")
BLOCK = 65536


def build(out: Path, n: int, units: int) -> Path:
    """A run of n random characters with smooth random activations (so select finds spans), unless it exists."""
    if (out / "manifest.json").is_file():
        return out
    rng = np.random.default_rng(0)
    chars = np.array(list("abcdefghijklmnopqrstuvwxyz (){}[]:=.,\n\"'"))
    ids = rng.integers(0, len(chars), n)
    tokens = tokens_frame(chars[ids].tolist(), ids)
    acts = [Activation.from_name(name, units) for name in NAMES]
    manifest = {"tokenizer": {"kind": "char", "vocab": chars.tolist(), "unk": None}}
    with RunWriter(out, tokens, acts, manifest, overwrite=True) as w:
        for start in range(0, n, BLOCK):
            rows = min(BLOCK, n - start)
            walk = np.cumsum(rng.normal(0, 0.3, (rows, units)), 0)  # (rows, units)
            wave = np.tanh(walk - walk.mean(0))
            for name in NAMES:
                w.write(name, start, 1 / (1 + np.exp(-3 * wave)) if name.endswith(".f") else wave)
    return out


def timed(at, action) -> float:
    """Seconds for one interaction: the widget change plus the script run it triggers."""
    t = time.perf_counter()
    action(at).run()
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=1_000_000)
    p.add_argument("--units", type=int, default=64)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("/tmp/lstmviz-bench-app"))
    args = p.parse_args()
    from streamlit.testing.v1 import AppTest

    t = time.perf_counter()
    run_dir = build(args.out / f"run{args.tokens}x{args.units}", args.tokens, args.units)
    build_s = time.perf_counter() - t
    run = open_run(run_dir)
    os.environ["LSTMVIZ_RUNS"] = str(run_dir.parent)
    at = AppTest.from_file(APP, default_timeout=600)
    at.query_params.update({"run": str(run_dir), "act": "rnn.l0.fwd.c", "width": "1000"})
    at.run()

    first: dict[str, float] = {}
    for page in ("saturation", "projection", "text", "select"):  # ends on select, where the interactions start
        t = time.perf_counter()
        at.switch_page(f"lstmviz/dashboard/pages/{page}.py").run()
        first[page] = time.perf_counter() - t
        assert not at.exception, [e.value for e in at.exception]

    n, top = run.n_tokens, run.n_tokens - 1000
    rng = np.random.default_rng(1)
    starts = [int(s) for s in rng.integers(0, top, args.repeat)]
    interactions = {
        # select page (current): brush a new span and change θ; the window moves by the Next button
        "select_span": lambda i: (
            lambda a: a.number_input(key="span_b").set_value(a.number_input(key="span_a").value + 2 + i % 3)
        ),
        "select_theta": lambda i: lambda a: a.number_input(key="theta").set_value(0.3 + 0.05 * (i % 2)),
        "select_next_window": lambda i: lambda a: a.button(key="start_next").click(),
    }
    times: dict[str, list[float]] = {k: [] for k in interactions}
    for name, make in interactions.items():
        timed(at, make(0))  # warm the cache for this kind of interaction
        for i in range(args.repeat):
            times[name].append(timed(at, make(i)))
    at.switch_page("lstmviz/dashboard/pages/text.py").run()
    for name, make in {
        "text_unit": lambda i: lambda a: a.number_input(key="unit").set_value(i % args.units),
        "text_jump": lambda i: lambda a: a.number_input(key="start").set_value(starts[i]),
        "text_activation": lambda i: lambda a: a.selectbox(key="act").set_value(NAMES[i % 2 + 1]),
    }.items():
        times[name] = []
        for i in range(args.repeat):
            timed(at, make(i))  # first visit of this view: uncached window read
        for i in range(args.repeat):
            times[name].append(timed(at, make(i)))  # the same views again: cached
        assert not at.exception, [e.value for e in at.exception]

    at.switch_page("lstmviz/dashboard/pages/saturation.py").run()
    lows = [0.05, 0.1, 0.15, 0.2, 0.25]
    times["saturation_low"] = []
    for i in range(args.repeat):
        timed(at, lambda a, i=i: a.slider(key="sat_low").set_value(lows[i % len(lows)]))  # first: a scan
    for i in range(args.repeat):
        times["saturation_low"].append(timed(at, lambda a, i=i: a.slider(key="sat_low").set_value(lows[i % len(lows)])))
    assert not at.exception, [e.value for e in at.exception]

    worst = max(max(v) for v in times.values())
    print(f"worst_cached_interaction_over_goal: {worst / 0.300:.2f}")
    print(f"tokens: {n}")
    print(f"units_per_activation: {args.units}")
    print(f"build_run_s: {build_s:.1f}")
    for page, s in first.items():
        print(f"first_visit_{page}_s: {s:.2f}")
    for name, v in times.items():
        print(f"{name}_median_ms: {1000 * statistics.median(v):.0f}")
        print(f"{name}_max_ms: {1000 * max(v):.0f}")
    print(f"worst_cached_interaction_ms: {1000 * worst:.0f}")


if __name__ == "__main__":
    main()
