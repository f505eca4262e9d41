"""lstmviz.unit_sweep against brute force: order statistics, the cards' candidates, the counts beyond ±θ and the
sampled values, over spills laid out with gaps between the units' runs, on values with ±0, ±inf, NaN of both signs,
denormals and long ties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cards import brute_top

import lstmviz
from lstmviz import f16keys as cs
from lstmviz import unit_sweep as us
from lstmviz.analysis.match_pass import recording_observers
from lstmviz.bins import BinSums, no_keys
from lstmviz.cards.inpass import theta_keys
from lstmviz.store import RunWriter, tokens_frame
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
    miscounted=st.booleans(),
)
def test_sweep_equals_brute_force(seed, n, U, n_pieces, gap, m, nth, span, per, miscounted):
    """With its own blocks (per None) and with an overview's bins of ``per`` rows whose extremes and sums are given,
    as the writer's stats pass takes them; where the pass counted a unit's values otherwise than the file holds
    them (``miscounted``: a row written twice, its first value's extremes left in the bins), the sweep takes that
    unit's blocks itself. It keeps exactly the top m keys, or fewer where fewer lie at or above the floor of the
    long blocks' extremes."""
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
    origin = int(rng.integers(0, 100)) if per else 0
    blocks = None if per is None else given_bins(bits, origin, per)
    if blocks is not None and miscounted:
        u, r = int(rng.integers(0, U)), int(rng.integers(0, n))
        b = (origin + r) // per
        blocks.keys[b, :, u] = -0x7BFF, 0x7BFF  # an earlier write of ∓65504, beyond every stored finite value
        blocks.count[b, u] += 1
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
            # what it keeps is the top of every key (an upper set): the top m, or those at or above the floor
            assert kept.tolist() == every[: len(kept)].tolist()
            at_floor = sign * us.raw_key(bits[pos, u]) >= sign * floor(
                bits[:, u], origin, per or us.BLOCK, span, nth, sign
            )
            assert len(kept) == min(m, at_floor.sum())
            assert (got[len(kept) :] == 0).all()
        inside = (sample_pos >= offset) & (sample_pos < offset + n)
        np.testing.assert_array_equal(out["sample"][u, inside], bits[sample_pos[inside] - offset, u])
        assert (out["sample"][u, ~inside] == 0x7E00).all()


def extremes(bits: np.ndarray, origin: int, per: int, blocks: int, finite: bool = True) -> np.ndarray:
    """Brute force: per block of ``per`` rows (row r in block (origin + r) // per), the min and max order keys of
    each unit's finite values (or with ``finite`` False, of those that are not NaN), int16 ``[blocks, 2, U]``
    (NO_KEY, −NO_KEY where none)."""
    x = bits.view(np.float16)
    keys = cs.key(bits).astype(np.int64)
    out = no_keys(blocks, bits.shape[1])
    block = (origin + np.arange(len(bits))) // per
    for b in np.unique(block):
        ok, k = (np.isfinite if finite else lambda v: ~np.isnan(v))(x[block == b]), keys[block == b]
        out[b] = np.where(ok, k, cs.NO_KEY).min(0), np.where(ok, k, -cs.NO_KEY).max(0)
    return out


def given_bins(bits: np.ndarray, origin: int, per: int) -> BinSums:
    """An overview's bins of ``per`` rows from ``origin`` as the stats pass leaves them (the finite values'
    extremes, the sums and counts of those that are not NaN), and a bin or two past the rows."""
    blocks = (origin + len(bits) - 1) // per + 1 + int(origin % 2)
    x = bits.view(np.float16).astype(np.float64)
    ok = ~np.isnan(x)
    sums, count = np.zeros((blocks, bits.shape[1])), np.zeros((blocks, bits.shape[1]), np.int64)
    block = (origin + np.arange(len(bits))) // per
    with np.errstate(invalid="ignore"):  # inf − inf
        np.add.at(sums, block, np.where(ok, x, 0))
    np.add.at(count, block, ok)
    return BinSums(origin, per, sums, count, extremes(bits, origin, per, blocks))


def floor(bits: np.ndarray, origin: int, per: int, span: int, nth: int, sign: int) -> int:
    """Brute force: the nth best max (sign 1) or min (−1) raw key of the values that are not NaN over the blocks
    of at least ``span`` rows that hold one; the worst key where fewer blocks do. bits uint16 ``[n]``."""
    raw = us.raw_key(bits)
    ok = (raw >= us.LOWEST) & (raw <= us.HIGHEST)
    block = (origin + np.arange(len(bits))) // per
    bounds = [sign * raw[(block == b) & ok].max(initial=-1) if sign > 0 else -raw[(block == b) & ok].min()
              for b in np.unique(block) if (block == b).sum() >= span and ((block == b) & ok).any()]  # fmt: skip
    if len(bounds) < nth:
        return 0 if sign > 0 else 0xFFFF
    return sign * sorted(bounds)[-nth]


def test_own_extremes_are_those_of_the_values():
    """The blocks' extremes the sweep takes itself (_extents, e.g. of a file read after its recording) are the min
    and max order keys of the values that are not NaN (±0, ±inf, NaN of both signs and denormals in play), over
    runs laid out in pieces that start and end inside blocks, with rows between them that no tile covers; and the
    rows each block holds (_rows)."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        n, U = int(rng.integers(1, 300)), int(rng.integers(1, 4))
        bits = rng.choice(SPECIAL, (n, U)) if rng.random() < 0.3 else draw_bits(rng, n, U)
        cuts = np.unique(np.r_[0, rng.integers(0, n, 4), n])
        pieces = [(int(a), int(b)) for a, b in itertools.pairwise(cuts) if b > a]
        pieces = [pc for pc in pieces if rng.random() < 0.8] or pieces[:1]
        values, tiles = laid_out(bits, pieces, 2)
        covered = np.zeros(n, bool)
        for a, b in pieces:
            covered[a:b] = True
        origin, per = int(rng.integers(0, 50)), int(rng.integers(1, 80))
        blocks = (origin + n - 1) // per + 1
        want = extremes(np.where(covered[:, None], bits, 0x7E00).astype(np.uint16), origin, per, blocks, False)
        for u in range(U):
            keys = no_keys(blocks, 1)[:, :, 0].copy()
            us._extents(values, tiles, u, origin, per, keys)
            np.testing.assert_array_equal(keys, want[:, :, u])
        rows = np.bincount((origin + np.flatnonzero(covered)) // per, minlength=blocks)
        np.testing.assert_array_equal(us._rows(tiles, origin, per, blocks), rows)


def test_summaries_of_the_stats_pass_bins_are_the_extremes_of_the_values():
    """A bin's summary from the stats pass's keys (finite values only) and sums is the max and min raw key of its
    values that are not NaN: ±inf from the sign of a non-finite sum, a bin of +inf alone or −inf alone or NaN
    alone among them."""
    rng = np.random.default_rng(3)
    for _ in range(100):
        n, U = int(rng.integers(1, 200)), int(rng.integers(1, 4))
        bits = rng.choice(SPECIAL, (n, U)) if rng.random() < 0.5 else draw_bits(rng, n, U)
        origin, per = int(rng.integers(0, 20)), int(rng.integers(1, 12))
        given = given_bins(bits, origin, per)
        own = extremes(bits, origin, per, len(given.keys), False)
        for u in range(U):
            summary = np.zeros((2, len(given.keys)), np.int64)
            us._summary(given.keys, given.sum, u, summary)
            np.testing.assert_array_equal(summary[0], us.raw_key(cs.key_bits(own[:, 1, u])))
            np.testing.assert_array_equal(summary[1], us.raw_key(cs.key_bits(own[:, 0, u])))


@pytest.mark.parametrize("twice", [False, True])
def test_recorded_cards_are_exact_where_the_bins_prune(tmp_path, twice):
    """A recording of 40k steps, whose overview bins (27 positions) are long enough to prune, with ±inf in a few
    units, NaN and a long tie: the top contexts of both signs that the recording built equal brute force over the
    stored values. With ``twice``, rows written twice, first with values the file will not hold (the stats pass
    counts both writes, and the sweep sees its counts are not the file's)."""
    from lstmviz.cards.build import card_file

    rng = np.random.default_rng(1)
    n, U, k, w = 40_000, 12, 20, 10
    walk = np.cumsum(rng.normal(size=(n, U)), 0) / 20  # clustered maxima, as a cell state's
    x = (np.tanh(walk / 3) * 4).astype(np.float16)
    x[rng.random((n, U)) < 0.02] = np.nan
    x[rng.random(n) < 0.002, 0] = np.inf
    x[rng.random(n) < 0.002, 1] = -np.inf
    x[:, 3] = 1.0
    act = Activation.from_name("rnn.l0.fwd.c", U)
    with RunWriter(tmp_path / "r", tokens_frame([str(i) for i in range(n)]), [act],
                   observers=recording_observers(n, cards=True)) as wr:  # fmt: skip
        if twice:
            wr.write(act.name, 5000, np.full((1000, U), 3.5, np.float16))
        wr.write(act.name, 0, x)
    run = lstmviz.open_run(tmp_path / "r")
    with np.load(run.cache_dir / "cards" / card_file(act.name, n)) as z:
        out = dict(z)
    f = x.astype(np.float32)
    for u in range(U):
        for sign, key in ((1, "top_pos"), (-1, "top_neg")):
            got = out[key][u]
            assert got[got >= 0].tolist() == brute_top(sign * f[:, u], k, w), (u, sign)


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
