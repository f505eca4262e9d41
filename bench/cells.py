"""Recording models built on step cells and on tapped custom cells, against their own forward, side by side.

    python bench/cells.py              # all cases (a minute or two on 2 cores)
    python bench/cells.py --quick      # smaller sizes, fewer rounds
    python bench/cells.py --threads 1  # pin torch to one thread (a busy machine)

Prints ``metric: value`` lines, ratios first. A ratio is the median over interleaved rounds of (its time ÷ the
plain time of the same round). "plain" is the model's own forward over the same chunks, its state carried by
the model; "record" is the same loop inside a Recorder that keeps every gate, c and h (carry=True, as
record_corpus runs it); "record_corpus" writes a whole run directory. The step loop is the user's Python, so the
floor here is the model's own forward, not torch's fused nn.LSTM.

``tap_noop_ns`` is what one ``lstmviz.tap`` call costs when nothing records, and ``taps_not_recording_over_plain``
the LayerNorm-LSTM's forward with its six taps against the same forward with the taps written as plain
assignments.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import timeit
from pathlib import Path

import numpy as np
import torch
from torch import nn

import lstmviz
from lstmviz.recorder import Recorder


def _same(module, kind, t, gate=False):
    return t


class LayerNormLSTMCell(nn.Module):
    """LSTM with layer norm on the gate pre-activations and on c; ``tap`` is lstmviz.tap or a plain pass-through."""

    def __init__(self, input_size: int, hidden: int, tap=lstmviz.tap):
        super().__init__()
        self.hidden, self.tap = hidden, tap
        self.ih, self.hh = nn.Linear(input_size, 4 * hidden), nn.Linear(hidden, 4 * hidden, bias=False)
        self.norm_gates, self.norm_c = nn.LayerNorm(4 * hidden), nn.LayerNorm(hidden)

    def forward(self, x, hx=None):
        h, c = hx if hx is not None else (x.new_zeros(x.shape[0], self.hidden),) * 2
        i, f, g, o = self.norm_gates(self.ih(x) + self.hh(h)).chunk(4, 1)
        tap = self.tap
        i, f, o = (
            tap(self, "i", i.sigmoid(), gate=True),
            tap(self, "f", f.sigmoid(), gate=True),
            tap(self, "o", o.sigmoid(), gate=True),
        )
        g = tap(self, "g", g.tanh())
        c = tap(self, "c", f * c + i * g)
        h = tap(self, "h", o * self.norm_c(c).tanh())
        return h, c


class Stepped(nn.Module):
    """Embedding → a cell stepped token by token → decoder, as an attention decoder steps its cell."""

    def __init__(self, cell: nn.Module, vocab: int, embed: int):
        super().__init__()
        self.embed, self.cell = nn.Embedding(vocab, embed), cell
        self.decoder = nn.Linear(cell.hidden_size if hasattr(cell, "hidden_size") else cell.hidden, vocab)

    def forward(self, ids, hx=None):
        x, hs = self.embed(ids), []
        for t in range(ids.shape[1]):
            hx = self.cell(x[:, t], hx)
            hs.append(hx[0] if isinstance(hx, tuple) else hx)
        return self.decoder(torch.stack(hs, 1)), hx


def plain(model: Stepped, ids: torch.Tensor, chunk: int) -> None:
    hx = None
    for k in range(0, ids.shape[1], chunk):
        _, hx = model(ids[:, k : k + chunk], hx)


def record(model: Stepped, ids: torch.Tensor, chunk: int) -> None:
    with Recorder(model, carry=True, reuse_buffers=True) as rec:
        for k in range(0, ids.shape[1], chunk):
            rec.new_cache()
            model(ids[:, k : k + chunk])


def corpus(model: Stepped, ids: torch.Tensor, chunk: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        lstmviz.record_corpus(
            model,
            ids.reshape(-1),
            Path(d) / "run",
            streams=ids.shape[0],
            chunk=chunk,
            device="cpu",
            progress=False,
            call=lambda m, x: m(x)[0],
        )


def interleaved(fns: dict, repeat: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return times


def ratios(fns: dict, repeat: int) -> dict[str, float]:
    for fn in fns.values():  # warm: packed weights, numba, allocator
        fn()
    times = interleaved(fns, repeat)
    out = {k: float(np.median(np.divide(v, times["plain"]))) for k, v in times.items() if k != "plain"}
    out["plain_s"] = float(np.median(times["plain"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    hidden, tokens, chunk, repeat = (128, 4096, 64, 3) if args.quick else (256, 16384, 128, 5)
    vocab, embed = 96, 64
    lines = {}
    with torch.inference_mode():
        for streams in (1, 32):
            T = tokens // streams
            ids = torch.randint(0, vocab, (streams, T))
            for name, make in (
                ("lstmcell", lambda: nn.LSTMCell(embed, hidden)),
                ("grucell", lambda: nn.GRUCell(embed, hidden)),
                ("layernorm_tapped", lambda: LayerNormLSTMCell(embed, hidden)),
            ):
                model = Stepped(make(), vocab, embed).eval()
                r = ratios(
                    {
                        "plain": lambda m=model, x=ids: plain(m, x, chunk),
                        "record": lambda m=model, x=ids: record(m, x, chunk),
                        "corpus": lambda m=model, x=ids: corpus(m, x, chunk),
                    },
                    repeat,
                )
                lines[f"{name}_b{streams}_record_over_plain"] = r["record"]
                lines[f"{name}_b{streams}_record_corpus_over_plain"] = r["corpus"]
                lines[f"{name}_b{streams}_plain_seconds"] = r["plain_s"]
        x = torch.randn(32, embed)
        tapped = LayerNormLSTMCell(embed, hidden)
        untapped = LayerNormLSTMCell(embed, hidden, tap=_same)
        untapped.load_state_dict(tapped.state_dict())
        r = ratios(
            {"plain": lambda: [untapped(x) for _ in range(200)], "tapped": lambda: [tapped(x) for _ in range(200)]},
            repeat * 3,
        )
    t = torch.zeros(1)
    n = 200_000
    tap_s = min(timeit.repeat(lambda: lstmviz.tap(tapped, "f", t), number=n, repeat=5)) / n
    same_s = min(timeit.repeat(lambda: _same(tapped, "f", t), number=n, repeat=5)) / n
    ratio_keys = [k for k in lines if "_over_" in k]
    print(f"taps_not_recording_over_plain: {r['tapped']:.3f}")
    for k in ratio_keys:
        print(f"{k}: {lines[k]:.3f}")
    print(f"tap_noop_ns: {tap_s * 1e9:.0f}")
    print(f"python_call_ns: {same_s * 1e9:.0f}")
    for k in lines:
        if k not in ratio_keys:
            print(f"{k}: {lines[k]:.3f}")
    print(f"threads: {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
