"""Dashboard server time on a large run (goal: every cached interaction ≤ 300 ms, peak RSS ≤ 2 GB).

    nice python bench/app.py
    nice python bench/app.py --tokens 200000 --units 128
    nice python bench/app.py --tokens 10000000 --units 128 --out /tmp/h19     # the 10M-token case (7.7 GB)

Builds a synthetic run once (random characters with two annotation tracks, ``in_string`` and the bracket
``depth``, three activations of ``--units`` units, written block by block with RunWriter under /tmp; a run built
before the tracks existed gets them added to its tokens table), then drives the real pages with Streamlit's
AppTest, without a browser: each interaction is one widget change and one script run, timed after a first
(uncached) visit. The first-visit times, which include reading and downsampling the whole activation, building the
match index, counting gate saturation from the stats, projecting 5,000 sampled states with PCA and scoring every
unit against a track for Neuron search, are printed too, as are the Unit page's first visit (which builds the
activation's unit cards from its values, block by block) apart from its warm visits of other units. Each
interaction's CPU time is printed beside its wall time (``_cpu_``): on a shared machine the wall time includes
waiting for a core.

The pages run in this process (AppTest), so the peak RSS printed at the end (``ru_maxrss``, after every
interaction; the run is built in a child process when it does not exist yet) is the app's, with the bench's own
small overhead; ``peak_rss_after_<page>_mb`` says where it grew.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lstmviz.annotate.parens import bracket_depth
from lstmviz.store import Activation, RunWriter, open_run, tokens_frame

APP = str(Path(__file__).resolve().parents[1] / "app.py")
NAMES = ("rnn.l0.fwd.f", "rnn.l0.fwd.c", "rnn.l0.fwd.h")
BLOCK = 65536


CHARS = np.array(list("abcdefghijklmnopqrstuvwxyz (){}[]:=.,\n\"'"))


def tracks(display: np.ndarray) -> dict[str, np.ndarray]:
    """The annotation tracks of the synthetic text ``[n]``: in_string (bool, between double quotes) and depth
    (float, brackets of any kind open around the character), for Neuron search to score units against."""
    quote = display == '"'
    depth = bracket_depth(np.isin(display, list("([{")), np.isin(display, list(")]}")))
    return {"in_string": (np.cumsum(quote) % 2 == 1) & ~quote, "depth": depth.astype(np.float64)}


def add_tracks(out: Path) -> None:
    """Give a run built before the tracks existed its tracks: the tokens table rewritten with them (atomically)."""
    path = out / "tokens.parquet"
    if {"in_string", "depth"} <= set(pq.ParquetFile(path).schema_arrow.names):
        return
    table = pq.read_table(path)
    display = table.column("token").to_numpy(zero_copy_only=False).astype(str)
    for name, values in tracks(display).items():
        table = table.append_column(name, pa.array(values))
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, row_group_size=1 << 20)
    tmp.replace(path)


def build(out: Path, n: int, units: int) -> Path:
    """A run of n random characters with smooth random activations (so select finds spans), unless it exists."""
    if (out / "manifest.json").is_file():
        add_tracks(out)
        return out
    rng = np.random.default_rng(0)
    chars = CHARS
    ids = rng.integers(0, len(chars), n)
    tokens = tokens_frame(chars[ids].tolist(), ids)
    for name, values in tracks(chars[ids]).items():
        tokens[name] = values
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


def _has_tracks(run_dir: Path) -> bool:
    return {"in_string", "depth"} <= set(pq.ParquetFile(run_dir / "tokens.parquet").schema_arrow.names)


def peak_rss_mb() -> float:
    """This process's peak resident set so far, in MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


CPU: dict[str, list[float]] = {}
"""CPU seconds of this process per interaction, by the name its wall time is printed under: on a machine
shared with other work, the wall time includes waiting for a core, and the CPU time does not."""


