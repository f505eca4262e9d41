"""The writer's stats and its files written in place: exact against numpy over the stored values, NaN, inf too."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
import torch
from tiny_models import TinyCharModel
from torch import nn

import lstmviz
from lstmviz.store import HIGH, HIST_BINS, LOW, RunWriter, tokens_frame


def direct_stats(x: np.ndarray, lo: float, hi: float) -> dict[str, np.ndarray]:
    """The stats of float32 ``[tokens, units]`` computed plainly: moments/min/max/hist over the finite values."""
    fin = np.isfinite(x)
    xf = np.where(fin, x, 0).astype(np.float64)
    n = fin.sum(0)
    mean = xf.sum(0) / np.maximum(n, 1)
    bins = np.clip((x - lo) * np.float32(HIST_BINS / (hi - lo)), 0, HIST_BINS - 1)
    hist = np.stack([np.bincount(bins[fin[:, u], u].astype(np.int64), minlength=HIST_BINS) for u in range(x.shape[1])])
    return {
        "mean": np.where(n > 0, mean, np.nan),
        "std": np.where(n > 0, np.sqrt(np.maximum((xf**2).sum(0) / np.maximum(n, 1) - mean**2, 0)), np.nan),
        "min": np.where(n > 0, np.where(fin, x, np.inf).min(0), np.nan),
        "max": np.where(n > 0, np.where(fin, x, -np.inf).max(0), np.nan),
        "n_low": (x < LOW).sum(0),
        "n_high": (x > HIGH).sum(0),
        "n_nan": np.isnan(x).sum(0),
        "n_inf": np.isinf(x).sum(0),
        "hist": hist,
    }


def assert_stats_match(run: lstmviz.Run) -> None:
    for name in run.names:
        x = run.activations(name)
        s = run.stats[run.stats["name"] == name].sort_values("unit")
        want = direct_stats(x, float(s["hist_lo"].iloc[0]), float(s["hist_hi"].iloc[0]))
        assert (s["count"] == len(x)).all()
        for col in ("n_low", "n_high", "n_nan", "n_inf", "min", "max"):
            np.testing.assert_array_equal(s[col].to_numpy(), want[col], err_msg=f"{name} {col}")
        np.testing.assert_allclose(s["mean"], want["mean"], rtol=1e-9, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(s["std"], want["std"], rtol=1e-6, atol=1e-9, err_msg=name)
        np.testing.assert_array_equal(np.stack(s["hist"]), want["hist"], err_msg=name)


def awkward_values(rng: np.random.Generator, T: int) -> dict[str, np.ndarray]:
    """Gates with exact 0.1 / 0.9 ties and float16 denormals; an unbounded kind with NaN, ±inf, −0 and a unit
    that is never finite; values on the histogram's bin edges."""
    gate = 1 / (1 + np.exp(-rng.normal(0, 3, (T, 7))))
    gate[::7, 0] = 0.1
    gate[::5, 1] = 0.9
    gate[::3, 2] = 3e-7  # a float16 denormal
    gate[:, 3] = np.arange(T) % (HIST_BINS + 1) / HIST_BINS  # every bin edge
    c = rng.normal(0, 4, (T, 5))
    c[::11, 0] = np.nan
    c[::13, 1] = np.inf
    c[::17, 1] = -np.inf
    c[::2, 2] = -0.0
    c[:, 3] = np.nan
    c[5, 4] = 1e6  # overflows float16 to inf
    return {"rnn.l0.fwd.f": gate, "rnn.l0.fwd.c": c}


def test_stats_equal_numpy_with_ties_denormals_nan_and_inf(tmp_path):
    rng = np.random.default_rng(0)
    run = lstmviz.open_run(lstmviz.write_run(tmp_path / "r", [str(i) for i in range(9000)], awkward_values(rng, 9000)))
    assert_stats_match(run)
    s = run.stats.set_index(["name", "unit"])
    assert np.isnan(s.loc[("rnn.l0.fwd.c", 3), "mean"]) and s.loc[("rnn.l0.fwd.c", 3), "n_nan"] == 9000
    assert s.loc[("rnn.l0.fwd.c", 4), "n_inf"] == 1
    assert np.isnan(run.activations("rnn.l0.fwd.c", units=[0])[::11]).all()  # NaN is kept as stored


