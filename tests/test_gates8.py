"""8-bit gates: each stored gate within MAX_ERROR of the exact one (torch's own values are the oracle), the same
floats in pyarrow, DuckDB and Polars, and stats and derived data of the stored level values."""

from __future__ import annotations

import duckdb
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import torch
from test_writer import assert_stats_match
from tiny_models import TinyCharModel, record_argv
from torch import nn

import lstmviz
from lstmviz.analysis.match_bits import on_index
from lstmviz.analysis.overview import overview
from lstmviz.cli import main
from lstmviz.names import SIGMOID_KINDS
from lstmviz.store.levels import LEVELS, MAX_ERROR, level_bits, quantize
from lstmviz.store.parquet_f16 import F16ParquetWriter

STREAMS, LENGTH = 3, 200


def exact_and_recorded(cell: type[nn.RNNBase], tmp_path, gates: str) -> tuple[dict[str, np.ndarray], lstmviz.Run]:
    """The exact float32 activations (run_with_cache on the streams in one call) in corpus order ``[N, units]``,
    and the run record_corpus writes of the same streams chunk by chunk."""
    torch.manual_seed(0)
    model = TinyCharModel(cell=cell, hidden=24).eval()
    ids = torch.randint(0, 12, (STREAMS * LENGTH,))
    _, cache = lstmviz.run_with_cache(model, ids.reshape(STREAMS, LENGTH))
    exact = {name: v.reshape(STREAMS * LENGTH, -1).numpy() for name, v in cache.items()}
    out = tmp_path / f"{cell.__name__}-{gates}"
    lstmviz.record_corpus(model, ids, out, streams=STREAMS, chunk=64, progress=False, gates=gates)
    return exact, lstmviz.open_run(out)


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
def test_every_stored_gate_is_a_level_within_the_bound_of_the_exact_gate(cell, tmp_path):
    exact, run = exact_and_recorded(cell, tmp_path, "8bit")
    _, plain = exact_and_recorded(cell, tmp_path, "float16")
    gates = [n for n in run.names if run.info(n)["kind"] in SIGMOID_KINDS]
    assert len(gates) == (6 if cell is nn.LSTM else 4)
    for name in run.names:
        stored = run.activations(name)
        if name in gates:
            assert run.info(name)["quantized"] == {"levels": 256, "max_abs_error": MAX_ERROR}
            assert np.abs(stored - exact[name]).max() <= MAX_ERROR, name
            assert np.isin(stored.astype(np.float16), LEVELS).all(), name
            # the level of the exact value, but where the recorded value (within 1e-5 of it) is across a midpoint
            level, scaled = np.rint(stored * 255), exact[name].astype(np.float64) * 255
            off = level != quantize(name, exact[name])
            assert (np.abs(scaled[off] - np.floor(scaled[off]) - 0.5) < 255e-5).all(), name
        else:  # every other kind is stored as before, float16
            assert "quantized" not in run.info(name)
            np.testing.assert_array_equal(stored, plain.activations(name), err_msg=name)


def test_the_bound_holds_at_the_level_midpoints_and_is_nearly_reached():
    k = np.arange(255)
    mid = ((k + 0.5) / 255).astype(np.float32)
    around = [np.nextafter(mid, np.float32(-1)), mid, np.nextafter(mid, np.float32(2))]
    x = np.concatenate([*around, np.random.default_rng(0).random(1_000_000, np.float32), [0, 1]]).astype(np.float32)
    err = np.abs(x.astype(np.float64) - LEVELS[quantize("g", x)].astype(np.float64))
    assert err.max() <= MAX_ERROR
    assert err.max() > 1 / 510  # the rounding to 1/255 steps is the bulk of the bound: it is not loose


def test_the_compiled_pass_stores_what_the_definition_says():
    mid = ((np.arange(255) + 0.5) / 255).astype(np.float32)
    edges = [0, 1, -0.0, 1e-30, 3e-8, -1, 2, np.inf, -np.inf, np.float32(0.5 / 255)]
    x = np.concatenate([np.nextafter(mid, np.float32(-1)), mid, np.nextafter(mid, np.float32(2)), edges])
    x = np.concatenate([x, np.random.default_rng(1).random(100_000)]).astype(np.float32)
    np.testing.assert_array_equal(level_bits("g", x).view(np.uint16), LEVELS[quantize("g", x)].view(np.uint16))
    with pytest.raises(lstmviz.RunError, match="g has NaN"):
        level_bits("g", np.array([0.5, np.nan], np.float32))


