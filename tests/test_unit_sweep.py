"""lstmviz.unit_sweep against brute force: order statistics, the cards' candidates, the counts beyond ±θ and the
sampled values, over spills laid out with gaps between the units' runs, on values with ±0, ±inf, NaN of both signs,
denormals and long ties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lstmviz
from lstmviz import f16keys as cs
from lstmviz import unit_sweep as us
from lstmviz.analysis.match_pass import recording_observers
from lstmviz.cards.inpass import theta_keys
from lstmviz.store import tokens_frame, write_run
from lstmviz.store.format import Activation

SPECIAL = np.array([0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0xFE00, 0x7C01, 0x0001, 0x8001, 0x3C00, 0xBC00], np.uint16)


def laid_out(bits: np.ndarray, pieces: list[tuple[int, int]], gap: int) -> tuple[np.ndarray, np.ndarray]:
    """bits uint16 [n, U] stored as the row pieces (a, b), in the given order, each unit's run followed by ``gap``
    filler patterns (NaN, which the sweep must never read): (values [*], tiles int64 [k, 4] in corpus order)."""
    U = bits.shape[1]
    flat, tiles, at = [], [], 0
    for a, b in pieces:
        c = b - a
        tile = np.full((U, c + gap), 0x7E01, np.uint16)
        tile[:, :c] = bits[a:b].T
        tiles.append((a, c, at, c + gap))
        flat.append(tile.ravel())
        at += tile.size
    return np.concatenate(flat), np.array(sorted(tiles), np.int64).reshape(-1, 4)


def draw_bits(rng: np.random.Generator, n: int, U: int) -> np.ndarray:
    """Every kind of pattern: special ones, a few levels (long ties) and random finite ones."""
    bits = rng.integers(0, 0x7C00, (n, U)).astype(np.uint16) | (rng.integers(0, 2, (n, U)) << 15).astype(np.uint16)
    levels = np.array([0x3800, 0xB800, 0x3C00, 0x0000], np.uint16)
    pick = rng.random((n, U))
    bits[pick < 0.3] = rng.choice(levels, (pick < 0.3).sum())
    bits[pick > 0.9] = rng.choice(SPECIAL, (pick > 0.9).sum())
    return bits


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 300),
    U=st.integers(1, 5),
    n_pieces=st.integers(1, 12),
    gap=st.integers(0, 3),
    m=st.integers(1, 40),
    nth=st.integers(1, 6),
    span=st.integers(1, 9),
    per=st.one_of(st.none(), st.integers(1, 70)),
)
def test_sweep_equals_brute_force(seed, n, U, n_pieces, gap, m, nth, span, per):
    """With its own blocks (per None) and with an overview's bins of ``per`` rows whose extremes are given, as the
    writer's stats pass takes them."""
    rng = np.random.default_rng(seed)
    bits = draw_bits(rng, n, U)
    cuts = np.unique(np.r_[0, rng.integers(0, n, n_pieces), n])
    pieces = [(int(a), int(b)) for a, b in itertools.pairwise(cuts) if b > a]
    rng.shuffle(pieces)
    values, tiles = laid_out(bits, pieces, gap)
    offset = int(rng.integers(0, 1000))
    sample_pos = np.sort(rng.choice(n + 2 * offset + 5, min(20, n), replace=False)).astype(np.int64)
    above, below = theta_keys(0.5)
    sweep = us.Sweep(U)
    q = float(rng.random())
    p = (n - 1) * q
    r0, r1 = int(np.floor(p)), min(int(np.floor(p)) + 1, n - 1)
    sweep.want_ranks(r0, r1)
    blocks = None if per is None else given_bins(bits, int(rng.integers(0, 100)), per)
    sweep.want_cards(m, nth, span, offset, above, below, sample_pos, blocks)
    out = sweep.run(values, tiles)
    x = bits.view(np.float16).astype(np.float32)
    for u in range(U):
        ok = ~np.isnan(x[:, u])
        assert out["nan"][u] == (~ok).sum()
        srt = np.sort(x[ok, u])
        for side, r in enumerate((r0, r1)):
            if r < len(srt):
                assert out["order"][side, u].view(np.float16) == srt[r]
        assert out["dens"][0, u] == (x[:, u] > 0.5).sum() and out["dens"][1, u] == (x[:, u] < -0.5).sum()
        keys = cs.key(bits[:, u])
        pos = np.flatnonzero(ok)
        for s, sign in enumerate((1, -1)):
            every = np.sort(cs.card_keys(sign * keys[pos], offset + pos))[::-1]
            got = out["top"][s, u]
            kept = got[got > 0]
            assert (np.diff(kept) < 0).all()  # descending, distinct
            # what it keeps is the top of every key (an upper set) of at most m, and holds the top min(m, …) that
            # lie at or above the floor the long blocks prove, so it can be shorter than m, never out of order
            assert kept.tolist() == every[: len(kept)].tolist()
            assert (got[len(kept) :] == 0).all()
        inside = (sample_pos >= offset) & (sample_pos < offset + n)
        np.testing.assert_array_equal(out["sample"][u, inside], bits[sample_pos[inside] - offset, u])
        assert (out["sample"][u, ~inside] == 0x7E00).all()


