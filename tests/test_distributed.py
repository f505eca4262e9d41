"""Sharded runs recorded on a local Ray cluster (lstmviz/distributed.py) and read as one (lstmviz/shards.py).

Oracles: each shard recorded on its own by record_corpus (no Ray), and numpy over the concatenated values.
One Ray cluster (conftest's ray_cluster) serves every test of the session: starting one costs seconds.
"""

from __future__ import annotations

import builtins
import json
import os
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pytest
import torch
from test_cards import brute_top
from tiny_models import DiesOnce, TinyCharModel

import lstmviz
from lstmviz import cards
from lstmviz.analysis.match_bits import Threshold, on_index
from lstmviz.analysis.overview import overview
from lstmviz.distributed import cut_points, record_sharded
from lstmviz.errors import UserError

HERE = Path(__file__).resolve().parent
PRINT = builtins.print  # before Ray
STREAMS, CHUNK = 3, 40


def _model() -> TinyCharModel:
    torch.manual_seed(0)
    return TinyCharModel().eval()


IDS = np.random.default_rng(1).integers(0, 12, 700)


@pytest.fixture(scope="module")
def sharded(ray_cluster, tmp_path_factory) -> lstmviz.Run:
    out = tmp_path_factory.mktemp("sharded") / "run"
    display = [chr(ord("a") + i) for i in IDS]
    record_sharded(_model(), IDS, out, shards=3, streams=STREAMS, chunk=CHUNK, display=display, progress=True)
    return lstmviz.open_run(out)


@pytest.fixture(scope="module")
def alone(sharded, tmp_path_factory) -> list[lstmviz.Run]:
    """Each shard's piece recorded on its own, in this process."""
    runs = []
    for k, (a, b) in enumerate(sharded.manifest["recording"]["shards"]):
        out = tmp_path_factory.mktemp("alone") / f"s{k}"
        display = [chr(ord("a") + i) for i in IDS[a:b]]
        lstmviz.record_corpus(_model(), IDS[a:b], out, streams=STREAMS, chunk=CHUNK, display=display, progress=False)
        runs.append(lstmviz.open_run(out))
    return runs


def test_a_sharded_runs_token_map_reads_its_parts_as_one(sharded):
    """The memory-mapped tokens table of a sharded run is its parts in order: windows across a shard border,
    taken rows and whole columns equal ``Run.tokens``."""
    whole = sharded.tokens
    for a, b in sharded.manifest["recording"]["shards"][1:]:
        for lo, hi in ((a - 3, a + 4), (a, b), (0, b)):
            pd.testing.assert_frame_equal(sharded.tokens_window(lo, hi), whole.iloc[lo:hi].reset_index(drop=True))
    rows = np.array([len(whole) - 1, 0, sharded.manifest["recording"]["shards"][1][0]])
    pd.testing.assert_frame_equal(sharded.token_rows(rows).to_pandas(), whole.iloc[rows].reset_index(drop=True))
    pd.testing.assert_series_equal(sharded.token_column("token"), whole["token"])


def test_sharded_run_equals_each_shard_recorded_alone(sharded, alone):
    bounds = sharded.manifest["recording"]["shards"]
    assert bounds == [[0, 233], [233, 466], [466, 700]]
    assert sharded.manifest["schema_version"] == 2 and sharded.n_tokens == len(IDS)
    assert sharded.names == alone[0].names
    for (a, b), run in zip(bounds, alone, strict=True):
        for name in sharded.names:
            np.testing.assert_array_equal(sharded.activations(name, start=a, stop=b), run.activations(name))
        mine, theirs = sharded.tokens.iloc[a:b].reset_index(drop=True), run.tokens
        np.testing.assert_array_equal(mine["idx"], np.arange(a, b))
        np.testing.assert_array_equal(mine["pos"], np.arange(a, b))  # one document: its position is the idx
        for column in ("doc", "token_id", "token", "loss"):
            np.testing.assert_array_equal(mine[column], theirs[column])
        assert np.isnan(mine["loss"].iloc[-1])  # a shard's last token has no next token inside the shard


def test_a_window_across_shards_reads_the_parts_as_one(sharded, alone):
    a1 = sharded.manifest["recording"]["shards"][1][0]
    got = sharded.activations("rnn.l1.fwd.c", units=[5, 1, 5], start=a1 - 7, stop=a1 + 9)
    want = np.concatenate([alone[0].activations("rnn.l1.fwd.c")[-7:], alone[1].activations("rnn.l1.fwd.c")[:9]])
    np.testing.assert_array_equal(got, want[:, [5, 1, 5]])