def test_duckdb_and_polars_read_the_floats_pyarrow_reads(tmp_path):
    _, run = exact_and_recorded(nn.LSTM, tmp_path, "8bit")
    path = run.path / run.info("rnn.l1.fwd.f")["file"]
    ours = pq.read_table(path)
    want = np.stack([c.to_numpy() for c in ours.columns]).astype(np.float32)
    assert np.isin(want.astype(np.float16), LEVELS).all()
    duck = duckdb.sql(f"select * from '{path}'").fetchnumpy()
    np.testing.assert_array_equal(np.stack([duck[c] for c in ours.column_names]).astype(np.float32), want)
    frame = pl.read_parquet(path)
    np.testing.assert_array_equal(np.stack([frame[c].to_numpy() for c in ours.column_names]).astype(np.float32), want)


@pytest.mark.parametrize("groups", [[1], [7, 9], [16384, 13]])
def test_the_dictionary_file_reads_back_as_its_levels(tmp_path, groups):
    idx = np.random.default_rng(len(groups)).integers(0, 256, (3, sum(groups))).astype(np.uint8)
    with F16ParquetWriter(tmp_path / "d.parquet", ["a", "b", "c"], LEVELS) as w:
        r = 0
        for rows in groups:
            w.write_group(idx[:, r : r + rows])
            r += rows
    f = pq.ParquetFile(tmp_path / "d.parquet")
    assert [f.metadata.row_group(g).num_rows for g in range(len(groups))] == groups
    assert f.metadata.row_group(0).column(0).has_dictionary_page
    got = np.stack([c.to_numpy() for c in f.read().columns])
    np.testing.assert_array_equal(got.view(np.uint16), LEVELS[idx].view(np.uint16))


def test_stats_match_index_and_overview_are_those_of_the_stored_levels(tmp_path):
    _, run = exact_and_recorded(nn.GRU, tmp_path, "8bit")
    assert_stats_match(run)  # exact against numpy over run.activations: the stored level values
    for name in ("rnn.l0.fwd.z", "rnn.l1.fwd.r"):
        stored = run.activations(name)
        np.testing.assert_array_equal(
            np.asarray(on_index(run, name, 0.3).bits), np.packbits(stored >= 0.3, 1, "little")
        )
        means, per = overview(run, name)
        np.testing.assert_allclose(means[0], stored[:per].mean(0), rtol=1e-6)


def test_a_nan_gate_fails_an_8bit_recording_and_leaves_nothing(tmp_path):
    gate = np.full((5, 3), 0.5)
    gate[2, 1] = np.nan
    with pytest.raises(lstmviz.RunError, match=r"rnn.l0.fwd.f has NaN values.*gates='float16'"):
        lstmviz.write_run(tmp_path / "run", list("abcde"), {"rnn.l0.fwd.f": gate}, gates="8bit")
    assert not any(tmp_path.iterdir())
    torch.manual_seed(0)
    model = TinyCharModel().eval()
    with torch.no_grad():
        model.rnn.weight_ih_l0[0] = float("nan")  # a diverged model: every gate of layer 0 is NaN
    with pytest.raises(lstmviz.RunError, match="has NaN values"):
        lstmviz.record_corpus(
            model, torch.randint(0, 12, (300,)), tmp_path / "r", streams=2, progress=False, gates="8bit"
        )
    assert not any(tmp_path.iterdir())


def test_cli_record_gates_8bit(tmp_path, capsys):
    argv = [*record_argv(tmp_path, "gru"), "--out", tmp_path / "r"]
    assert main([str(a) for a in [*argv, "--gates", "8bit", "--no-progress"]]) == 0
    run = lstmviz.open_run(tmp_path / "r")
    assert {n.rsplit(".", 1)[1] for n in run.names if "quantized" in run.info(n)} == {"r", "z"}
    with pytest.raises(SystemExit) as refused:  # argparse's own refusal of a choice: exit 2, one line
        main([str(a) for a in [*argv, "--gates", "4bit", "--no-progress"]])
    assert refused.value.code == 2
    assert "--gates" in capsys.readouterr().err
