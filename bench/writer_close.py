"""The writer alone, fed as a recording feeds it: how long its chunks take and how long :meth:`RunWriter.close`
makes the user wait after the last one.

    python bench/writer_close.py                      # 12 activations × 512 units, 50k tokens, 64 streams
    python bench/writer_close.py --tokens 200000 --rounds 3

Every activation of an LSTM 2×512 (i f g o c h of both layers) gets stream-major chunks (64 streams each own a
contiguous stretch of the corpus, 128 rows of each per chunk) of random float16 values, through
``write_blocks`` on this thread, with the recording's observers (the match indices and the overview). Prints
``metric: value`` lines, medians over rounds: ``writer_close_seconds`` (close(): what is left after the last
chunk), ``writer_chunks_seconds`` (every chunk's ``write_blocks``), the same in process CPU time (``_cpu_``:
on a loaded machine, the work done rather than the wait), their values/s, and the peak RSS of the
process (``writer_peak_rss_mb``, the first round's, when nothing before it was bigger). ``--resident-mb`` sets
how many MB of the mapped files' pages the chunks may leave resident (``store.writer.RESIDENT_BYTES``).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from lstmviz.analysis.match_pass import recording_observers
from lstmviz.store import Activation, RunWriter, tokens_frame, writer

KINDS = ("i", "f", "g", "o", "c", "h")


def one(n: int, units: int, streams: int, chunk: int, out: Path, seed: int) -> tuple[float, float, float, float]:
    """(seconds of every chunk, seconds of close, and the same in process CPU time) for one run of n tokens."""
    rng = np.random.default_rng(seed)
    acts = [Activation.from_name(f"rnn.l{layer}.fwd.{k}", units) for layer in (0, 1) for k in KINDS]
    pool = np.tanh(rng.normal(0, 1, (4, streams, chunk, units))).astype(np.float16)  # reused: no RNG in the timing
    L = -(-n // streams)
    chunks = chunks_cpu = 0.0
    w = RunWriter(out, tokens_frame([""] * n), acts, observers=recording_observers(n))
    for i, k in enumerate(range(0, L, chunk)):
        starts = np.arange(streams) * L + k
        counts = np.clip(np.minimum(n - starts, L - k), 0, chunk)
        for a in acts:
            t0, c0 = time.perf_counter(), time.process_time()
            w.write_blocks(a.name, starts, pool[i % 4], counts)
            chunks += time.perf_counter() - t0
            chunks_cpu += time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    w.close()
    return chunks, time.perf_counter() - t0, chunks_cpu, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=50_000)
    ap.add_argument("--units", type=int, default=512)
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--chunk", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tmp", default=None, help="where runs are written (default: the system temp dir)")
    ap.add_argument("--resident-mb", type=int, default=None, help="the writer's RESIDENT_BYTES, in MB")
    args = ap.parse_args()
    if args.resident_mb is not None:
        writer.RESIDENT_BYTES = args.resident_mb << 20
    values = args.tokens * args.units * 2 * len(KINDS)
    times = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as d:
        one(2 * args.chunk * args.streams, args.units, args.streams, args.chunk, Path(d) / "warm", 1)  # compile
        for r in range(args.rounds):
            times.append(one(args.tokens, args.units, args.streams, args.chunk, Path(d) / f"r{r}", r))
            if r == 0:
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    chunks, close, chunks_cpu, close_cpu = (statistics.median(t[k] for t in times) for k in range(4))
    print(f"writer_close_over_chunks: {close / chunks:.3f}")
    print(f"writer_close_seconds: {close:.3f}")
    print(f"writer_chunks_seconds: {chunks:.3f}")
    print(f"writer_close_cpu_seconds: {close_cpu:.3f}")
    print(f"writer_chunks_cpu_seconds: {chunks_cpu:.3f}")
    print(f"writer_values_per_second: {values / (chunks + close):.3e}")
    print(f"writer_peak_rss_mb: {rss:.0f}")
    print(f"values: {values}")


if __name__ == "__main__":
    main()
