"""The writer's stats pass (lstmviz.store._stats_jit) against plain numpy over the float16 values as stored, on
chunks made to break it: NaN, ±inf, denormals, ±0, saturated runs, bin edges, float16's largest values, odd T,
U not a multiple of 16, counts below T (and 0); and the overview it sums against OverviewBuilder's numpy path."""

from __future__ import annotations

import numpy as np
import pytest

import lstmviz
from lstmviz import f16keys as cs
from lstmviz.analysis.overview import OverviewBuilder, overview_path
from lstmviz.store import HIGH, HIST_BINS, LOW, RunWriter, tokens_frame
from lstmviz.store._stats_jit import code_table, stats_pass
from lstmviz.store.format import Activation
from lstmviz.store.stats import Stats, bin_sums, hist_range

ALL = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)  # every float16, as float32


def adversarial(rng: np.random.Generator, B: int, T: int, U: int, kind: str) -> np.ndarray:
    """float16 ``[B, T, U]`` of one kind's values with every special case in some unit."""
    x = 1 / (1 + np.exp(-rng.normal(0, 3, (B, T, U)))) if kind == "f" else rng.normal(0, 2, (B, T, U))
    x = x.astype(np.float16)
    pick = rng.random(x.shape)
    x[pick < 0.03] = np.nan
    x[(pick >= 0.03) & (pick < 0.05)] = np.inf
    x[(pick >= 0.05) & (pick < 0.07)] = -np.inf
    x[(pick >= 0.07) & (pick < 0.09)] = np.float16(3e-7)  # denormals of both signs
    x[(pick >= 0.09) & (pick < 0.10)] = np.float16(-6e-8)
    x[(pick >= 0.10) & (pick < 0.12)] = -0.0
    x[(pick >= 0.12) & (pick < 0.13)] = 0.0
    x[:, :, 0] = 1.0  # saturated: every value in one bin
    x[:, ::2, 1 % U] = 0.0
    x[:, :, 2 % U] = np.float16(LOW)  # the thresholds themselves, as float16 (x < LOW is a float32 comparison)
    x[:, 1::3, 3 % U] = np.float16(HIGH)
    x[:, :, 4 % U] = (np.arange(T) % (HIST_BINS + 1) / HIST_BINS).astype(np.float16)  # every bin edge
    x[:, :, 5 % U] = np.where(np.arange(T) % 2, 65504, -65504)  # float16's largest, both signs
    x[:, :, 6 % U] = np.nan  # never finite
    return x


def oracle(x: np.ndarray, lo: float, hi: float) -> dict[str, np.ndarray]:
    """The stats of float32 values ``[n, units]`` computed plainly."""
    fin = np.isfinite(x)
    xf = np.where(fin, x, 0).astype(np.float64)
    with np.errstate(invalid="ignore"):
        bins = np.clip((x - np.float32(lo)) * np.float32(HIST_BINS / (hi - lo)), 0, HIST_BINS - 1).astype(np.int64)
    keys = cs.key(x.astype(np.float16).view(np.uint16))
    return {
        "sum": xf.sum(0),
        "sumsq": (xf**2).sum(0),
        "min": np.where(fin, keys, cs.NO_KEY).min(0, initial=cs.NO_KEY),
        "max": np.where(fin, keys, -cs.NO_KEY).max(0, initial=-cs.NO_KEY),
        "hist": np.stack([np.bincount(bins[fin[:, u], u], minlength=HIST_BINS) for u in range(x.shape[1])]),
        "counts": np.stack([(x < LOW).sum(0), (x > HIGH).sum(0), np.isnan(x).sum(0), np.isinf(x).sum(0)]),
    }


