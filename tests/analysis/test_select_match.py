"""select / match: known answers on planted data, and identity with the dense brute-force scan."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lstmviz.analysis import match_bits
from lstmviz.analysis import select_match as sm
from lstmviz.analysis.select_match import OnIndex, Threshold, match, match_index, match_scan, on_index, select
from lstmviz.store import RunError

NAME = "rnn.l0.fwd.h"


def planted() -> np.ndarray:
    """[40, 8] of zeros with units switched on (value 1) at known steps."""
    x = np.zeros((40, 8), np.float32)
    x[10:15, 3] = 1  # exactly the span
    x[9:15, 5] = 1  # one step early: a near-miss with one failure (padding)
    x[11:15, 6] = 1  # one step late: a near-miss with one failure (span)
    x[:, 7] = 1  # always on: fails both padding steps
    x[10:15, 1] = 0.5  # below θ = 0.6
    return x


def test_select_finds_the_planted_unit_and_ranks_near_misses(make_run):
    run = make_run({NAME: planted()})
    s = select(run, NAME, (10, 15), threshold=0.6, pad_before=1, pad_after=1, max_fail=3)
    assert s.units.tolist() == [3]
    assert s.near_misses["unit"].tolist()[:2] == [5, 6]
    assert s.near_misses.set_index("unit").loc[5, "on_in_padding"] == 1
    assert s.near_misses.set_index("unit").loc[6, "off_in_span"] == 1
    assert s.near_misses.set_index("unit").loc[7, "n_fail"] == 2
    assert 1 not in s.near_misses["unit"].tolist()  # off at all 5 span steps: more than max_fail
    assert select(run, NAME, (10, 15), 0.6, 1, 1).near_misses["unit"].tolist() == [5, 6]  # default: ≤ 1
    loose = select(run, NAME, (10, 15), threshold=0.4)
    assert set(loose.units.tolist()) == {1, 3, 5, 7}


def test_select_with_a_quantile_threshold(make_run, rng):
    x = rng.normal(size=(500, 6)) * np.arange(1, 7)  # units on different scales: one absolute θ fits none
    x[200:204] = 10 * np.arange(1, 7)
    run = make_run({NAME: x})
    s = select(run, NAME, (200, 204), Threshold(0.99, quantile=True), pad_before=2, pad_after=2)
    stored = run.activations(NAME)
    np.testing.assert_array_equal(s.theta, np.quantile(stored, 0.99, axis=0).astype(np.float32))
    pads = stored[[198, 199, 204, 205]]
    assert sorted(s.units.tolist()) == [u for u in range(6) if (pads[:, u] < s.theta[u]).all()]


def test_select_rejects_an_empty_span(make_run):
    run = make_run({NAME: planted()})
    with pytest.raises(RunError, match="span"):
        select(run, NAME, (5, 5))


def test_match_ranks_as_lstmvis(make_run):
    """Three spans where units {0, 1} are on: ranked by selected on, then fewest extra, then length."""
    x = np.zeros((60, 6), np.float32)
    x[5:9, [0, 1]] = 1  # both selected, no extra, length 4
    x[20:26, [0, 1, 4]] = 1  # both selected, one extra, length 6
    x[40:43, [0, 1]] = 1  # both selected, no extra, length 3
    x[50:58, 0] = 1  # one selected, length 8
    run = make_run({NAME: x}, tokens=[f"w{i}" for i in range(60)])
    got = match(run, NAME, [0, 1], threshold=0.5, context=2)
    assert got[["start", "stop", "n_selected", "n_extra"]].values.tolist() == [
        [5, 9, 2, 0],
        [40, 43, 2, 0],
        [20, 26, 2, 1],
        [50, 58, 1, 0],
    ]
    first = got.iloc[0]
    assert (first["before"], first["text"], first["after"]) == ("w3 w4", "w5 w6 w7 w8", "w9 w10")
    strict = match(run, NAME, [0, 1], threshold=0.5, min_selected=2)
    assert strict["start"].tolist() == [5, 40, 20]


@settings(max_examples=150, deadline=None)
@given(
    T=st.integers(1, 90),
    U=st.integers(1, 10),
    density=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**32 - 1),
    pads=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    min_length=st.integers(1, 4),
    top=st.integers(1, 12),
    jit=st.booleans(),
    data=st.data(),
)
def test_match_index_equals_brute_force(T, U, density, seed, pads, min_length, top, jit, data):
    rng = np.random.default_rng(seed)
    x = (rng.random((T, U)) < density).astype(np.float32)
    units = data.draw(st.lists(st.integers(0, U - 1), min_size=1, max_size=U, unique=True))
    min_selected = data.draw(st.integers(1, len(units)))
    index = OnIndex(np.packbits(x >= 0.5, axis=1, bitorder="little"), np.full(U, 0.5, np.float32), T)
    kw = dict(pad_before=pads[0], pad_after=pads[1], min_length=min_length, min_selected=min_selected, top=top)
    saved, sm.jit = sm.jit, (sm.jit if jit else lambda: None)  # the compiled kernels and their numpy twins
    try:
        fast = match_index(index, units, **kw)
    finally:
        sm.jit = saved
    slow = match_scan(x, index.theta, units, **kw)
    assert fast.values.tolist() == slow.values.tolist()


@pytest.mark.parametrize("threshold", [0.2, Threshold(0.8, quantile=True)])
def test_match_on_a_run_equals_brute_force(make_run, threshold, monkeypatch):
    """Smooth random walks (long runs), T not a multiple of 8, built through the cached index."""
    rng = np.random.default_rng(7)
    x = np.tanh(np.cumsum(rng.normal(0, 0.3, (3001, 24)), axis=0) / 3).astype(np.float32)
    run = make_run({NAME: x})
    values = run.activations(NAME)
    index = on_index(run, NAME, threshold)
    if isinstance(threshold, Threshold):
        np.testing.assert_array_equal(index.theta, np.quantile(values, 0.8, axis=0).astype(np.float32))
    for units in ([0, 1, 2], [5], list(range(0, 24, 3))):
        got = match(run, NAME, units, threshold, pad_before=1, pad_after=2, top=30)
        want = match_scan(values, index.theta, units, pad_before=1, pad_after=2, top=30)
        assert got[want.columns].values.tolist() == want.values.tolist()
    monkeypatch.setattr(match_bits, "build_index", lambda *a: pytest.fail("the cached index was rebuilt"))
    on_index(run, NAME, threshold)


def test_match_rejects_bad_units(make_run):
    run = make_run({NAME: planted()})
    with pytest.raises(RunError, match="units"):
        match(run, NAME, [8])
    with pytest.raises(RunError, match="min_selected"):
        match(run, NAME, [1, 2], min_selected=3)


@pytest.mark.parametrize("threshold", [Threshold(0.2), Threshold(0.7, quantile=True)])
@pytest.mark.parametrize("window", [(0, 500), (37, 61), (480, 500), (490, 700), (None, None), (100, 100)])
def test_on_counts_of_a_window_equal_brute_force(make_run, rng, threshold, window):
    """A window's counts are the units on (≥ θ) at each of its steps, counted on the values themselves, and the
    whole run's counts sliced there."""
    x = rng.normal(size=(500, 13))
    run = make_run({NAME: x})
    units = [12, 0, 7, 8, 3]
    index = on_index(run, NAME, threshold)
    values = run.activations(NAME)
    want = (values[slice(*window)][:, units] >= index.theta[units]).sum(1)
    got = sm.on_counts(index, units, *window)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, sm.on_counts(index, units)[slice(*window)])


