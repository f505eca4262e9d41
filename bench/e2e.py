"""End to end: ``record_corpus`` (corpus → parquet run with stats) against the model's plain forward.

    python bench/e2e.py                       # LSTM and GRU 2×512, 64 streams, 200k tokens, 3 rounds
    python bench/e2e.py --tokens 50000 --rounds 2
    python bench/e2e.py --only lstm --no-rss
    python bench/e2e.py --gates8 --record-threads 1   # also 8-bit gates, and recording on 1 torch thread
    python bench/e2e.py --tokens 50000 --cards-too --no-rss   # record without the unit cards and with them
    python bench/e2e.py --only lstm --cards-too --control --rounds 6 --no-rss --no-codecs   # and the noise floor

Prints ``metric: value`` lines, ratios first. "plain" is the char model's own forward (embedding, the 2-layer
recurrent module, the decoder) fed the same ``[streams, chunk]`` chunks with the recurrent state carried, under
``torch.inference_mode``; "record" is :func:`lstmviz.record_corpus` of every kind of every layer into a fresh run
directory, including stats, loss and top-5 columns. A ratio is the median over interleaved rounds of (record ÷
plain in the same round): a shared machine has slow spells that hit both runs of a round alike.

``writer_values_per_second`` is the values stored divided by the time recording adds to the plain forward (the
writer's own cost); ``e2e_values_per_second`` divides by the whole recording's time. ``cpu_time_over_plain`` is
the same ratio in process CPU time (all threads): on a machine shared with other jobs it says how much work the
recording adds, where wall time also says how much of it overlaps the forward. The codec lines rewrite one
activation of each kind with each parquet codec (this is how ``store.COMPRESSION`` was chosen). ``--gates8`` adds
the same lines for a recording with 8-bit gates (``_gates8``), ``--record-threads N`` for one whose forward runs
on N torch threads (``_threadsN``) and for the plain forward on N threads (``_plain_threadsN``, whose writer
lines mean nothing), each interleaved with the others in every round. With ``--record-threads``, the default
recording is also set against the plain forward on N threads (``e2e_*_over_plain_threadsN``, and the writer's
values/s over that forward): on 2 cores a recording's forward runs on 1 thread beside the writer's, and on a
loaded machine a plain forward on 2 threads can be far slower than on 1 (its threads wait for each other).
``--cards-too`` records without the unit cards (the plain lines) and with them (``_cards``, what a recording
does by default; without ``--cards-too`` the plain lines are the default recording);
``e2e_<model>_cards_over_record`` is the cost of the cards, the median of the two recordings' ratio in each round
(``_lowest`` and ``_highest``: the extreme rounds). ``--control`` records the default recording twice in each round
(``_again``): its ratio to the first is the noise floor of every ``_over_record`` line.
``write_floor_seconds`` writes the default recording's activation bytes into a fresh file with plain sequential
writes, once per round, and ``e2e_*_over_plain_plus_write_floor`` sets each recording against the plain forward
plus that: on a virtual machine whose fresh memory is slow to touch, the page cache the files fill is a floor of
its own. The order of the runs in a round is a row of a Williams square (:func:`balanced`). Every timed run starts
with no other run on disk and no page left to write back (:func:`fresh`): on this project's virtual machines a
recording beside another run's cached files, or during its writeback, took up to twice the kernel time, which
swamped what the bench compares. The peak-RSS lines record a quarter of the tokens and all of them in fresh
processes, and with ``--rss-4x`` also 4× them: the mapped files' pages are dropped from the resident set only once
the bytes written reach the size of the pages being filled (1.6 GB for these models at 64 streams), so a short
recording holds all of its file and a long one at most twice that much.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from torch import nn

import lstmviz


class Char(nn.Module):
    """A char-rnn: embedding ``[B, T] → [B, T, 64]``, a 2-layer recurrent module, a decoder to 96 logits."""

    def __init__(self, cell: str, hidden: int):
        super().__init__()
        self.embed = nn.Embedding(96, 64)
        self.rnn = getattr(nn, cell)(64, hidden, 2, batch_first=True)
        self.decoder = nn.Linear(hidden, 96)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.rnn(self.embed(ids))[0])


def plain(model: Char, ids: np.ndarray, streams: int, chunk: int) -> None:
    """The model's own forward over ``ids`` split into contiguous streams, state carried chunk to chunk."""
    L = -(-len(ids) // streams)
    x = torch.zeros(streams * L, dtype=torch.long)
    x[: len(ids)] = torch.from_numpy(ids)
    x = x.reshape(streams, L)
    state = None
    with torch.inference_mode():
        for k in range(0, L, chunk):
            y, state = model.rnn(model.embed(x[:, k : k + chunk]), state)
            model.decoder(y)


def record(model: Char, ids: np.ndarray, streams: int, chunk: int, out: Path, threads: int = 0, **kw) -> Path:
    """record_corpus into ``out`` (emptied first: call :func:`fresh` before timing); ``threads`` > 0 runs it with
    that many torch threads (the plain forward keeps the default), to measure where the writer's thread should sit
    on a machine the forward already fills."""
    shutil.rmtree(out, ignore_errors=True)
    return with_threads(
        threads, lstmviz.record_corpus, model, ids, out, streams=streams, chunk=chunk, progress=False, **kw
    )


def fresh(out: Path) -> None:
    """Remove the run ``out`` and write every dirty page back, before a timed run: deleting a run's files and the
    kernel's writeback of the last run's are work that the next timed run would otherwise pay for, more for some
    runs than for others."""
    shutil.rmtree(out, ignore_errors=True)
    os.sync()


def with_threads(threads: int, fn, *args, **kw):
    """``fn(*args, **kw)`` with ``threads`` torch threads (0: as they are)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        return fn(*args, **kw)
    finally:
        torch.set_num_threads(before)


def case(
    cell: str,
    tokens: int,
    rounds: int,
    streams: int,
    chunk: int,
    hidden: int,
    tmp: Path,
    variants: dict[str, dict],
    with_codecs: bool = True,
) -> dict[str, dict]:
    """Interleaved rounds of plain and each recording variant (name → record() keywords) for one model; per
    variant its ratios and throughput, and (``with_codecs``) the codec lines of the default recording."""
    torch.manual_seed(0)
    model = Char(cell, hidden).eval()
    ids = np.random.default_rng(0).integers(0, 96, tokens)
    plain(model, ids[: streams * chunk * 2], streams, chunk)  # warm up: first-touch of torch's buffers, numba load
    for kw in (kw for kw in variants.values() if "plain_threads" not in kw):
        record(model, ids[: streams * chunk * 2], streams, chunk, tmp / "warm", **kw)
    shutil.rmtree(tmp / "warm")
    times: dict[str, list[float]] = {k: [] for k in ("plain", *variants)}
    cpu: dict[str, list[float]] = {k: [] for k in times}
    sizes: dict[str, tuple[int, int]] = {}
    floor: list[float] = []
    codec: dict[str, float] = {}
    for r in range(rounds):
        for k in balanced(list(times), r):
            fresh(tmp / "run")  # one run on disk at a time, as for a user who records again
            t0, c0 = time.perf_counter(), time.process_time()
            if k == "plain":
                plain(model, ids, streams, chunk)
            elif "plain_threads" in variants[k]:
                with_threads(variants[k]["plain_threads"], plain, model, ids, streams, chunk)
            else:
                path = record(model, ids, streams, chunk, tmp / "run", **variants[k])
            times[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
            if "plain_threads" not in variants.get(k, {"plain_threads": 0}):
                run = lstmviz.open_run(path)
                values = sum(run.units(n) for n in run.names) * tokens
                sizes[k] = (values, sum(f.stat().st_size for f in (run.path / "acts").iterdir()))
                if k == "record" and with_codecs and not codec:
                    codec = codecs(run, tmp)
        fresh(tmp / "run")
        floor.append(write_floor(sizes["record"][1], tmp))
    out: dict[str, dict] = {}
    for k in variants:
        values, size = sizes.get(k, sizes["record"])
        extra = np.subtract(times[k], times["plain"])
        out[k] = {
            "ratio": float(np.median(np.divide(times[k], times["plain"]))),
            "over_record": float(np.median(np.divide(times[k], times["record"]))),
            "over_record_lo": float(np.min(np.divide(times[k], times["record"]))),
            "over_record_hi": float(np.max(np.divide(times[k], times["record"]))),
            "cpu_over_record": float(np.median(np.divide(cpu[k], cpu["record"]))),
            "cpu_ratio": float(np.median(np.divide(cpu[k], cpu["plain"]))),
            "writer_vps": float(values / max(np.median(extra), 1e-9)),
            "e2e_vps": float(values / np.median(times[k])),
            "bytes_per_value": size / values,
            "plain_s": float(np.median(times["plain"])),
            "record_s": float(np.median(times[k])),
            "write_ratio": float(np.median(np.divide(times[k], np.add(times["plain"], floor)))),
            "write_s": float(np.median(floor)),
        }
    for k in (k for k in variants if "plain_threads" in variants[k]):  # the recording against a plain forward
        values = sizes["record"][0]  # on the threads the recording's own forward had
        out["record"][f"over_{k}"] = float(np.median(np.divide(times["record"], times[k])))
        out["record"][f"writer_vps_{k}"] = float(values / max(np.median(np.subtract(times["record"], times[k])), 1e-9))
    out["codecs"] = codec
    return out


def balanced(runs: list[str], r: int) -> list[str]:
    """Round r's order of ``runs``: row r of a Williams square, so that over n rounds (2n for an odd n) each run
    comes first, and comes after each other run, equally often (a slow spell one run leaves falls on every other)."""
    n = len(runs)
    base = [0] + [(j + 1) // 2 if j % 2 else n - j // 2 for j in range(1, n)]
    row = [runs[(b + r) % n] for b in base]
    return row[::-1] if n % 2 and (r // n) % 2 else row


def write_floor(size: int, tmp: Path) -> float:
    """Seconds to write ``size`` bytes into a fresh file with plain sequential writes from one reused buffer: what
    the page cache and the disk cost the activation files alone, measured in the same round."""
    buf = np.random.default_rng(0).integers(0, 256, 16 << 20, dtype=np.uint8).tobytes()
    path = tmp / "floor.bin"
    t0 = time.perf_counter()
    with open(path, "wb", buffering=0) as f:
        for at in range(0, size, len(buf)):
            f.write(buf[: min(len(buf), size - at)])
    seconds = time.perf_counter() - t0
    path.unlink()
    return seconds


def codecs(run: lstmviz.Run, tmp: Path) -> dict[str, float]:
    """Each codec's bytes per value and encoding speed (values/s, one thread) on one activation of each kind."""
    out: dict[str, float] = {}
    for name in {run.info(n)["kind"]: n for n in run.names}.values():
        table = pq.read_table(run.path / run.info(name)["file"])
        values = table.num_rows * table.num_columns
        for codec in ("none", "lz4", "zstd"):
            t0 = time.perf_counter()
            pq.write_table(table, tmp / "codec.parquet", compression=codec, use_dictionary=False,
                           write_statistics=False, row_group_size=16384)  # fmt: skip
            seconds = time.perf_counter() - t0
            kind = run.info(name)["kind"]
            out[f"{kind}_{codec}_bytes_per_value"] = (tmp / "codec.parquet").stat().st_size / values
            out[f"{kind}_{codec}_encode_values_per_second"] = values / seconds
    (tmp / "codec.parquet").unlink(missing_ok=True)
    return out


RSS_CHILD = """
import resource, sys, tempfile, numpy as np, torch
sys.path.insert(0, sys.argv[3])
from e2e import Char, record
from pathlib import Path
torch.manual_seed(0)
ids = np.random.default_rng(0).integers(0, 96, int(sys.argv[1]))
with tempfile.TemporaryDirectory(dir=sys.argv[2]) as d:
    record(Char("LSTM", 512).eval(), ids, 64, 128, Path(d) / "run")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_mb(tokens: int, tmp: Path) -> float:
    """Peak resident memory of a fresh process recording ``tokens`` tokens (LSTM 2×512, all kinds)."""
    args = [sys.executable, "-c", RSS_CHILD, str(tokens), str(tmp), str(Path(__file__).parent)]
    res = subprocess.run(args, capture_output=True, text=True, check=True)
    return int(res.stdout.split()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--chunk", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--only", nargs="*", choices=["lstm", "gru"], help="models to run (default: both)")
    ap.add_argument("--no-rss", action="store_true", help="skip the peak-RSS subprocesses")
    ap.add_argument("--rss-4x", action="store_true", help="also the peak RSS of a recording of 4× the tokens")
    ap.add_argument("--tmp", default=None, help="where runs are written (default: the system temp dir)")
    ap.add_argument("--gates8", action="store_true", help="also record with 8-bit gates (the *_gates8 lines)")
    ap.add_argument("--record-threads", type=int, nargs="*", default=[], help="also record with N torch threads")
    ap.add_argument("--no-codecs", action="store_true", help="skip the codec lines")
    ap.add_argument("--cards-too", action="store_true", help="record without and with the unit cards (*_cards lines)")
    ap.add_argument("--control", action="store_true", help="record the default twice (*_again lines): the noise")
    args = ap.parse_args()
    cells = {"lstm": "LSTM", "gru": "GRU"}
    only = args.only or list(cells)
    variants: dict[str, dict] = {"record": {}}
    if args.gates8:
        variants["gates8"] = {"gates": "8bit"}
    if args.cards_too:  # side by side: the recording without the cards, and with them
        variants["record"] = {"cards": False}
        variants["cards"] = {"cards": True}
    if args.control:  # the same recording again: its ratio to the first is what the bench cannot tell from 1
        variants["again"] = dict(variants["record"])
    for n in args.record_threads:
        variants[f"threads{n}"] = {"threads": n}
        variants[f"plain_threads{n}"] = {"plain_threads": n}
    tag = {v: "" if v == "record" else f"_{v}" for v in variants}
    with tempfile.TemporaryDirectory(dir=args.tmp) as d:
        tmp = Path(d)
        res = {}
        for k in only:
            res[k] = case(cells[k], args.tokens, args.rounds, args.streams, args.chunk, args.hidden, tmp, variants,
                          not args.no_codecs)  # fmt: skip
        for k, r in res.items():
            for key in (key for key in r["record"] if key.startswith("over_plain_threads")):
                print(f"e2e_{k}_{key}: {r['record'][key]:.3f}")
            for v in variants:
                if v != "record" and "plain_threads" not in variants[v]:
                    print(f"e2e_{k}{tag[v]}_over_record: {r[v]['over_record']:.3f}")
                    print(f"e2e_{k}{tag[v]}_over_record_lowest: {r[v]['over_record_lo']:.3f}")
                    print(f"e2e_{k}{tag[v]}_over_record_highest: {r[v]['over_record_hi']:.3f}")
                    print(f"e2e_{k}{tag[v]}_cpu_time_over_record: {r[v]['cpu_over_record']:.3f}")
        for key, label in (
            ("ratio", "over_plain"),
            ("write_ratio", "over_plain_plus_write_floor"),
            ("cpu_ratio", "cpu_time_over_plain"),
        ):
            for k, r in res.items():
                for v in variants:
                    print(f"e2e_{k}{tag[v]}_{label}: {r[v][key]:.3f}")
        for k, r in res.items():
            for v in variants:
                print(f"{k}{tag[v]}_writer_values_per_second: {r[v]['writer_vps']:.3e}")
                for key in (key for key in r[v] if key.startswith("writer_vps_")):
                    print(f"{k}{tag[v]}_writer_values_per_second_over_{key[11:]}: {r[v][key]:.3e}")
                print(f"{k}{tag[v]}_e2e_values_per_second: {r[v]['e2e_vps']:.3e}")
                print(f"{k}{tag[v]}_bytes_per_value: {r[v]['bytes_per_value']:.3f}")
                print(f"{k}{tag[v]}_record_seconds: {r[v]['record_s']:.3f}")
            print(f"{k}_plain_seconds: {r['record']['plain_s']:.3f}")
            print(f"{k}_write_floor_seconds: {r['record']['write_s']:.3f}")
            for metric, value in r["codecs"].items():
                print(f"{k}_{metric}: {value:.3f}" if "bytes" in metric else f"{k}_{metric}: {value:.3e}")
        if not args.no_rss:
            small, big = peak_rss_mb(args.tokens // 4, tmp), peak_rss_mb(args.tokens, tmp)
            print(f"peak_rss_full_over_quarter: {big / small:.3f}")
            print(f"peak_rss_quarter_mb: {small:.0f}")
            print(f"peak_rss_full_mb: {big:.0f}")
            if args.rss_4x:
                four = peak_rss_mb(4 * args.tokens, tmp)
                print(f"peak_rss_4x_over_full: {four / big:.3f}")
                print(f"peak_rss_4x_mb: {four:.0f}")
    print(f"tokens: {args.tokens}")
    print(f"threads: {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
