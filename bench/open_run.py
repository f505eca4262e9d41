"""What open_run's checks cost: they read every listed file's parquet footer, never its values.

    nice python bench/open_run.py                   # builds /tmp/lstmviz-bench-open once, then reuses it
    nice python bench/open_run.py --tokens 50000    # smaller

Two runs with the same activations (6 × 128 units, the shape of a 1-layer LSTM) differ only in length: 1,000
tokens and ``--tokens``. A footer grows with row groups × columns, so the long run opens slower, but far less
than in proportion to its length. Rounds alternate between the two (and a read of one unit over the whole long
run, the cheapest real read a page makes); each metric is a ratio of medians. Prints ``metric: value`` lines,
ratios first.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import numpy as np

from lstmviz.store import Activation, RunWriter, open_run, tokens_frame

KINDS = ("i", "f", "g", "o", "c", "h")
UNITS = 128
BLOCK = 1 << 14


def build(path: Path, n_tokens: int) -> Path:
    """A run of ``n_tokens`` random tokens and 6 activations of random values (written once, then reused)."""
    if (path / "manifest.json").exists():
        return path
    rng = np.random.default_rng(0)
    acts = [Activation.from_name(f"rnn.l0.fwd.{k}", UNITS) for k in KINDS]
    with RunWriter(path, tokens_frame(list(rng.choice(list("abcdef "), n_tokens))), acts, overwrite=True) as w:
        for start in range(0, n_tokens, BLOCK):
            rows = min(BLOCK, n_tokens - start)
            for a in acts:
                w.write(a.name, start, rng.standard_normal((rows, UNITS), np.float32))
    return path


def manifest_only(path: Path) -> None:
    """What opening cost before the checks: the manifest parsed, each listed file's existence."""
    m = json.loads((path / "manifest.json").read_text())
    assert all((path / a["file"]).is_file() for a in m["activations"])


def timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/lstmviz-bench-open"))
    args = ap.parse_args()
    small = build(args.dir / "small", 1_000)
    large = build(args.dir / f"large-{args.tokens}", args.tokens)
    times: dict[str, list[float]] = {"small": [], "large": [], "read": [], "manifest": []}
    for _ in range(args.rounds):
        times["small"].append(timed(lambda: open_run(small)))
        times["large"].append(timed(lambda: open_run(large)))
        times["manifest"].append(timed(partial(manifest_only, large)))
        times["read"].append(timed(partial(open_run(large).activations, "rnn.l0.fwd.c", [7])))
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"open_run_long_over_short: {med['large'] / med['small']:.2f}")
    print(f"open_run_over_one_unit_read: {med['large'] / med['read']:.2f}")
    print(f"open_run_over_manifest_only_long: {med['large'] / med['manifest']:.1f}")
    print(f"open_run_ms_short: {med['small'] * 1e3:.2f}")
    print(f"open_run_ms_long: {med['large'] * 1e3:.2f}")
    print(f"one_unit_read_ms_long: {med['read'] * 1e3:.2f}")
    print(f"tokens_long_over_short: {args.tokens / 1000:.0f}")


if __name__ == "__main__":
    main()
