"""Recording speed against the plain forward, side by side in one process.

    python bench/record.py                 # all cases (a few minutes on 2 cores)
    python bench/record.py --quick         # smaller sizes
    python bench/record.py --threads 1     # pin torch to one thread (a busy machine)

Prints ``metric: value`` lines, ratios first. "plain" is the model's own forward with no capture, fed the same
chunks with its state carried; "lstmviz" records every gate, c and h of every layer; "naive" is a Python loop
over nn.LSTMCell / nn.GRUCell keeping the gates (the approach people write by hand). "loop_without_jit" is the
LSTM step loop with its compiled pointwise update (lstmviz/kernels/compiled.py) switched off, torch ops in its place.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lstmviz.recorder import Recorder


def plain(module: nn.RNNBase, x: torch.Tensor, chunk: int) -> None:
    """x ``[S, N, I]`` fed ``chunk`` steps at a time with the state carried."""
    state = None
    for k in range(0, x.shape[1], chunk):
        _, state = module(x[:, k : k + chunk], state)


def lstmviz_record(module: nn.RNNBase, x: torch.Tensor, chunk: int, strategy: str) -> None:
    with Recorder(module, strategy=strategy, carry=True, reuse_buffers=True) as rec:
        for k in range(0, x.shape[1], chunk):
            rec.new_cache()
            module(x[:, k : k + chunk])


def without_jit(fn) -> None:
    """Run ``fn`` with the step loop's compiled cell update switched off (torch ops instead)."""
    before = os.environ.get("LSTMVIZ_NO_JIT")
    os.environ["LSTMVIZ_NO_JIT"] = "1"
    try:
        fn()
    finally:
        if before is None:
            del os.environ["LSTMVIZ_NO_JIT"]
        else:
            os.environ["LSTMVIZ_NO_JIT"] = before


def naive(module: nn.RNNBase, x: torch.Tensor, chunk: int) -> None:
    """Per-token Python loop over LSTMCell/GRUCell per layer, gates recomputed from the cell's inputs."""
    is_lstm = isinstance(module, nn.LSTM)
    H = module.hidden_size
    cells = []
    for layer in range(module.num_layers):
        cell = (nn.LSTMCell if is_lstm else nn.GRUCell)(module.input_size if layer == 0 else H, H)
        cell.load_state_dict(
            {k.replace(f"_l{layer}", ""): v for k, v in module.state_dict().items() if k.endswith(f"_l{layer}")}
        )
        cells.append(cell)
    S = x.shape[0]
    state = [(torch.zeros(S, H), torch.zeros(S, H)) for _ in cells]
    for t in range(x.shape[1]):
        inp = x[:, t]
        for layer, cell in enumerate(cells):
            gates = inp @ cell.weight_ih.t() + cell.bias_ih + state[layer][0] @ cell.weight_hh.t() + cell.bias_hh
            gates.sigmoid()  # what a hand-written recorder keeps
            if is_lstm:
                state[layer] = cell(inp, state[layer])
            else:
                h = cell(inp, state[layer][0])
                state[layer] = (h, h)
            inp = state[layer][0]


