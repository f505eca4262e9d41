"""The match indices and the overview built from the writer's own passes equal the oracle on the stored values:
bits of x >= θ with θ by np.quantile over the run, and the bin nanmeans, whatever the order the rows arrive in."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from test_match_bits import values as match_values

from lstmviz.analysis import match_pass
from lstmviz.analysis import overview as overview_module
from lstmviz.analysis.match_bits import Threshold, index_paths
from lstmviz.analysis.match_pass import PassIndex
from lstmviz.analysis.overview import OverviewBuilder, overview_path
from lstmviz.store import Activation, RunWriter, open_run, tokens_frame
from lstmviz.store import writer as writer_module

THRESHOLDS = [
    Threshold(0.3),
    Threshold(-np.inf),
    Threshold(0.0),
    Threshold(0.9, quantile=True),
    Threshold(0.0, quantile=True),
    Threshold(1.0, quantile=True),
    Threshold(0.37, quantile=True),
]


def oracle(x16: np.ndarray, th: Threshold) -> tuple[np.ndarray, np.ndarray]:
    """(bits [T, ⌈U/8⌉], theta [U]) straight from the definition."""
    x = x16.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # inf − inf inside np.quantile's interpolation
        theta = np.quantile(x, th.value, axis=0) if th.quantile else np.full(x.shape[1], th.value)
    theta = theta.astype(np.float32)
    return np.packbits(x >= theta, axis=1, bitorder="little"), theta


def values(rng: np.random.Generator, T: int, U: int, nan: bool) -> np.ndarray:
    """test_match_bits' values (ties, ±0, ±inf, subnormals, scales from 1e-6 to 1e3), one unit whose values all
    fall in one coarse bin (a saturated gate), and (``nan``) a NaN."""
    x = match_values(rng, T, U)
    x[:, 0] = np.float16(0.97) + rng.integers(0, 3, T).astype(np.float16) * np.float16(2.0**-11)
    if nan:
        x[rng.integers(T), rng.integers(1, U)] = np.nan
    return x


@pytest.fixture(params=["numba", "numpy"])
def kernels(request, monkeypatch):
    if request.param == "numpy":
        monkeypatch.setattr(match_pass, "_kernels", lambda: None)
        monkeypatch.setattr(overview_module, "_kernel", lambda: None)
    return request.param


def record(tmp_path, x: np.ndarray, name: str, rng: np.random.Generator, gates: str = "float16"):
    """x [T, U] written as a stateful recording writes it: B streams of contiguous rows, chunk by chunk, the
    chunks handed over in shuffled order; with the default thresholds' observers plus more of each kind."""
    T, U = x.shape
    act = Activation.from_name(name, U)

    def observers(a: Activation) -> list:
        return [*(PassIndex(a.name, a.units, T, th) for th in THRESHOLDS), OverviewBuilder(a.name, a.units, T, 40)]

    B, chunk = 3, 13
    L = -(-T // B)
    jobs = [(b, k) for b in range(B) for k in range(0, L, chunk)]
    with RunWriter(tmp_path / "run", tokens_frame(["a"] * T), [act], observers=observers, gates=gates) as w:
        for i in rng.permutation(len(jobs)):
            b, k = jobs[i]
            lo, hi = min(b * L + k, T), min(b * L + min(k + chunk, L), T)
            block = np.zeros((1, chunk, U), np.float32)
            block[0, : hi - lo] = x[lo:hi]
            w.write_blocks(name, np.array([lo]), block, np.array([hi - lo]))
    return open_run(tmp_path / "run")


@pytest.mark.parametrize("T,U,seed,nan", [(1, 1, 0, False), (97, 9, 1, True), (300, 19, 2, False), (64, 8, 3, True)])
def test_the_writers_indices_and_overview_equal_the_oracle(tmp_path, monkeypatch, kernels, T, U, seed, nan):
    monkeypatch.setattr(writer_module, "ROW_GROUP", 32)  # many row groups, each cut across several tiles
    rng = np.random.default_rng(seed)
    x = values(rng, T, U, nan)
    name = "rnn.l0.fwd.c"
    run = record(tmp_path, x, name, rng)
    stored = run.activations(name).astype(np.float16)
    np.testing.assert_array_equal(stored.view(np.uint16), x.view(np.uint16))
    for th in THRESHOLDS:
        bits_path, cols_path, theta_path = index_paths(run.cache_dir, name, th, T)
        want_bits, want_theta = oracle(x, th)
        np.testing.assert_array_equal(np.load(theta_path), want_theta, err_msg=th.key)
        np.testing.assert_array_equal(np.load(bits_path), want_bits, err_msg=th.key)
        np.testing.assert_array_equal(np.load(cols_path), want_bits.T, err_msg=th.key)
    assert len(list((run.cache_dir / "match").iterdir())) == 3 * len(THRESHOLDS), "a temporary file is left"
    ob = OverviewBuilder(name, U, T, 40)
    padded = np.full((ob.bins * ob.per, U), np.nan)
    padded[:T] = x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a bin of only NaN: its mean is NaN
        want = np.nanmean(padded.reshape(ob.bins, ob.per, U), axis=1)
    got = np.load(overview_path(run.cache_dir, name, T, ob.bins, ob.per))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_an_eight_bit_gates_index_sees_its_stored_levels(tmp_path):
    rng = np.random.default_rng(7)
    x = rng.random((200, 11)).astype(np.float32)
    name = "rnn.l0.fwd.f"
    run = record(tmp_path, x, name, rng, gates="8bit")
    stored = run.activations(name).astype(np.float16)
    assert not np.array_equal(stored, x.astype(np.float16))  # levels, not float16 values
    for th in THRESHOLDS:
        want_bits, want_theta = oracle(stored, th)
        bits_path, _, theta_path = index_paths(run.cache_dir, name, th, len(x))
        np.testing.assert_array_equal(np.load(theta_path), want_theta, err_msg=th.key)
        np.testing.assert_array_equal(np.load(bits_path), want_bits, err_msg=th.key)


def test_a_failed_recording_leaves_no_index_file(tmp_path, monkeypatch):
    rng = np.random.default_rng(8)
    x = values(rng, 120, 10, False)

    row_group = PassIndex.row_group

    def fail(self, run_dir, start, group):  # the first group's bits are in the index's files by then
        if start:
            raise OSError("disk full")
        return row_group(self, run_dir, start, group)

    monkeypatch.setattr(writer_module, "ROW_GROUP", 32)
    monkeypatch.setattr(PassIndex, "row_group", fail)
    with pytest.raises(OSError, match="disk full"):
        record(tmp_path, x, "rnn.l0.fwd.h", rng)
    assert list(tmp_path.iterdir()) == []


def test_rows_never_written_count_as_the_zeros_they_are_stored_as(tmp_path, kernels):
    rng = np.random.default_rng(9)
    x = (rng.random((50, 6)) + 0.5).astype(np.float16)  # all above 0, so the zeros move every quantile
    name = "rnn.l0.fwd.c"
    act = Activation.from_name(name, 6)

    def observers(a: Activation) -> list:
        return [PassIndex(a.name, a.units, 50, th) for th in THRESHOLDS]

    with RunWriter(tmp_path / "run", tokens_frame(["a"] * 50), [act], observers=observers) as w:
        w.write(name, 10, x[10:40])
    run = open_run(tmp_path / "run")
    stored = run.activations(name).astype(np.float16)
    assert (stored[:10] == 0).all() and (stored[40:] == 0).all()
    for th in THRESHOLDS:
        want_bits, want_theta = oracle(stored, th)
        bits_path, _, theta_path = index_paths(run.cache_dir, name, th, 50)
        np.testing.assert_array_equal(np.load(theta_path), want_theta, err_msg=th.key)
        np.testing.assert_array_equal(np.load(bits_path), want_bits, err_msg=th.key)