def streamed(x: np.ndarray, streams: int, chunk: int, order: int | None = None):
    """The blocks a stateful recording hands the writer: stream s holds rows [s·L, (s+1)·L), chunk j of it rows
    s·L + [j·chunk, (j+1)·chunk); yields (starts [S], half [S, chunk, U], counts [S]), chunks shuffled by
    ``order``."""
    n, U = x.shape
    L = -(-n // streams)
    jobs = list(range(-(-L // chunk)))
    if order is not None:
        np.random.default_rng(order).shuffle(jobs)
    for j in jobs:
        starts = np.arange(streams) * L + j * chunk
        counts = np.clip(np.minimum(n - starts, L - j * chunk), 0, chunk)
        half = np.zeros((streams, chunk, U), np.float16)
        for s in range(streams):
            half[s, : counts[s]] = x[starts[s] : starts[s] + counts[s]]
        yield starts, half, counts


def test_blocks_in_any_order_equal_one_write(tmp_path):
    """Stream blocks with partial counts, arriving out of row order on the writer's thread, store the same rows
    and stats as one plain write."""
    rng = np.random.default_rng(1)
    T, U, B, chunk = 1000, 6, 4, 64
    x = rng.normal(0, 2, (T, U)).astype(np.float32)
    x[::9, 2] = np.nan
    act = lstmviz.store.Activation.from_name("rnn.l0.fwd.c", U)
    with RunWriter(tmp_path / "blocks", tokens_frame([""] * T), [act]) as w:
        for starts, block, counts in reversed(list(streamed(x, B, chunk))):
            w.submit_blocks(act.name, starts, block, counts)
    one = lstmviz.open_run(lstmviz.write_run(tmp_path / "one", [""] * T, {act.name: x}))
    blocks = lstmviz.open_run(tmp_path / "blocks")
    np.testing.assert_array_equal(blocks.activations(act.name), one.activations(act.name))
    for col in ("count", "min", "max", "n_low", "n_high", "n_nan", "n_inf"):
        np.testing.assert_array_equal(blocks.stats[col], one.stats[col])
    np.testing.assert_allclose(blocks.stats["mean"], one.stats["mean"], rtol=1e-12)
    assert_stats_match(blocks)  # the histogram's range comes from the first chunk, which differs here


def test_a_failing_observer_fails_the_recording_and_leaves_nothing(tmp_path):
    class Broken:
        def update(self, start, values):
            raise RuntimeError("observer broke")

        def finish(self, run_dir):
            return {}

    torch.manual_seed(0)
    with pytest.raises(RuntimeError, match="observer broke"):
        lstmviz.record_corpus(
            TinyCharModel().eval(), torch.randint(0, 12, (200,)), tmp_path / "r", streams=4, chunk=7,
            progress=False, observers=lambda act: [Broken()],
        )  # fmt: skip
    assert not any(tmp_path.iterdir())


def relu_rnn(*args, **kwargs) -> nn.RNN:
    return nn.RNN(*args, nonlinearity="relu", **kwargs)


@pytest.mark.parametrize("cell", [nn.LSTM, relu_rnn], ids=["lstm", "relu_rnn"])
def test_a_diverged_model_is_recorded_with_its_nan_and_inf(cell, tmp_path):
    """Weights holding inf and NaN: the recording keeps every NaN / inf where torch's own forward has it, and
    the stats count them per unit."""
    torch.manual_seed(6)
    model = TinyCharModel(cell=cell).eval()
    with torch.no_grad():
        model.rnn.bias_ih_l0[0] = torch.inf  # RNN: unit 0 is +inf, then ±inf and NaN spread through W_hh
        model.rnn.weight_hh_l0[1, 2] = torch.nan if cell is nn.LSTM else 0.0  # LSTM: NaN from the second step
    ids = torch.randint(0, 12, (300,))
    run = lstmviz.open_run(lstmviz.record_corpus(model, ids, tmp_path / "r", streams=3, chunk=16, progress=False))
    padded = torch.cat([ids, ids.new_zeros(3 * 100 - 300)]).reshape(3, 100)
    with torch.no_grad():
        h, _ = model.rnn(model.embed(padded))
    want = h.reshape(300, -1).numpy()
    got = run.activations("rnn.l1.fwd.h")
    assert np.isnan(want).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    ok = np.isfinite(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=2**-11, atol=1e-6)
    assert run.stats["n_nan"].sum() > 0
    if cell is relu_rnn:
        assert run.stats["n_inf"].sum() > 0
    assert_stats_match(run)


def test_every_file_reads_in_duckdb_and_polars(tmp_path):
    rng = np.random.default_rng(2)
    run = lstmviz.open_run(
        lstmviz.write_run(tmp_path / "r", [str(i) for i in range(20000)], awkward_values(rng, 20000))
    )
    for name in run.names:
        f = run.path / run.info(name)["file"]
        want = run.activations(name)
        got = duckdb.sql(f"select * from read_parquet('{f}')").fetchnumpy()
        np.testing.assert_array_equal(np.stack([got[c].astype(np.float32) for c in got], 1), want)
        np.testing.assert_array_equal(pl.read_parquet(f).to_numpy().astype(np.float32), want)


@pytest.mark.gpu
def test_cuda_recording_equals_cpu(tmp_path):
    torch.manual_seed(7)
    model = TinyCharModel(hidden=32).eval()
    ids = torch.randint(0, 12, (5000,))
    record = lstmviz.record_corpus
    cpu = lstmviz.open_run(record(model, ids, tmp_path / "cpu", streams=8, chunk=64, device="cpu", progress=False))
    gpu = lstmviz.open_run(record(model, ids, tmp_path / "gpu", streams=8, chunk=64, device="cuda", progress=False))
    for name in cpu.names:
        a, b = cpu.activations(name), gpu.activations(name)
        np.testing.assert_allclose(b, a, rtol=2**-10, atol=2e-3, err_msg=name)
    assert_stats_match(gpu)


def test_order_keys_sort_every_float16_as_its_value():
    from lstmviz import f16keys as cs

    bits = np.arange(1 << 16)
    values = cs.LUT[bits]
    ok = ~np.isnan(values)
    keys = cs.key(bits[ok])
    order = np.argsort(keys, kind="stable")
    assert (np.diff(values[ok][order]) >= 0).all()
    np.testing.assert_array_equal(cs.LUT[cs.key_bits(keys)], values[ok])
    low_key, high_key = cs.threshold_keys(LOW, HIGH)
    np.testing.assert_array_equal(keys <= low_key, values[ok] < np.float32(LOW))
    np.testing.assert_array_equal(keys >= high_key, values[ok] > np.float32(HIGH))


def _mapped_rss(folder) -> int:
    """Bytes of this process's resident set in maps of the files under ``folder`` (Linux's /proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            inside = len(head) >= 6 and head[5].startswith(str(folder))
        elif inside and line.startswith("Rss:"):
            total += int(head[1]) * 1024
    return total


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux's /proc/self/smaps")
@pytest.mark.parametrize("resident", [4 << 20, 1 << 20])
def test_the_files_written_in_place_leave_the_resident_set(tmp_path, monkeypatch, resident):
    """Stream-major chunks are copied through a map straight into the activation file; its pages are dropped from
    the resident set every RESIDENT_BYTES written, or every size of the pages being filled (one per stream and
    unit) where that is more (the 1 MB case), so the mapped Rss (the kernel's own count) stays under that plus
    the pages being filled (two per stream and unit at most) however long the run, and the file holds every
    value."""
    from lstmviz.store import writer

    monkeypatch.setattr(writer, "RESIDENT_BYTES", resident)
    rng = np.random.default_rng(5)
    T, U, B, chunk = 100_000, 64, 8, 256
    x = rng.normal(0, 1, (T, U)).astype(np.float16)
    act = lstmviz.store.Activation.from_name("rnn.l0.fwd.h", U)
    w = RunWriter(tmp_path / "r", tokens_frame([""] * T), [act])
    peak = 0
    for starts, block, counts in streamed(x, B, chunk):
        w.write_blocks(act.name, starts, block, counts)
        peak = max(peak, _mapped_rss(w.partial / "acts"))
    assert 0 < peak <= max(resident, B * U * 4096) + B * U * 2 * 4096  # the file is 12.8 MB
    w.close()
    np.testing.assert_array_equal(lstmviz.open_run(tmp_path / "r").activations(act.name, dtype=np.float16), x)


def test_a_kind_with_a_codec_is_encoded_from_the_file_written_in_place(tmp_path, monkeypatch):
    """A kind listed in COMPRESSION is written in place into a hidden float16 file, and encoded at close with its
    codec: the same values as an uncompressed run (with the recording's observers: the same match index), and
    nothing but the run's own files left."""
    import pyarrow.parquet as pq

    from lstmviz.analysis.match_pass import recording_observers
    from lstmviz.store import writer

    rng = np.random.default_rng(6)
    n = 40_000
    acts = {"rnn.l0.fwd.h": np.tanh(rng.normal(0, 1, (n, 5))), "rnn.l0.fwd.c": rng.normal(0, 2, (n, 3))}
    plain = lstmviz.open_run(lstmviz.write_run(tmp_path / "plain", [""] * n, acts, observers=recording_observers(n)))
    monkeypatch.setattr(writer, "COMPRESSION", {"h": "zstd"})
    run = lstmviz.open_run(lstmviz.write_run(tmp_path / "zstd", [""] * n, acts, observers=recording_observers(n)))
    md = pq.ParquetFile(run.path / "acts" / "rnn.l0.fwd.h.parquet").metadata
    assert md.row_group(0).column(0).compression == "ZSTD" and md.num_row_groups == 3
    for name in acts:
        np.testing.assert_array_equal(run.activations(name), plain.activations(name))
    [(mean,)] = duckdb.sql(f"select avg(u0004::double) from '{run.path / 'acts' / 'rnn.l0.fwd.h.parquet'}'").fetchall()
    assert mean == pytest.approx(plain.activations("rnn.l0.fwd.h")[:, 4].astype(np.float64).mean())
    assert not [p.name for p in (run.path / "acts").iterdir() if p.name.startswith(".")]
    cache = sorted(p.relative_to(plain.path) for p in (plain.path / "cache").rglob("*") if p.is_file())
    assert cache == sorted(p.relative_to(run.path) for p in (run.path / "cache").rglob("*") if p.is_file())
    for f in cache:
        assert (plain.path / f).read_bytes() == (run.path / f).read_bytes(), f
