"""lstmviz.unit_sweep against brute force: order statistics, the cards' candidates, the counts beyond ±θ and the
sampled values, over spills laid out with gaps between the units' runs, on values with ±0, ±inf, NaN of both signs,
denormals and long ties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lstmviz import f16keys as cs
from lstmviz import unit_sweep as us
from lstmviz.cards.inpass import theta_keys

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
)
def test_sweep_equals_brute_force(seed, n, U, n_pieces, gap, m, nth, span):
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
    sweep.want_cards(m, nth, span, offset, above, below, sample_pos)
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


def test_summaries_bound_every_block():
    """The scatter's summary of each 64-row block: its largest raw key at or above the block's largest non-NaN
    value and its smallest at or below the smallest; a bound, where given, equal to them; and the histogram of
    the run (±0 and NaN of both signs in play, the last block short)."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 300))
        run = rng.choice(SPECIAL, n) if rng.random() < 0.5 else draw_bits(rng, n, 1)[:, 0]
        values = np.r_[np.full(3, 0x7E01, np.uint16), run]  # the run starts at an offset
        blocks = -(-n // 64)
        summary, size = np.zeros((2, blocks + 1), np.int64), np.zeros(blocks + 1, np.int64)
        h0, h1 = np.zeros(1 << 16, np.int32), np.zeros(1 << 16, np.int32)
        assert us._scatter_blocks(values, 3, n, h0, h1, summary, size, 1) == blocks + 1
        raw_all = us.raw_key(run)
        np.testing.assert_array_equal(h0 + h1, np.bincount(raw_all, minlength=1 << 16))
        for b in range(blocks):
            raw = raw_all[64 * b : 64 * b + 64]
            out = summary[:, b + 1]
            bounds = us._bound(out[0]), us._bound(out[1])  # what the floor takes of them
            assert size[b + 1] == len(raw)
            assert out[0] == raw.max() and out[1] == raw.min()
            fin = raw[(raw >= us.LOWEST) & (raw <= us.HIGHEST)]
            if len(fin):
                assert out[0] >= fin.max() and out[1] <= fin.min()
                assert bounds[0] in (-1, fin.max()) and bounds[1] in (-1, fin.min())
                if len(fin) == len(raw):  # no NaN: the bounds are given
                    assert bounds[0] == fin.max() and bounds[1] == fin.min()
            else:
                assert bounds[0] == bounds[1] == -1


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