@settings(max_examples=60, deadline=None)
@given(
    T=st.integers(1, 400),
    U=st.sampled_from([64, 128, 130]),
    density=st.floats(0.3, 0.97),
    smooth=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
    pads=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    top=st.integers(1, 30),
    data=st.data(),
)
def test_wide_rows_and_many_units_equal_brute_force(T, U, density, smooth, seed, pads, top, data):
    """Rows of whole 64-bit words (64 or 128 units; 130 is not) with many units selected: the counts from a pass
    over the words, and the levels of one stack scan per band of levels, as the dense scan finds them. Runs
    held for ``smooth`` steps give counts that stay high, so several bands are visited."""
    rng = np.random.default_rng(seed)
    x = np.repeat(rng.random((-(-T // smooth), U)) < density, smooth, axis=0)[:T].astype(np.float32)
    units = data.draw(st.lists(st.integers(0, U - 1), min_size=1, max_size=U, unique=True))
    min_selected = data.draw(st.integers(1, len(units)))
    index = OnIndex(np.packbits(x >= 0.5, axis=1, bitorder="little"), np.full(U, 0.5, np.float32), T)
    np.testing.assert_array_equal(sm.on_counts(index, units), (x[:, units] >= 0.5).sum(1))
    kw = dict(pad_before=pads[0], pad_after=pads[1], min_selected=min_selected, top=top)
    assert match_index(index, units, **kw).values.tolist() == match_scan(x, index.theta, units, **kw).values.tolist()


def test_level_spans_list_each_levels_maximal_runs_once():
    """Every band of levels lists the runs whose minimum count lies in it, as the per-level scan finds them."""
    k = match_bits.jit()
    if k is None:
        pytest.skip("numba is not available here")
    rng = np.random.default_rng(3)
    count = np.clip(np.cumsum(rng.integers(-2, 3, 3000)) % 23 - 3, 0, 19).astype(np.int32)
    for lo, hi in [(1, 19), (17, 19), (5, 9), (1, 1), (19, 19)]:
        a, b, level = k.level_spans(count, lo, hi)
        want = []
        prev_a = prev_b = np.zeros(0, np.int64)
        for m in range(19, 0, -1):
            ra, rb, new = sm._level_runs(count, m, prev_a, prev_b)
            prev_a, prev_b = ra, rb
            want += [(int(s), int(e), m) for s, e in zip(ra[new], rb[new], strict=True) if lo <= m <= hi]
        assert sorted(zip(a.tolist(), b.tolist(), level.tolist(), strict=True)) == sorted(want)
        assert (np.diff(b) >= 0).all()  # in order of stop, so each level's runs are in corpus order