def extremes(bits: np.ndarray, origin: int, per: int, blocks: int) -> np.ndarray:
    """Brute force: per block of ``per`` rows (row r in block (origin + r) // per), the min and max order keys of
    each unit's finite values, int16 ``[blocks, 2, U]`` (NO_KEY, −NO_KEY where none)."""
    x = bits.view(np.float16)
    keys = cs.key(bits).astype(np.int64)
    out = np.empty((blocks, 2, bits.shape[1]), np.int16)
    out[:, 0], out[:, 1] = cs.NO_KEY, -cs.NO_KEY
    block = (origin + np.arange(len(bits))) // per
    for b in np.unique(block):
        fin, k = np.isfinite(x[block == b]), keys[block == b]
        out[b] = np.where(fin, k, cs.NO_KEY).min(0), np.where(fin, k, -cs.NO_KEY).max(0)
    return out


def given_bins(bits: np.ndarray, origin: int, per: int) -> us.Blocks:
    """An overview's bins of ``per`` rows from ``origin``, their extremes as the stats pass leaves them, and a bin
    or two past the rows."""
    blocks = (origin + len(bits) - 1) // per + 1 + int(origin % 2)
    return us.Blocks(origin, per, extremes(bits, origin, per, blocks))


def test_own_extremes_are_the_stats_pass_ones():
    """The blocks' extremes the sweep takes itself of a file read after its recording (_extents) are what the
    stats pass leaves in an overview's bins: the min and max order keys of the finite values (±0, ±inf, NaN of
    both signs and denormals in play), over runs laid out in pieces that start and end inside blocks."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        n, U = int(rng.integers(1, 300)), int(rng.integers(1, 4))
        bits = rng.choice(SPECIAL, (n, U)) if rng.random() < 0.3 else draw_bits(rng, n, U)
        cuts = np.unique(np.r_[0, rng.integers(0, n, 4), n])
        values, tiles = laid_out(bits, [(int(a), int(b)) for a, b in itertools.pairwise(cuts) if b > a], 2)
        origin, per = int(rng.integers(0, 50)), int(rng.integers(1, 80))
        blocks = (origin + n - 1) // per + 1
        keys = us.no_keys(blocks, U)
        for u in range(U):
            us._extents(values, tiles, u, origin, per, keys)
        np.testing.assert_array_equal(keys, extremes(bits, origin, per, blocks))
        np.testing.assert_array_equal(us._rows(tiles, origin, per, blocks), np.bincount((origin + np.arange(n)) // per,
                                                                                       minlength=blocks))  # fmt: skip


def test_stats_pass_bins_bound_the_sweep(tmp_path):
    """In a recording, the sweep's blocks are the overview's bins, whose extremes the writer's stats pass took: the
    cards equal those of the same file swept after the recording with blocks of its own."""
    from lstmviz.cards import build_cards
    from lstmviz.cards.build import card_file

    rng = np.random.default_rng(1)
    n, U = 5000, 24
    x = rng.standard_t(3, (n, U)).astype(np.float16)
    x[rng.random((n, U)) < 0.01] = np.inf
    x[rng.random((n, U)) < 0.01] = -np.inf
    x[rng.random((n, U)) < 0.02] = np.nan
    x[:, 3] = 1.0  # one long tie
    act = Activation.from_name("rnn.l0.fwd.c", U)
    tokens = tokens_frame([str(i) for i in range(n)])
    write_run(tmp_path / "r", tokens, {act.name: x}, observers=recording_observers(n, cards=True))
    run = lstmviz.open_run(tmp_path / "r")
    path = run.cache_dir / "cards" / card_file(act.name, n)
    with np.load(path) as z:
        recorded = dict(z)
    path.unlink()
    build_cards(run, act.name)
    with np.load(path) as z:
        for key, value in z.items():
            np.testing.assert_array_equal(recorded[key], value, err_msg=key)


def test_raw_keys_order_the_values():
    every = np.arange(1 << 16, dtype=np.uint16)
    value = every.view(np.float16).astype(np.float64)
    ok = ~np.isnan(value)
    raw = us.raw_key(every)
    order = np.argsort(raw[ok], kind="stable")
    assert (np.diff(value[ok][order]) >= 0).all()
    assert raw[ok].min() == us.LOWEST and raw[ok].max() == us.HIGHEST
    assert (raw[~ok] < us.LOWEST).sum() + (raw[~ok] > us.HIGHEST).sum() == (~ok).sum()
    assert raw[0x8000] == raw[0x0000] == us.ZERO


def test_a_sweep_asked_again_over_other_rows_refuses():
    """Its result is computed once for every observer: a second call that counts other uncovered rows would get
    order statistics of the first call's rows, so it is refused."""
    values, tiles = laid_out(np.zeros((4, 2), np.uint16), [(0, 4)], 0)
    sweep = us.Sweep(2)
    sweep.want_ranks(0, 1)
    sweep.run(values, tiles, 0)
    assert sweep.run(values, tiles, 0)["order"].shape == (2, 2)
    with pytest.raises(ValueError, match="uncovered rows"):
        sweep.run(values, tiles, 3)