def test_merged_stats_are_exact_over_the_concatenation(sharded):
    stats = sharded.stats.set_index(["name", "unit"])
    for name in sharded.names:
        x = sharded.activations(name).astype(np.float64)  # [T, units], the stored float16 values
        s = stats.loc[name]
        assert (s["count"] == len(x)).all()
        np.testing.assert_allclose(s["mean"], x.mean(0), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(s["std"], x.std(0), rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(s["min"], x.min(0))
        np.testing.assert_array_equal(s["max"], x.max(0))
        np.testing.assert_array_equal(s["n_low"], (x < 0.1).sum(0))
        np.testing.assert_array_equal(s["n_high"], (x > 0.9).sum(0))
        lo, hi = s["hist_lo"].iloc[0], s["hist_hi"].iloc[0]
        bins = np.clip(((x.astype(np.float32) - np.float32(lo)) * np.float32(32 / (hi - lo))), 0, 31).astype(int)
        want = np.stack([np.bincount(bins[:, u], minlength=32) for u in range(x.shape[1])])
        np.testing.assert_array_equal(np.stack(s["hist"].to_numpy()), want)


def test_shard_zero_keeps_its_own_histogram_range(sharded, alone):
    """The run bins over the ranges shard 0 alone chooses (its first chunk), so its stats are shard 0's."""
    mine = lstmviz.open_run(sharded.path / "shards" / "00000").stats
    theirs = alone[0].stats
    for column in ("hist_lo", "hist_hi", "mean", "min", "max", "n_low"):
        np.testing.assert_array_equal(mine[column], theirs[column])
    np.testing.assert_array_equal(np.stack(mine["hist"]), np.stack(theirs["hist"]))


def test_merged_match_index_and_overview_equal_a_direct_computation(sharded):
    name = "rnn.l0.fwd.h"
    x = sharded.activations(name)
    on = on_index(sharded, name, 0.3)
    np.testing.assert_array_equal(on.bits, np.packbits(x >= 0.3, axis=1, bitorder="little"))
    np.testing.assert_array_equal(on.cols, np.asarray(on.bits).T)
    q = on_index(sharded, name, Threshold(0.9, quantile=True))  # built on first use, across the parts
    np.testing.assert_array_equal(q.theta, np.quantile(x, 0.9, axis=0).astype(np.float32))
    means, per = overview(sharded, name)
    T = len(x)
    want = np.stack([x[b : b + per].mean(0) for b in range(0, T, per)])
    np.testing.assert_allclose(means, want, rtol=1e-6)


def test_duckdb_and_polars_read_a_sharded_activation_as_one_table(sharded):
    name = "rnn.l1.fwd.h"
    files = str(sharded.path / sharded.info(name)["file"])
    x = sharded.activations(name)
    got = duckdb.sql(f"select u0000, u0003 from read_parquet('{files}')").fetchnumpy()
    np.testing.assert_array_equal(np.stack([got["u0000"], got["u0003"]], 1).astype(np.float32), x[:, [0, 3]])
    frame = pl.read_parquet(files)
    assert frame.shape == (sharded.n_tokens, sharded.units(name))
    np.testing.assert_array_equal(frame["u0007"].to_numpy().astype(np.float32), x[:, 7])
    tokens = duckdb.sql(f"select idx from read_parquet('{sharded.path / 'shards/*/tokens.parquet'}')").fetchnumpy()
    np.testing.assert_array_equal(tokens["idx"], np.arange(sharded.n_tokens))


def test_open_run_refuses_a_sharded_run_with_a_lost_or_short_part(sharded, tmp_path):
    lost = tmp_path / "lost"
    shutil.copytree(sharded.path, lost)
    shutil.rmtree(lost / "shards" / "00001")
    with pytest.raises(lstmviz.RunError, match="matches 2 parts but the run has 3 shards"):
        lstmviz.open_run(lost)
    short = tmp_path / "short"
    shutil.copytree(sharded.path, short)
    tokens = short / "shards" / "00002" / "tokens.parquet"
    pl.read_parquet(tokens).head(10).write_parquet(tokens)
    with pytest.raises(
        lstmviz.RunError, match=r"00002/tokens.parquet has 10 rows but its shard is tokens \[466, 700\)"
    ):
        lstmviz.open_run(short)


def test_open_run_refuses_shards_that_do_not_cover_the_run(sharded, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(sharded.path, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["recording"]["shards"] = [[0, 233], [240, 700]]
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(lstmviz.RunError, match="contiguous non-empty pieces"):
        lstmviz.open_run(bad)


class AlwaysDies(TinyCharModel):
    def forward(self, ids):
        os._exit(1)


def _like_model(cls, *args):
    model = cls(*args)
    model.load_state_dict(_model().state_dict())
    return model.eval()


def test_a_killed_worker_is_retried_and_the_run_is_whole(ray_cluster, tmp_path, alone):
    out = tmp_path / "run"
    model = _like_model(DiesOnce, str(tmp_path / "died"), 2)  # the probe makes forward 0: a shard dies
    record_sharded(model, IDS, out, shards=3, streams=STREAMS, chunk=CHUNK, progress=False, max_retries=2)
    assert (tmp_path / "died.2").exists()  # the forward that died
    run = lstmviz.open_run(out)
    for (a, b), piece in zip(run.manifest["recording"]["shards"], alone, strict=True):
        np.testing.assert_array_equal(
            run.activations("rnn.l1.fwd.h", start=a, stop=b), piece.activations("rnn.l1.fwd.h")
        )


def test_a_worker_that_always_dies_leaves_no_run(ray_cluster, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(lstmviz.RunError, match=r"worker died on each of 2 tries; no run was written"):
        record_sharded(
            _like_model(AlwaysDies), IDS, out, shards=2, streams=STREAMS, chunk=CHUNK, progress=False, max_retries=1
        )
    assert not out.exists() and not (tmp_path / "run.partial").exists()


def test_cuts_keep_documents_whole():
    assert cut_points(10, 3) == [(0, 3), (3, 6), (6, 10)]
    docs = np.repeat([0, 1, 2, 3], [2, 5, 1, 2])  # starts at 0, 2, 7, 8
    assert cut_points(10, 3, docs) == [(0, 2), (2, 7), (7, 10)]
    assert cut_points(10, 4, np.zeros(10)) == [(0, 10)]  # one document: one piece
    with pytest.raises(UserError, match="11 shards need at least 11 tokens"):
        cut_points(10, 11)


def test_cli_records_shards_with_annotations_and_info_shows_them(ray_cluster, tmp_path, capsys):
    from lstmviz.cli import main
    from lstmviz.models.charrnn import CharRNN, CharRNNConfig
    from lstmviz.models.tokenizers import Tokenizer
    from lstmviz.models.train import save_checkpoint

    code = 'def f(a, b):\n    """Doc."""\n    return g(a[1], {b: "x"})  # done\n' * 4
    torch.manual_seed(0)
    tok = Tokenizer.char(code)
    model = CharRNN(CharRNNConfig("lstm", len(tok), hidden=8, layers=1, embed=4)).eval()
    save_checkpoint(tmp_path / "m.pt", model, tok, {"val_bpc": 3.0}, {"command": "test"})
    (tmp_path / "code.py").write_text(code)
    common = ["record", "--checkpoint", tmp_path / "m.pt", "--text", tmp_path / "code.py", "--annotate", "code"]
    common += ["--streams", "2", "--chunk", "16", "--no-progress"]
    assert main([str(a) for a in [*common, "--out", tmp_path / "one"]]) == 0
    assert main([str(a) for a in [*common, "--out", tmp_path / "sharded", "--shards", "2", "--ray", "local"]]) == 0
    one, sharded = lstmviz.open_run(tmp_path / "one"), lstmviz.open_run(tmp_path / "sharded")
    for column in ("token", "in_string", "in_comment"):  # annotations are cut with the tokens
        np.testing.assert_array_equal(sharded.tokens[column], one.tokens[column])
    capsys.readouterr()
    assert main(["info", str(tmp_path / "sharded")]) == 0
    assert "shards      2, recorded on Ray (local)" in capsys.readouterr().out
    assert main([str(a) for a in [*common, "--out", tmp_path / "x", "--ray", "local"]]) == 2
    assert "--ray names where to record shards: pass --shards N too" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("page", ["overview", "text", "select", "saturation", "neurons"])
def test_the_app_shows_a_sharded_run(sharded, tmp_path_factory, monkeypatch, page):
    from streamlit.testing.v1 import AppTest

    from lstmviz.dashboard import widgets

    root = tmp_path_factory.getbasetemp() / "app-runs"
    if not root.exists():
        shutil.copytree(sharded.path, root / "sharded")
    monkeypatch.setenv("LSTMVIZ_RUNS", str(root))
    at = AppTest.from_file(str(HERE.parent / "app.py"), default_timeout=120).run()
    at = at.switch_page(widgets.page_file(page)).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert at.title[0].value == widgets.PAGES[page][0]


def test_cards_of_a_sharded_run_are_those_of_its_shards_concatenated(sharded, alone):
    """Top contexts (both signs, de-duplicated across shard boundaries) and correlated units of the sharded run
    equal brute force over the shards recorded alone, put end to end."""
    from test_cards import brute_top

    for name in ("rnn.l0.fwd.c", "rnn.l1.fwd.h"):
        x = np.concatenate([run.activations(name) for run in alone]).astype(np.float64)  # [T, units]
        r = np.corrcoef(x.T)
        for unit in (0, 3):
            for sign in (1, -1):
                got = sharded.top_contexts(name, unit, k=12, sign=sign, window=5)
                assert got["idx"].tolist() == brute_top(sign * x[:, unit], 12, 5), (name, unit, sign)
                np.testing.assert_array_equal(got["value"], x[got["idx"], unit].astype(np.float32))
            corr = sharded.correlated_units(name, unit, k=5)
            want = [u for u in np.argsort(-np.abs(r[unit]), kind="stable") if u != unit][:5]
            assert sorted(corr["unit"]) == sorted(want), (name, unit)
            np.testing.assert_allclose(corr["r"], r[unit, corr["unit"]], atol=1e-6)  # r is stored as float32


def test_merged_unit_cards_equal_brute_force_and_a_build_over_the_whole_run(sharded, tmp_path):
    """The run's cards come from the shards' parts (no first-use build): top contexts of both signs across the
    shard edges against brute force, and every array as the first-use build over the whole run gives it."""
    for name in ("rnn.l0.fwd.c", "rnn.l1.fwd.i"):
        path = sharded.path / sharded.info(name)["cards"]
        assert path.is_file()
        x = sharded.activations(name)
        for unit in range(0, sharded.units(name), 5):
            for sign in (1, -1):
                top = sharded.top_contexts(name, unit, sign=sign)
                assert top["idx"].tolist() == brute_top(sign * x[:, unit], 20, 10)
        merged = cards.load_cards(sharded, name).a
        copy = tmp_path / name
        shutil.copytree(sharded.path, copy)
        (copy / sharded.info(name)["cards"]).unlink()
        built = cards.load_cards(lstmviz.open_run(copy), name).a
        assert merged.keys() == built.keys()
        for key in built:
            np.testing.assert_array_equal(merged[key], built[key], err_msg=key)


def test_one_shard_is_the_run_recorded_in_one_process(ray_cluster, tmp_path):
    """``shards=1`` (the baseline of bench/scale.py) is a whole run in one task: it equals record_corpus, its
    derived data included."""
    out = tmp_path / "one"
    record_sharded(_model(), IDS, out, shards=1, streams=STREAMS, chunk=CHUNK, progress=False)
    lstmviz.record_corpus(_model(), IDS, tmp_path / "p", streams=STREAMS, chunk=CHUNK, progress=False, cards=True)
    run, want = lstmviz.open_run(out), lstmviz.open_run(tmp_path / "p")
    assert run.manifest["recording"]["shards"] == [[0, len(IDS)]]
    for name in want.names:
        np.testing.assert_array_equal(run.activations(name), want.activations(name))
        for sign in (1, -1):
            pd.testing.assert_frame_equal(run.top_contexts(name, 3, sign=sign), want.top_contexts(name, 3, sign=sign))
    pd.testing.assert_frame_equal(run.stats, want.stats)


class _Loud(TinyCharModel):
    """Prints in every worker's forward: the driver shows the workers' log lines."""

    def forward(self, ids):
        print("forward", tuple(ids.shape))
        return super().forward(ids)


def test_a_sharded_recording_leaves_print_and_numba_as_they_were(ray_cluster, tmp_path):
    """The failure this fixes: Ray's driver replaced builtins.print on the first worker log line, and numba
    code that prints (UMAP's nearest neighbours) failed to compile for the rest of the process."""
    import time

    import numba

    torch.manual_seed(0)
    record_sharded(_Loud().eval(), IDS, tmp_path / "run", shards=2, streams=STREAMS, chunk=CHUNK, progress=False)
    time.sleep(2)  # the driver prints the workers' lines from a thread of its own
    assert builtins.print is PRINT
    assert numba.njit(lambda: numba.get_num_threads())() >= 1
