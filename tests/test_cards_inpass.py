"""Unit cards built when the writer closes (lstmviz.cards.PassCards, from the spill) against brute force and
against the first-use build: top contexts of both signs with ties, NaN and ±inf, windows at stream, shard and corpus
edges; bands and density against the first-use build; shards merged."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cards import brute_top, spill
from test_writer import streamed
from tiny_models import record_argv

import lstmviz
from lstmviz import cards
from lstmviz import f16keys as cs
from lstmviz.analysis import units as unit_cards
from lstmviz.bins import bin_sums
from lstmviz.store import Activation, RunWriter, open_run
from lstmviz.store.format import tokens_frame
from lstmviz.store.stats import Stats


def pass_parts(x, n_run, k, window, streams, chunk, order=None, offset=0, per=None) -> dict:
    """Feed ``x`` (float16 [n, U], rows offset… of a run of n_run) as the writer does: each stream's part of each
    chunk stored as a tile in the order the chunks come, the spill handed to ``read_spill`` at the close; returns
    the PassCards' parts. With ``per``, the chunks also go through the writer's stats pass with an overview of
    bins of ``per`` positions (the run's, from position 0), whose extremes are the sweep's blocks; without it the
    sweep takes its own, as for a file swept after its recording."""
    act = Activation.from_name("rnn.l0.fwd.f", x.shape[1])
    bins = None if per is None else bin_sums(offset, per, -(-n_run // per), x.shape[1])
    pc = cards.PassCards(act, n_run, k=k, window=window, offset=offset, n_local=len(x),
                         blocks=bins)  # fmt: skip
    stats, pieces = Stats(act), []
    for starts, half, counts in streamed(x, streams, chunk, order):
        pieces += [(int(a), int(a + c)) for a, c in zip(starts, counts, strict=True) if c]
        if bins is not None:
            tiles = np.zeros((len(starts), half.shape[1] * x.shape[1]), np.uint16)
            stats.update(half.view(np.uint16), counts, tiles, starts, bins)
    pc.read_spill(*spill(np.asarray(x, np.float16), pieces))
    return pc.parts()


def check_top(out: dict, x: np.ndarray, k: int, window: int) -> None:
    f = x.astype(np.float32)
    for u in range(x.shape[1]):
        for sign, key in ((1, "top_pos"), (-1, "top_neg")):
            want = brute_top(sign * f[:, u], k, window)
            got = out[key][u]
            assert got[got >= 0].tolist() == want, (u, sign)
            assert (got[len(want) :] == -1).all()
            np.testing.assert_array_equal(out[f"{key}_value"][u][: len(want)], f[want, u])


levels = st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 0.5, 1.0, 1.0, -1.0, 2.0, np.nan, np.inf, -np.inf, 6e-8, 3.0])


@settings(max_examples=120, deadline=None)
@given(
    data=st.lists(st.lists(levels, min_size=2, max_size=2), min_size=1, max_size=150),
    k=st.integers(1, 7),
    window=st.integers(0, 5),
    streams=st.integers(1, 5),
    chunk=st.integers(1, 9),
    order=st.none() | st.integers(0, 3),
)
def test_in_pass_top_contexts_equal_brute_force(data, k, window, streams, chunk, order):
    """Ties everywhere (a handful of levels, ±0), NaN never chosen, ±inf as values, k beyond the positions,
    windows across stream and chunk edges, chunks in any order; the buffers are cut many times (M is small)."""
    x = np.array(data, np.float16)
    out = cards.merge_parts([pass_parts(x, len(x), k, window, streams, chunk, order)], len(x), k, window)
    check_top(out, x, k, window)


def test_long_plateaus_and_a_rising_corpus_cut_the_buffer_often():
    """A rising ramp makes every value a new best (the most admissions there can be), plateaus make ties."""
    n = 5000
    x = np.zeros((n, 3), np.float16)
    x[:, 0] = np.linspace(-4, 4, n)
    x[:, 1] = np.round(np.sin(np.arange(n) / 50.0), 1)
    x[:, 2] = x[::-1, 0]
    x[100:400, 2] = np.nan
    out = cards.merge_parts([pass_parts(x, n, 20, 10, 7, 64, order=1)], n, 20, 10)
    check_top(out, x, 20, 10)


def test_shards_merge_to_the_whole_runs_cards():
    """Three shards (positions offset into the run, the run's sample) merge into exactly what one recording gives:
    top contexts across shard edges, bands and counts."""
    rng = np.random.default_rng(4)
    n = 6000
    x = np.cumsum(rng.normal(size=(n, 6)), 0).astype(np.float16) / 30
    x[2990:3010, 1] = 9.0  # a plateau across the shard edge at 3000
    x[:, 5] = 0.25 * x[:, 0] + np.float16(0.01) * x[:, 5]
    whole = cards.merge_parts(
        [
            pass_parts(
                x,
                n,
                20,
                10,
                4,
                128,
            )
        ],
        n,
        20,
        10,
    )
    bounds = [(0, 3000), (3000, 4100), (4100, n)]
    parts = [
        pass_parts(
            x[a:b],
            n,
            20,
            10,
            3,
            100,
            order=a,
            offset=a,
        )
        for a, b in bounds
    ]
    merged = cards.merge_parts(parts, n, 20, 10)
    check_top(merged, x, 20, 10)
    assert merged["top_pos"][1][:2].tolist() == [2990, 3001]
    assert merged.keys() == whole.keys()
    for key, v in whole.items():
        np.testing.assert_array_equal(merged[key], v, err_msg=key)


def test_in_pass_cards_equal_the_first_use_build(tmp_path):
    """The same run's cards, from the writer (several streams, chunks interleaved) and built from its files."""
    rng = np.random.default_rng(2)
    n, U = 7000, 9
    x = np.tanh(np.cumsum(rng.normal(size=(n, U)), 0) / 10).astype(np.float16)
    x[17, 2], x[18, 3], x[19, 4] = np.nan, np.inf, -np.inf
    acts = [Activation.from_name("rnn.l0.fwd.c", U)]
    with RunWriter(tmp_path / "r", tokens_frame(["a"] * n), acts, observers=cards.card_observers(n)) as w:
        for starts, half, counts in streamed(x, 5, 96, order=3):
            w.write_blocks("rnn.l0.fwd.c", starts, half, counts)
    run = open_run(tmp_path / "r")
    stored = cards.load_cards(run, "rnn.l0.fwd.c").a
    (run.path / stored_file(run)).unlink()
    built = cards.load_cards(run, "rnn.l0.fwd.c").a  # the first-use build, from the activation file
    assert stored.keys() == built.keys()
    for key in stored:
        np.testing.assert_array_equal(stored[key], built[key], err_msg=key)


def stored_file(run) -> str:
    return run.info("rnn.l0.fwd.c")["cards"]


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(12, 8)
        self.rnn = torch.nn.LSTM(8, 16, 2, batch_first=True)
        self.decoder = torch.nn.Linear(16, 12)

    def forward(self, ids):
        return self.decoder(self.rnn(self.embed(ids))[0])


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    torch.manual_seed(0)
    ids = np.random.default_rng(0).integers(0, 12, 3000)
    out = tmp_path_factory.mktemp("rec") / "run"
    run = lstmviz.record_corpus(Tiny().eval(), ids, out, streams=7, chunk=50, progress=False)  # cards by default
    return lstmviz.open_run(run)


def test_a_recording_holds_the_cards_and_the_unit_page_equals_the_first_use_build(recorded, tmp_path):
    run = recorded
    for name in run.names:
        assert (run.path / run.info(name)["cards"]).is_file()
    name, unit = "rnn.l1.fwd.c", 5
    f = run.activations(name)
    for sign in (1, -1):
        top = run.top_contexts(name, unit, sign=sign)
        want = brute_top(sign * f[:, unit], 20, 10)
        assert top["idx"].tolist() == want
    got = unit_cards.card(run, name, unit)
    copy = tmp_path / "copy"
    shutil.copytree(run.path, copy)
    shutil.rmtree(copy / "cache" / "cards")
    again = unit_cards.card(lstmviz.open_run(copy), name, unit)  # cards built on first use
    for sign in (1, -1):
        assert got.top[sign].equals(again.top[sign])
    assert got.bands.equals(again.bands)
    np.testing.assert_equal(got.stats, again.stats)
    np.testing.assert_array_equal(got.strip, again.strip)
    assert got.correlated["unit"].tolist() == again.correlated["unit"].tolist()
    np.testing.assert_allclose(got.correlated["r"], again.correlated["r"], atol=1e-5)
    r = np.corrcoef(f.astype(np.float64), rowvar=False)[unit]
    np.testing.assert_allclose(got.correlated["r"], r[got.correlated["unit"]], atol=2e-5)


def test_a_recording_without_cards_leaves_them_to_first_use_and_they_equal_the_pass(recorded, tmp_path):
    """With ``cards=False`` no file is written, and the first use builds the cards the recording would have."""
    torch.manual_seed(0)
    ids = np.random.default_rng(0).integers(0, 12, 3000)
    plain = lstmviz.open_run(
        lstmviz.record_corpus(Tiny().eval(), ids, tmp_path / "run", streams=7, chunk=50, progress=False, cards=False)
    )
    assert not any("cards" in plain.info(name) for name in plain.names)
    assert not (plain.path / "cache" / "cards").exists()
    name, unit = "rnn.l0.fwd.h", 3
    for sign in (1, -1):
        assert plain.top_contexts(name, unit, sign=sign).equals(recorded.top_contexts(name, unit, sign=sign))
    assert plain.correlated_units(name, unit).equals(recorded.correlated_units(name, unit))


def test_cli_record_writes_every_activations_cards_unless_told_not_to(tmp_path):
    from lstmviz.cli import main

    argv = [*record_argv(tmp_path, "lstm"), "--no-progress"]
    assert main([str(a) for a in [*argv, "--out", tmp_path / "with"]]) == 0
    assert main([str(a) for a in [*argv, "--out", tmp_path / "without", "--no-cards"]]) == 0
    with_, without = lstmviz.open_run(tmp_path / "with"), lstmviz.open_run(tmp_path / "without")
    assert all((with_.path / with_.info(n)["cards"]).is_file() for n in with_.names)
    assert not any("cards" in without.info(n) for n in without.names)


def test_a_pick_at_the_long_blocks_bound_itself_is_kept():
    """The picks' floor is the (2k − 1)-th best bound of the long blocks (here overview bins of 3 positions, each
    bin's best value): the second pick is exactly the third bin's bound (3 at 8), since the second bin's 4 (at 3) is
    inside the first pick's window. Both signs (the negated corpus for −1), chunks in any order."""
    x = np.array([0, 0, 5, 4, 0, 0, 0, 0, 3, 0, 0, 1], np.float16)[:, None]
    for data in (x, -x):
        for order in (None, 0, 1):
            out = cards.merge_parts([pass_parts(data, len(data), 2, 1, 1, 2, order, per=3)], len(data), 2, 1)
            check_top(out, data, 2, 1)
    part = pass_parts(x, 12, 2, 1, 1, 5, per=3)
    assert (part["top_pos_keys"][0] > 0).sum() == 3  # the floor cut the candidates to the bound: 5, 4 and 3
    assert cards.merge_parts([part], 12, 2, 1)["top_pos"][0].tolist() == [2, 8]


@settings(max_examples=100, deadline=None)
@given(
    data=st.lists(levels, min_size=1, max_size=400),
    k=st.integers(1, 5),
    window=st.integers(0, 3),
    streams=st.integers(1, 4),
    over=st.integers(0, 12),
    order=st.none() | st.integers(0, 3),
    cut=st.integers(0, 400),
    bins=st.booleans(),
)
def test_long_blocks_prune_exactly_across_streams_chunks_and_shards(data, k, window, streams, over, order, cut, bins):
    """Overview bins at least 2·window + 1 long (so the long blocks' bound prunes; or the sweep's own blocks of
    64), with ties, NaN rows and ±inf, chunks of any length, in two shards cut anywhere (inside a bin): the merged
    top contexts equal brute force, and each shard kept every pick it holds."""
    x = np.array(data, np.float16)[:, None]
    per = 2 * window + 1 + over if bins else None
    chunk = 1 + (over * 7 + window) % 13
    cut = min(cut, len(x))
    parts, kept = [], []
    for a, b in ((0, cut), (cut, len(x))):
        if b > a:
            parts.append(pass_parts(x[a:b], len(x), k, window, streams, chunk, order, offset=a, per=per))
            kept.append((a, b, parts[-1]))
    out = cards.merge_parts(parts, len(x), k, window)
    check_top(out, x, k, window)
    f = x[:, 0].astype(np.float32)
    for sign in (1, -1):
        for p in brute_top(sign * f, k, window):
            key = cs.card_keys(cs.key((sign * x[p : p + 1, 0]).view(np.uint16)), [p])[0]
            a, b, part = next(fl for fl in kept if fl[0] <= p < fl[1])
            assert key in part["top_pos_keys" if sign > 0 else "top_neg_keys"][0]  # its shard kept every pick


@pytest.mark.parametrize("per", [None, 134])
def test_long_blocks_keep_few_candidates_on_a_long_corpus(per):
    """On 200k steps of smooth (clustered maxima) and of white noise the bound leaves far fewer kept keys than
    M = 400 (what pruning is for), and the top contexts stay those of brute force: with the sweep's own blocks and
    with the overview's bins of a 200k-token recording."""
    rng = np.random.default_rng(11)
    n = 200_000
    z = rng.normal(size=(n + 49, 2))
    x = np.stack([np.convolve(z[:, 0], np.ones(50) / 7, "valid"), z[49:, 1]], 1).astype(np.float16)
    part = pass_parts(x, n, 20, 10, 64, 128, per=per)
    check_top(cards.merge_parts([part], n, 20, 10), x, 20, 10)
    assert ((part["top_pos_keys"] > 0).sum(1) < 200).all()
