"""Sharded recording on a local Ray cluster: throughput with 1 and 2 workers (1 thread each), side by side.

    python bench/scale.py             # 200k tokens of a 2×128 char-LSTM, 3 interleaved rounds
    python bench/scale.py --quick     # 40k tokens, 2 rounds

Prints ``metric: value`` lines, ratios first. Each round records the same corpus as 1 shard and as 2 shards
(``lstmviz.distributed.record_sharded``, every kind kept, the default match index and overview built), end to
end: the histogram probe, the tasks, the merge and the manifest; the cluster's start and a warm-up round (the
workers' first imports) are left out. ``in_process`` is ``record_corpus`` with one torch thread in this process,
the single-machine baseline. Linear scaling is a ratio of 2; on a machine whose cores are busy with other work,
the second worker has less than a core to itself.
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

    def sharded(k: int) -> float:
        out = tmp / f"s{k}"
        t = time.perf_counter()
        record_sharded(model, ids, out, shards=k, overwrite=True, cpus_per_shard=1, **opts)
        dt = time.perf_counter() - t
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
        times: dict[str, list[float]] = {"1": [], "2": [], "p": []}
        for _ in range(rounds):
            times["1"].append(sharded(1))
            times["2"].append(sharded(2))
            times["p"].append(in_process())
        one, two, alone = (statistics.median(times[k]) for k in ("1", "2", "p"))
        print(f"throughput_ratio_2_over_1_workers: {one / two:.2f}")
        print(f"time_ratio_1_worker_over_in_process: {one / alone:.2f}")
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