@pytest.mark.parametrize("overview", [True, False])
@pytest.mark.parametrize(("kind", "U", "T"), [("f", 37, 45), ("c", 16, 33), ("c", 53, 16), ("f", 5, 7), ("c", 48, 130)])
def test_pass_equals_numpy_over_awkward_chunks(kind, U, T, overview):
    """Three chunks of 4 streams each, counts below T (one 0), rows at scattered positions: the tiles, the stats and
    (with an overview) the bins' sums and extremes equal plain numpy over the valid rows (the sums exactly: they are
    exact in float64); the extremes come from the bins with an overview, from each stream's rows without."""
    rng = np.random.default_rng(U * T)
    lo, hi = (0.0, 1.0) if kind == "f" else (-3.0, 3.0)
    codes, fold = code_table(lo, hi, HIST_BINS, LOW, HIGH)
    acc, extent = np.zeros((2, U)), np.array([[cs.NO_KEY], [-cs.NO_KEY]], np.int64).repeat(U, 1)
    hist = np.zeros((U, len(fold)), np.int64)
    n, per = 40 * T, 7
    ov = bin_sums(5, per, -(-(n + 5) // per), U)
    ov_sum, ov_count, ov_keys = ov.sum, ov.count, ov.keys
    rows, positions = [], []
    for chunk in range(3):
        x = adversarial(rng, 4, T, U, kind)
        counts = np.array([T, T - 1, 0, max(T // 3, 1)], np.int64)
        starts = (chunk * 4 + np.arange(4)) * (T + 3)
        tiles = np.zeros((4, U * T), np.uint16)
        stats_pass(x.view(np.uint16), counts, starts, codes, tiles, acc, extent, hist, overview, 5, per, ov_sum,
                   ov_count, ov_keys)  # fmt: skip
        for b in range(4):
            c = counts[b]
            np.testing.assert_array_equal(tiles[b, : U * c].reshape(U, c), x[b, :c].T.view(np.uint16))
            rows.append(x[b, :c].astype(np.float32))
            positions.append(5 + starts[b] + np.arange(c))
    values, pos = np.concatenate(rows), np.concatenate(positions)
    want = oracle(values, lo, hi)
    folded = hist @ fold
    np.testing.assert_array_equal(acc[0], want["sum"])
    np.testing.assert_allclose(acc[1], want["sumsq"], rtol=1e-12)
    np.testing.assert_array_equal(extent[0], want["min"])
    np.testing.assert_array_equal(extent[1], want["max"])
    np.testing.assert_array_equal(folded[:, :HIST_BINS], want["hist"])
    np.testing.assert_array_equal(folded[:, HIST_BINS + 1 :].T, want["counts"])
    if not overview:
        assert not ov_count.any() and (ov_keys[:, 0] == cs.NO_KEY).all() and (ov_keys[:, 1] == -cs.NO_KEY).all()
        return
    ok = ~np.isnan(values)
    bins = pos // per
    for b in np.unique(bins):
        at = bins == b
        with np.errstate(invalid="ignore"):  # inf − inf
            np.testing.assert_array_equal(ov_sum[b], np.where(ok[at], values[at], 0).astype(np.float64).sum(0))
        np.testing.assert_array_equal(ov_count[b], ok[at].sum(0))
        keys = cs.key(values[at].astype(np.float16).view(np.uint16)).astype(np.int64)
        finite = np.isfinite(values[at])
        np.testing.assert_array_equal(ov_keys[b, 0], np.where(finite, keys, cs.NO_KEY).min(0))
        np.testing.assert_array_equal(ov_keys[b, 1], np.where(finite, keys, -cs.NO_KEY).max(0))
    empty = np.setdiff1d(np.arange(len(ov_count)), bins)
    assert not ov_count[empty].any()
    assert (ov_keys[empty, 0] == cs.NO_KEY).all() and (ov_keys[empty, 1] == -cs.NO_KEY).all()


def test_overview_in_the_pass_equals_the_builders_own_kernel():
    """The bin sums the pass feeds (BinSums) equal, bit for bit, OverviewBuilder.update's compiled kernel fed the same
    float16 rows stream by stream: the same float64 additions in the same order, NaN left out, ±inf added."""
    rng = np.random.default_rng(3)
    act = Activation.from_name("rnn.l0.fwd.c", 40)
    fed, own = (OverviewBuilder(act.name, 40, 2000, max_bins=90) for _ in range(2))
    stats = Stats(act)
    for chunk in range(4):
        x = adversarial(rng, 4, 50, 40, "c")
        x[0, :, 9] = 1023.5  # large values, so that another order of the additions would show
        counts, starts = np.array([50, 49, 3, 0]), chunk * 500 + np.arange(4) * 120
        stats.update(x.view(np.uint16), counts, np.zeros((4, 40 * 50), np.uint16), starts, fed.overview_state)
        for b in range(4):
            own.update(int(starts[b]), x[b, : counts[b]])
    np.testing.assert_array_equal(fed.sum.view(np.int64), own.sum.view(np.int64))
    np.testing.assert_array_equal(fed.count, own.count)


@pytest.mark.parametrize(("lo", "hi"), [(0.0, 1.0), (-1.0, 1.0), (-37.5, 37.5), (0.3, 0.95)])
def test_code_table_is_the_float32_formula_for_every_pattern(lo, hi):
    """Each of the 65536 patterns' code folds to the bin numpy computes (float32, as the stats always have) and to
    exactly the classes x < LOW, x > HIGH, NaN, ±inf; a non-finite value has no bin."""
    codes, fold = code_table(lo, hi, HIST_BINS, LOW, HIGH)
    row = fold[codes]  # [65536, HIST_BINS + 5]
    fin = np.isfinite(ALL)
    with np.errstate(invalid="ignore"):
        bins = np.clip((ALL - np.float32(lo)) * np.float32(HIST_BINS / (hi - lo)), 0, HIST_BINS - 1)
    np.testing.assert_array_equal(row[fin, : HIST_BINS + 1].argmax(1), bins[fin].astype(np.int64))
    np.testing.assert_array_equal(row[:, : HIST_BINS + 1].sum(1), 1)
    np.testing.assert_array_equal(row[~fin, HIST_BINS], 1)
    low, high = np.float32(LOW), np.float32(HIGH)
    for col, want in enumerate([low > ALL, high < ALL, np.isnan(ALL), np.isinf(ALL)]):
        np.testing.assert_array_equal(row[:, HIST_BINS + 1 + col].astype(bool), want)


def test_recorded_overview_equals_the_builder_fed_the_rows(tmp_path, monkeypatch):
    """A recording whose chunks arrive out of order, with NaN and inf, writes the overview that OverviewBuilder's
    numpy path computes from the run's rows; the writer feeds the builder in its pass and never calls update."""
    rng = np.random.default_rng(5)
    n, U = 3000, 21
    x = adversarial(rng, 1, n, U, "c")[0]
    act = Activation.from_name("rnn.l0.fwd.c", U)
    monkeypatch.setattr(OverviewBuilder, "update", lambda *a: pytest.fail("update called"))
    with RunWriter(tmp_path / "r", tokens_frame([str(i) for i in range(n)]), [act],
                   observers=lambda a: [OverviewBuilder(a.name, a.units, n, max_bins=70)]) as w:  # fmt: skip
        for lo in rng.permutation(np.arange(0, n, 256)):
            starts = np.array([lo, min(lo + 128, n)])
            counts = np.minimum(starts + 128, n) - starts
            block = np.zeros((2, 128, U), np.float16)
            for b in range(2):
                block[b, : counts[b]] = x[starts[b] : starts[b] + counts[b]]
            w.write_blocks(act.name, starts, block, counts)
    monkeypatch.undo()
    want = OverviewBuilder(act.name, U, n, max_bins=70)
    with np.errstate(invalid="ignore"):
        want.update(0, x.astype(np.float32))  # float32: the numpy path
    run = lstmviz.open_run(tmp_path / "r")
    got = np.load(overview_path(run.cache_dir, act.name, n, want.bins, want.per))
    np.testing.assert_array_equal(got, want.means())
    assert np.isnan(got[:, 6]).all() and np.isinf(got).any()  # a NaN unit; bins with ±inf


def test_bin_sums_state_offsets_positions():
    """BinSums.offset shifts a chunk's rows, as a shard's rows sit at its start in the run."""
    act = Activation.from_name("rnn.l0.fwd.h", 17)
    x = np.random.default_rng(2).normal(size=(1, 30, 17)).astype(np.float16)
    s = bin_sums(100, 10, 20, 17)
    Stats(act).update(x.view(np.uint16), np.array([30]), np.zeros((1, 17 * 30), np.uint16), np.array([5]), s)
    np.testing.assert_array_equal(np.flatnonzero(s.count.any(1)), [10, 11, 12, 13])
    np.testing.assert_array_equal(s.count.sum(0), 30)
    np.testing.assert_array_equal(s.sum[10], x[0, :5].astype(np.float64).sum(0))


def test_rows_outside_the_bins_are_refused():
    """The pass writes where the positions say, so rows past the last bin (or before the first) are an error, not a
    write outside the arrays."""
    act = Activation.from_name("rnn.l0.fwd.h", 3)
    x = np.zeros((1, 4, 3), np.uint16)
    tiles = np.zeros((1, 12), np.uint16)
    s = bin_sums(0, 2, 3, 3)
    with pytest.raises(ValueError, match="outside"):
        Stats(act).update(x, np.array([4]), tiles, np.array([3]), s)
    with pytest.raises(ValueError, match="outside"):
        Stats(act).update(x, np.array([4]), tiles, np.array([-1]), s)
    Stats(act).update(x, np.array([4]), tiles, np.array([2]), s)
    np.testing.assert_array_equal(s.count.sum(), 12)


@pytest.mark.parametrize("kind", ["c", "h", "f", "g"])
def test_the_range_is_hist_range_of_the_first_chunk(kind):
    """The histogram's range comes from the first chunk's valid rows as hist_range reads them (±1.5·max|x| of the
    finite values for an unbounded kind), with NaN, inf, all-NaN and all-zero chunks among them."""
    from lstmviz.store.stats import hist_range

    rng = np.random.default_rng(7)
    act = Activation.from_name(f"rnn.l0.fwd.{kind}", 9)
    for trial in range(12):
        x = rng.normal(0, 10 ** rng.uniform(-3, 4), (3, 20, 9)).astype(np.float16)
        x[rng.random(x.shape) < 0.1] = np.inf
        x[rng.random(x.shape) < 0.1] = np.nan
        x[2, :, :] = 3e4  # beyond the valid rows
        if trial < 2:
            x[:2] = np.nan if trial == 0 else 0.0
        counts = np.array([20, 3, 0])
        stats = Stats(act)
        stats.update(x.view(np.uint16), counts, np.zeros((3, 9 * 20), np.uint16))
        valid = np.concatenate([x[0].ravel(), x[1, :3].ravel()]).astype(np.float32)
        assert stats.range == hist_range(kind, valid)


def test_an_activation_of_no_units_has_the_range_of_no_finite_value():
    """A cell state of 0 units (nothing to count) takes its range from no value at all, as an all-NaN chunk does."""
    act = Activation.from_name("rnn.l0.fwd.c", 0)
    stats = Stats(act)
    stats.update(np.zeros((2, 3, 0), np.uint16), np.array([3, 1]), np.zeros((2, 0), np.uint16))
    assert stats.range == hist_range("c", np.zeros(0, np.float32))
    assert stats.count == 4