def interleaved(fns: dict[str, object], repeat: int) -> dict[str, list[float]]:
    """Wall times of each zero-argument function, run in turn ``repeat`` times (so load hits all alike)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def speed(cell: str, streams: int, tokens: int, chunk: int, hidden: int, with_naive: bool) -> dict[str, float]:
    """Each way of running ``cell`` over the same input, as a ratio to the plain forward.

    A ratio is the median over rounds of (its time ÷ plain's time in the same round): a shared machine has slow
    spells lasting seconds, which hit both runs of a round alike and cancel in the ratio.
    """
    torch.manual_seed(0)
    module = getattr(nn, cell)(hidden, hidden, 2, batch_first=True).eval()
    x = torch.randn(streams, tokens // streams, hidden)
    fns = {"plain": lambda: plain(module, x, chunk)}
    for strategy in ("auto", "replay", "loop"):
        fns[strategy] = lambda s=strategy: lstmviz_record(module, x, chunk, s)
    if cell == "LSTM":
        fns["loop_nojit"] = lambda: without_jit(lambda: lstmviz_record(module, x, chunk, "loop"))
    with torch.inference_mode():
        times = interleaved(fns, repeat=7)
        out = {k: float(np.median(np.divide(v, times["plain"]))) for k, v in times.items() if k != "plain"}
        if with_naive:  # one round: it is 10× slower, and far from the line
            naive_s = interleaved({"naive": lambda: naive(module, x, chunk)}, repeat=1)["naive"][0]
            out["naive"] = naive_s / min(times["plain"])
    out["plain_s"] = min(times["plain"])
    return out


def disk_and_throughput(tokens: int, hidden: int) -> tuple[float, float]:
    """Bytes on disk per recorded value, and recorded values per second end to end (record_corpus)."""
    import lstmviz

    class Char(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(96, 64)
            self.rnn = nn.LSTM(64, hidden, 2, batch_first=True)
            self.decoder = nn.Linear(hidden, 96)

        def forward(self, ids):
            return self.decoder(self.rnn(self.embed(ids))[0])

    torch.manual_seed(0)
    model = Char().eval()
    ids = np.random.default_rng(0).integers(0, 96, tokens)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        run = lstmviz.open_run(lstmviz.record_corpus(model, ids, Path(d) / "run", progress=False))
        seconds = time.perf_counter() - t0
        values = sum(run.units(n) for n in run.names) * tokens
        size = sum(f.stat().st_size for f in (run.path / "acts").iterdir())
    return size / values, values / seconds


RSS_CHILD = """
import resource, sys, tempfile, numpy as np, torch, lstmviz
from torch import nn
torch.manual_seed(0)
class Char(nn.Module):
    def __init__(self):
        super().__init__(); self.embed = nn.Embedding(96, 32); self.rnn = nn.LSTM(32, 64, 2, batch_first=True)
        self.decoder = nn.Linear(64, 96)
    def forward(self, ids):
        return self.decoder(self.rnn(self.embed(ids))[0])
ids = np.random.default_rng(0).integers(0, 96, int(sys.argv[1]))
with tempfile.TemporaryDirectory() as d:
    lstmviz.record_corpus(Char().eval(), ids, d + "/run", progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_mb(tokens: int) -> float:
    res = subprocess.run([sys.executable, "-c", RSS_CHILD, str(tokens)], capture_output=True, text=True, check=True)
    return int(res.stdout.split()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--only", nargs="*", help="case names to run, e.g. lstm_64streams (default: all)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    scale = 0.2 if args.quick else 1.0
    cases = [
        ("lstm_64streams", "LSTM", 64, int(102_400 * scale), 128, 512, False),
        ("lstm_batch1", "LSTM", 1, int(10_000 * scale), 10_000, 512, True),
        ("gru_64streams", "GRU", 64, int(102_400 * scale), 128, 512, False),
        ("gru_batch1", "GRU", 1, int(10_000 * scale), 10_000, 512, True),
    ]
    only = [c for c in cases if not args.only or c[0] in args.only]
    results = {case: speed(*spec) for case, *spec in only}
    for case, r in results.items():
        print(f"{case}_lstmviz_over_plain: {r['auto']:.3f}")
    for case, r in results.items():
        print(f"{case}_replay_over_plain: {r['replay']:.3f}")
        print(f"{case}_loop_over_plain: {r['loop']:.3f}")
        if "loop_nojit" in r:
            print(f"{case}_loop_without_jit_over_plain: {r['loop_nojit']:.3f}")
        if "naive" in r:
            print(f"{case}_naive_over_plain: {r['naive']:.3f}")
        print(f"{case}_plain_seconds: {r['plain_s']:.3f}")
    bpv, vps = disk_and_throughput(int(20_000 * scale), 256)
    print(f"disk_bytes_per_value: {bpv:.3f}")
    print(f"write_values_per_second: {vps:.3e}")
    small, big = peak_rss_mb(100_000), peak_rss_mb(1_000_000)
    print(f"peak_rss_1M_over_100k: {big / small:.3f}")
    print(f"peak_rss_100k_mb: {small:.0f}")
    print(f"peak_rss_1M_mb: {big:.0f}")
    print(f"threads: {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