def timed(at, action, key: str | None = None) -> float:
    """Seconds for one interaction: the widget change plus the script run it triggers (its CPU seconds go to
    ``CPU[key]``)."""
    t, c = time.perf_counter(), time.process_time()
    action(at).run()
    if key is not None:
        CPU.setdefault(key, []).append(time.process_time() - c)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=1_000_000)
    p.add_argument("--units", type=int, default=64)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("/tmp/lstmviz-bench-app"))
    p.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    run_dir = args.out / f"run{args.tokens}x{args.units}"
    if args.build_only:
        build(run_dir, args.tokens, args.units)
        return
    from streamlit.testing.v1 import AppTest

    t = time.perf_counter()
    if not (run_dir / "manifest.json").is_file() or not _has_tracks(run_dir):  # in a child process, so this
        # one's peak RSS is the app's
        argv = [sys.executable, __file__, "--build-only", "--out", str(args.out)]
        subprocess.run([*argv, "--tokens", str(args.tokens), "--units", str(args.units)], check=True)
    build_s = time.perf_counter() - t
    run = open_run(run_dir)
    os.environ["LSTMVIZ_RUNS"] = str(run_dir.parent)
    at = AppTest.from_file(APP, default_timeout=600)
    # no padding: on a smooth walk few units switch on for exactly the span, and select must find some to match
    query = {"run": str(run_dir), "act": "rnn.l0.fwd.c", "width": "1000", "pad_before": "0", "pad_after": "0"}
    at.query_params.update(query)
    at.run()

    first: dict[str, float] = {}
    rss: dict[str, float] = {"open": peak_rss_mb()}
    # ends on select, where the interactions start
    for page in ("overview", "saturation", "projection", "text", "unit", "select"):
        t = time.perf_counter()
        at.switch_page(f"lstmviz/dashboard/pages/{page}.py").run()
        first[page] = time.perf_counter() - t
        assert not at.exception, [e.value for e in at.exception]
        rss[page] = peak_rss_mb()

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
    uncached: dict[str, list[float]] = {}
    matched = 0
    for name, make in interactions.items():
        timed(at, make(0))  # warm the cache for this kind of interaction
        for i in range(args.repeat):
            times[name].append(timed(at, make(i), name))
        assert not at.exception, [e.value for e in at.exception]
        matched += any(h.value.startswith("Matches") for h in at.subheader)  # select found units: match ran
    rss["select_interactions"] = peak_rss_mb()

    def views(page: str, kinds: dict) -> None:
        """Each kind of interaction over ``repeat`` views, first uncached, then the same views again (cached)."""
        at.switch_page(f"lstmviz/dashboard/pages/{page}.py").run()
        for name, make in kinds.items():
            uncached[name], times[name] = [], []
            for i in range(args.repeat):
                # first visit of this view: uncached reads
                uncached[name].append(timed(at, make(i), name + "_uncached"))
            for i in range(args.repeat):
                times[name].append(timed(at, make(i), name))  # the same views again: cached
            assert not at.exception, [e.value for e in at.exception]
        rss[page + "_interactions"] = peak_rss_mb()

    views(
        "text",
        {
            "text_unit": lambda i: lambda a: a.number_input(key="unit").set_value(i % args.units),
            "text_jump": lambda i: lambda a: a.number_input(key="start").set_value(starts[i]),
            "text_activation": lambda i: lambda a: a.selectbox(key="act").set_value(NAMES[i % 2 + 1]),
        },
    )
    # the cards of c were built by the first visit; h's are built by the first switch to it (timed alone)
    views("unit", {"unit_unit": lambda i: lambda a: a.number_input(key="unit").set_value(1 + i % (args.units - 1))})
    t = time.perf_counter()
    at.selectbox(key="act").set_value("rnn.l0.fwd.h").run()
    first["unit_cards_build_h"] = time.perf_counter() - t
    assert not at.exception, [e.value for e in at.exception]
    rss["unit_interactions"] = peak_rss_mb()
    t = time.perf_counter()
    at.switch_page("lstmviz/dashboard/pages/overview.py").run()
    times["overview_revisit"] = [time.perf_counter() - t]

    # Neuron search: the first visit scores every unit of c against in_string (the run read once, in blocks),
    # the first switch to depth scores them against it; then units are picked and the tracks switched back and
    # forth, each ranking cached
    t = time.perf_counter()
    at.switch_page("lstmviz/dashboard/pages/neurons.py").run()
    first["neurons"] = time.perf_counter() - t
    assert not at.exception, [e.value for e in at.exception]
    t = time.perf_counter()
    at.selectbox(key="track").set_value("depth").run()
    first["neurons_track_depth"] = time.perf_counter() - t
    assert not at.exception, [e.value for e in at.exception]
    rss["neurons"] = peak_rss_mb()
    kinds = {
        "neurons_track": lambda i: lambda a: a.selectbox(key="track").set_value(("in_string", "depth")[i % 2]),
        "neurons_unit": lambda i: lambda a: a.number_input(key="unit").set_value(1 + i % (args.units - 1)),
    }
    for name, make in kinds.items():
        uncached[name], times[name] = [], []
        for i in range(args.repeat):
            uncached[name].append(timed(at, make(i), name + "_uncached"))
        for i in range(args.repeat):
            times[name].append(timed(at, make(i), name))
        assert not at.exception, [e.value for e in at.exception]
    rss["neurons_interactions"] = peak_rss_mb()

    at.switch_page("lstmviz/dashboard/pages/saturation.py").run()
    lows = [0.05, 0.1, 0.15, 0.2, 0.25]
    times["saturation_low"] = []
    for i in range(args.repeat):
        timed(at, lambda a, i=i: a.slider(key="sat_low").set_value(lows[i % len(lows)]))  # first: a scan
    for i in range(args.repeat):
        low = lows[i % len(lows)]
        slide = lambda a, v=low: a.slider(key="sat_low").set_value(v)  # noqa: E731
        times["saturation_low"].append(timed(at, slide, "saturation_low"))
    assert not at.exception, [e.value for e in at.exception]

    worst = max(max(v) for v in times.values())
    print(f"worst_cached_interaction_over_goal: {worst / 0.300:.2f}")
    print(f"select_interactions_that_matched: {matched} of {len(interactions)}")
    print(f"tokens: {n}")
    print(f"units_per_activation: {args.units}")
    print(f"build_run_s: {build_s:.1f}")
    for page, s in first.items():
        print(f"first_visit_{page}_s: {s:.2f}")
    for name, v in uncached.items():
        print(f"{name}_uncached_median_ms: {1000 * statistics.median(v):.0f}")
        print(f"{name}_uncached_max_ms: {1000 * max(v):.0f}")
    for name, v in times.items():
        print(f"{name}_median_ms: {1000 * statistics.median(v):.0f}")
        print(f"{name}_max_ms: {1000 * max(v):.0f}")
    print(f"worst_cached_interaction_ms: {1000 * worst:.0f}")
    for name, v in CPU.items():
        print(f"{name}_cpu_median_ms: {1000 * statistics.median(v):.0f}")
        print(f"{name}_cpu_max_ms: {1000 * max(v):.0f}")
    worst_cpu = max(max(v) for k, v in CPU.items() if not k.endswith("_uncached"))
    print(f"worst_cached_interaction_cpu_ms: {1000 * worst_cpu:.0f}")
    for where, mb in rss.items():
        print(f"peak_rss_after_{where}_mb: {mb:.0f}")
    print(f"peak_rss_mb: {peak_rss_mb():.0f}")


if __name__ == "__main__":
    main()
