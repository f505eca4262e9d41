"""Sharded recording on a local Ray cluster: throughput with 1 and 2 workers (1 thread each), side by side.

    python bench/scale.py             # 200k tokens of a 2×128 char-LSTM, 3 interleaved rounds
    python bench/scale.py --quick     # 40k tokens, 2 rounds

Prints ``metric: value`` lines, ratios first. Each round records the same corpus as 1 shard and as 2 shards
(``lstmviz.distributed.record_sharded``, every kind kept, the default match index and overview built), end to
end: the histogram probe, the tasks, the merge and the manifest; the cluster's start and a warm-up round (the
workers' first imports) are left out. ``in_process`` is ``record_corpus`` with one torch thread in this process,
the single-machine baseline. Linear scaling is a ratio of 2 when each worker has the cores it uses; a worker
records on two threads (torch's and the writer's), so on a 2-core machine one worker already keeps more than one
core busy and two cannot double it. The machine's busy cores during each recording (from ``/proc/stat``, all
processes) are printed too, and ``per_core_throughput_ratio_2_over_1`` (tokens per busy core-second, 2 workers
over 1) tells whether sharding itself adds work: 1.0 is linear in the cores used.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lstmviz.corpus import record_corpus
from lstmviz.distributed import record_sharded
from lstmviz.models.charrnn import CharRNN, CharRNNConfig


def busy_seconds() -> float:
    """CPU seconds that all of this machine's cores have spent busy since boot (``/proc/stat``: all but idle
    and iowait)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tokens", type=int)
    ap.add_argument("--rounds", type=int)
    args = ap.parse_args()
    n = args.tokens or (40_000 if args.quick else 200_000)
    rounds = args.rounds or (2 if args.quick else 3)

    import ray

    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    torch.manual_seed(0)
    model = CharRNN(CharRNNConfig("lstm", 64, hidden=128, layers=2, embed=32)).eval()
    ids = np.random.default_rng(0).integers(0, 64, n)
    tmp = Path(tempfile.mkdtemp(prefix="lstmviz-scale-"))
    opts = dict(streams=16, chunk=256, device="cpu", progress=False)

    busy: dict[int, list[float]] = {1: [], 2: []}

    def sharded(k: int) -> float:
        out = tmp / f"s{k}"
        t, b = time.perf_counter(), busy_seconds()
        record_sharded(model, ids, out, shards=k, overwrite=True, cpus_per_shard=1, **opts)
        dt = time.perf_counter() - t
        busy[k].append((busy_seconds() - b) / dt)
        shutil.rmtree(out)
        return dt

    def in_process() -> float:
        out = tmp / "p"
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        t = time.perf_counter()
        record_corpus(model, ids, out, overwrite=True, **opts)
        dt = time.perf_counter() - t
        torch.set_num_threads(threads)
        shutil.rmtree(out)
        return dt

    try:
        sharded(2)  # warm-up: both workers import torch and lstmviz once
        busy[2].clear()
        times: dict[str, list[float]] = {"1": [], "2": [], "p": []}
        for _ in range(rounds):
            times["1"].append(sharded(1))
            times["2"].append(sharded(2))
            times["p"].append(in_process())
        one, two, alone = (statistics.median(times[k]) for k in ("1", "2", "p"))
        print(f"throughput_ratio_2_over_1_workers: {one / two:.2f}")
        cores1, cores2 = statistics.median(busy[1]), statistics.median(busy[2])
        print(f"per_core_throughput_ratio_2_over_1: {(one * cores1) / (two * cores2):.2f}")
        print(f"time_ratio_1_worker_over_in_process: {one / alone:.2f}")
        print(f"busy_cores_1_worker: {cores1:.2f}")
        print(f"busy_cores_2_workers: {cores2:.2f}")
        print(f"cores: {os.cpu_count()}")
        print(f"tokens_per_s_1_worker: {n / one:.0f}")
        print(f"tokens_per_s_2_workers: {n / two:.0f}")
        print(f"tokens_per_s_in_process_1_thread: {n / alone:.0f}")
        print(f"tokens: {n}")
        print(f"rounds: {rounds}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        ray.shutdown()


if __name__ == "__main__":
    main()
