"""The on-index builder: streamed rows in any order equal the direct oracle (bits of x >= θ, θ by np.quantile)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lstmviz.analysis import match_bits
from lstmviz.analysis import overview as overview_module
from lstmviz.analysis.match_bits import IndexBuilder, Threshold, index_paths, on_index
from lstmviz.analysis.match_pass import recording_observers
from lstmviz.analysis.overview import OverviewBuilder, overview, overview_path, shape
from lstmviz.store import write_run

NAME = "rnn.l0.fwd.c"


def oracle(x16: np.ndarray, th: Threshold) -> tuple[np.ndarray, np.ndarray]:
    """(bits [T, ⌈U/8⌉], theta [U]) straight from the definition."""
    x = x16.astype(np.float32)
    theta = (
        np.quantile(x, th.value, axis=0).astype(np.float32)
        if th.quantile
        else np.full(x.shape[1], th.value, np.float32)
    )
    return np.packbits(x >= theta, axis=1, bitorder="little"), theta


@pytest.fixture(params=["numba", "numpy"])
def kernels(request, monkeypatch):
    if request.param == "numpy":
        monkeypatch.setattr(match_bits, "jit", lambda: None)
    return request.param


def values(rng: np.random.Generator, T: int, U: int) -> np.ndarray:
    """float16 with ties, ±0, NaN, ±inf and subnormals among ordinary values on several scales."""
    x = (rng.normal(size=(T, U)) * np.geomspace(1e-6, 1e3, U)).astype(np.float16)
    x[rng.random((T, U)) < 0.2] = 0.0
    x[rng.random((T, U)) < 0.05] = -0.0
    x[rng.random((T, U)) < 0.1] = np.float16(0.3)
    x[rng.random((T, U)) < 0.01] = np.inf
    x[rng.random((T, U)) < 0.01] = -np.inf
    return x


@settings(max_examples=60, deadline=None)
@given(
    T=st.integers(1, 300),
    U=st.integers(1, 19),
    seed=st.integers(0, 2**32 - 1),
    th=st.one_of(
        st.sampled_from([Threshold(0.3), Threshold(0.0), Threshold(-0.0), Threshold(70000.0), Threshold(-np.inf)]),
        st.floats(-10, 10, width=32).map(Threshold),
        st.floats(0, 1).map(lambda q: Threshold(q, quantile=True)),
    ),
    nan=st.booleans(),
    jit=st.booleans(),
)
def test_streamed_rows_in_any_order_equal_the_oracle(tmp_path_factory, T, U, seed, th, nan, jit):
    rng = np.random.default_rng(seed)
    x = values(rng, T, U)
    if nan:
        x[rng.integers(T), rng.integers(U)] = np.nan
    saved, match_bits.jit = match_bits.jit, (match_bits.jit if jit else lambda: None)
    try:
        run_dir = tmp_path_factory.mktemp("run")
        builder = IndexBuilder(NAME, U, T, th, run_dir)
        cuts = np.unique(np.r_[0, rng.integers(0, T, 4), T])
        for a, b in rng.permutation(np.stack([cuts[:-1], cuts[1:]], axis=1)):  # chunks in shuffled order
            builder.update(int(a), x[a:b])
        builder.finish(run_dir)
    finally:
        match_bits.jit = saved
    bits_path, cols_path, theta_path = index_paths(run_dir / "cache", NAME, th, T)
    want_bits, want_theta = oracle(x, th)
    np.testing.assert_array_equal(np.load(theta_path), want_theta)
    np.testing.assert_array_equal(np.load(bits_path), want_bits)
    np.testing.assert_array_equal(np.load(cols_path), want_bits.T)
    assert sorted(p.name for p in bits_path.parent.iterdir()) == sorted(
        [bits_path.name, cols_path.name, theta_path.name]
    )


def test_threshold_key_orders_like_float16():
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    finite = every[~np.isnan(every)]
    for theta in [0.3, -0.0, 0.0, 1e-7, -65504.0, 65504.0, 65520.0, np.inf, -np.inf, np.nan, 2.0**-24]:
        kth = match_bits.threshold_key(np.array([theta], np.float32))[0]
        keys = match_bits._keys(finite.view(np.uint16))
        np.testing.assert_array_equal(keys >= kth, finite.astype(np.float32) >= np.float32(theta), err_msg=str(theta))


def test_a_recorded_index_is_used_and_a_deleted_one_rebuilt(tmp_path, kernels, monkeypatch):
    rng = np.random.default_rng(3)
    x = np.tanh(np.cumsum(rng.normal(0, 0.3, (2001, 20)), axis=0) / 3).astype(np.float16)
    path = write_run(tmp_path / "run", ["a"] * len(x), {NAME: x}, observers=recording_observers(len(x)))
    from lstmviz.store import open_run

    run = open_run(path)
    built = match_bits.build_index
    monkeypatch.setattr(match_bits, "build_index", lambda *a: pytest.fail("the recorded index was rebuilt"))
    for th in match_bits.DEFAULT_THRESHOLDS:
        index = on_index(run, NAME, th)
        want_bits, want_theta = oracle(x, th)
        np.testing.assert_array_equal(index.theta, want_theta)
        np.testing.assert_array_equal(index.bits, want_bits)
        np.testing.assert_array_equal(index.cols, want_bits.T)
    bins, per = shape(len(x), 20)
    assert overview_path(run.cache_dir, NAME, len(x), bins, per).is_file()  # recorded, not built on first use
    binned, got_per = overview(run, NAME)
    assert got_per == per and binned.shape == (bins, 20)
    np.testing.assert_allclose(binned[0], x[:per].astype(np.float64).mean(0), rtol=1e-6)
    overview_path(run.cache_dir, NAME, len(x), bins, per).unlink()
    np.testing.assert_array_equal(overview(run, NAME)[0], binned)  # rebuilt from the run's values
    monkeypatch.setattr(match_bits, "build_index", built)
    for f in (run.cache_dir / "match").iterdir():
        f.unlink()
    again = on_index(run, NAME, match_bits.DEFAULT_THRESHOLDS[1])
    np.testing.assert_array_equal(again.bits, oracle(x, match_bits.DEFAULT_THRESHOLDS[1])[0])
    assert not [p for p in tmp_path.iterdir() if p.name != "run"], "scratch files left behind"


@pytest.mark.parametrize("T,U,max_cells,max_bins", [(1000, 7, 70, 1500), (997, 3, 2_000_000, 50), (5, 4, 100, 10)])
def test_overview_equals_bin_nanmeans(tmp_path, T, U, max_cells, max_bins, kernels, monkeypatch):
    if kernels == "numpy":
        monkeypatch.setattr(overview_module, "_kernel", lambda: None)
    rng = np.random.default_rng(T)
    x = rng.normal(size=(T, U)).astype(np.float16)
    x[rng.random((T, U)) < 0.05] = np.nan
    b = OverviewBuilder(NAME, U, T, max_cells, max_bins)
    cuts = np.unique(np.r_[0, rng.integers(0, T, 6), T])
    for a, c in rng.permutation(np.stack([cuts[:-1], cuts[1:]], axis=1)):
        b.update(int(a), x[a:c])
    bins, per = shape(T, U, max_cells, max_bins)
    assert bins * U <= max(max_cells, U) and bins <= max_bins and (bins - 1) * per < T <= bins * per
    padded = np.full((bins * per, U), np.nan)
    padded[:T] = x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a bin of only NaN: its mean is NaN
        want = np.nanmean(padded.reshape(bins, per, U), axis=1)
    np.testing.assert_allclose(b.means(), want, rtol=1e-6, atol=1e-7)


def test_a_recording_builds_the_default_indices_and_overviews(tmp_path, monkeypatch):
    """record_corpus's default observers: every activation's default-θ indices and overview are in cache/ and
    equal what a finished run gives (the oracle on its stored values); no scratch file is left."""
    torch = pytest.importorskip("torch")
    from tiny_models import TinyCharModel

    import lstmviz

    torch.manual_seed(5)
    ids = torch.randint(0, 12, (301,))
    run = lstmviz.open_run(
        lstmviz.record_corpus(TinyCharModel().eval(), ids, tmp_path / "run", streams=3, chunk=17, progress=False)
    )
    monkeypatch.setattr(match_bits, "build_index", lambda *a: pytest.fail("a default index was not recorded"))
    monkeypatch.setattr(OverviewBuilder, "finish", lambda *a: pytest.fail("the overview was not recorded"))
    for name in run.names:
        stored = run.activations(name).astype(np.float16)
        for th in match_bits.DEFAULT_THRESHOLDS:
            index = on_index(run, name, th)
            want_bits, want_theta = oracle(stored, th)
            np.testing.assert_array_equal(index.theta, want_theta)
            np.testing.assert_array_equal(index.bits, want_bits)
        binned, per = overview(run, name)
        np.testing.assert_allclose(binned[0], stored[:per].astype(np.float64).mean(0), rtol=1e-6, atol=1e-7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
