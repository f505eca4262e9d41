"""Queries on a large synthetic sharded run: latency of each interaction and the process's peak RSS.

    python bench/sharded_queries.py                      # 2M tokens × 64 units, 4 shards (about 260 MB on disk)
    python bench/sharded_queries.py --tokens 10000000    # the 10M-token case (about 1.3 GB per activation)

The run is written as the Ray driver writes one (each shard a run with lstmviz.shard_merge.shard_observers, then the
driver's merge), without Ray, in a child process: what is measured is reading. One sigmoid activation of smooth
random values. Each query runs 5 times; the median is printed. Prints ``metric: value`` lines; the peak RSS of
the reading process comes last, after every query.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import lstmviz
from lstmviz import distributed, shard_merge, shards
from lstmviz.analysis.match_bits import on_index
from lstmviz.analysis.overview import overview
from lstmviz.analysis.select_match import match_index
from lstmviz.outputs import Output, write_json_atomically
from lstmviz.store import tokens_frame, write_run

NAME = "rnn.l0.fwd.f"


def build(out: Path, n: int, units: int, k: int) -> None:
    bounds = distributed.cut_points(n, k)
    output = Output(out, "run", overwrite=True)
    (output.partial / shards.PARTS).mkdir()
    parts = [shards.part_dir(output.partial, i) for i in range(len(bounds))]
    rng = np.random.default_rng(0)
    for part, (a, b) in zip(parts, bounds, strict=True):
        x = np.empty((b - a, units), np.float32)
        for r in range(0, b - a, 1 << 18):  # a smooth walk through a sigmoid, in blocks
            m = min(1 << 18, b - a - r)
            x[r : r + m] = 1 / (1 + np.exp(-np.cumsum(rng.normal(0, 0.3, (m, units)), 0) / 8))
        tokens = tokens_frame(["x"] * (b - a))
        tokens["idx"] += a
        write_run(part, tokens, {NAME: x}, observers=shard_merge.shard_observers(n, a, b - a, part.parent))
        del x
    manifest = distributed._merge(output.partial, parts, bounds, "none")
    output.publish(finish=lambda run: write_json_atomically(run / "manifest.json", {**manifest, "complete": True}))


def timed(f, rounds: int = 5) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=2_000_000)
    ap.add_argument("--units", type=int, default=64)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--build", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    n, units = args.tokens, args.units
    if args.build:
        return build(args.build, n, units, args.shards)
    tmp = Path(tempfile.mkdtemp(prefix="lstmviz-sharded-"))
    try:
        t = time.perf_counter()
        # built in a child process, so that this one's peak RSS is the queries' alone
        argv = [sys.executable, __file__, "--build", str(tmp / "run"), "--tokens", str(n), "--units", str(units)]
        subprocess.run([*argv, "--shards", str(args.shards)], check=True)
        build_s = time.perf_counter() - t
        run = lstmviz.open_run(tmp / "run")
        edge = json.loads((tmp / "run" / "manifest.json").read_text())["recording"]["shards"][1][0]
        index = on_index(run, NAME, 0.3)
        lines = {
            "open_run_ms": timed(lambda: lstmviz.open_run(tmp / "run")),
            "window_1000_tokens_all_units_across_shards_ms": timed(
                lambda: run.activations(NAME, start=edge - 500, stop=edge + 500)
            ),
            "window_1000_tokens_at_the_end_ms": timed(lambda: run.activations(NAME, start=n - 1000, stop=n)),
            "match_4_units_ms": timed(lambda: match_index(on_index(run, NAME, 0.3), [0, 1, 2, 3], top=20)),
            "overview_ms": timed(lambda: overview(run, NAME)),
        }
        for key, value in lines.items():
            print(f"{key}: {value:.1f}")
        print(f"match_index_bits_mb: {index.bits.nbytes / 1e6:.0f}")
        print(f"build_s: {build_s:.1f}")
        print(f"tokens: {n}")
        print(f"units: {units}")
        print(f"shards: {args.shards}")
        print(f"peak_rss_mb: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
