"""saturation: the stats fast path and the scan both equal a direct numpy count on the stored activations."""

from __future__ import annotations

import numpy as np
import pytest

from lstmviz.analysis import saturation as sat
from lstmviz.store import RunError


def gates(rng: np.random.Generator, T: int, U: int) -> np.ndarray:
    """Sigmoid values with a spread of saturation per unit, including exact 0.1 / 0.9 ties."""
    x = 1 / (1 + np.exp(-rng.normal(rng.normal(0, 2, U), 2, (T, U))))
    x[::7, 0] = 0.1
    x[::5, 1] = 0.9
    return x


@pytest.fixture
def run(make_run, rng):
    T = 70_000  # more than one scan block
    return make_run(
        {"rnn.l0.fwd.f": gates(rng, T, 6), "rnn.l0.fwd.h": rng.normal(size=(T, 6)), "gru.l1.fwd.z": gates(rng, T, 4)}
    )


def direct(run, name, low, high):
    x = run.activations(name)
    return (x < low).mean(0), (x > high).mean(0)


def test_stats_path_equals_direct_numpy(run, monkeypatch):
    monkeypatch.setattr(run, "activations", lambda *a, **k: pytest.fail("the stats path read activations"))
    got = sat.saturation(run)
    monkeypatch.undo()
    assert got["name"].unique().tolist() == ["rnn.l0.fwd.f", "gru.l1.fwd.z"]  # h is not a gate
    assert set(got["source"]) == {"stats"}
    assert got.set_index("name").loc["gru.l1.fwd.z", "cell"].unique().tolist() == ["GRU"]
    for name, rows in got.groupby("name"):
        lo, hi = direct(run, name, 0.1, 0.9)
        np.testing.assert_array_equal(rows["frac_low"].to_numpy(), lo)
        np.testing.assert_array_equal(rows["frac_high"].to_numpy(), hi)


def test_other_thresholds_scan_and_equal_direct_numpy(run):
    got = sat.saturation(run, "rnn.l0.fwd.f", low=0.25, high=0.75)
    assert set(got["source"]) == {"scan"}
    lo, hi = direct(run, "rnn.l0.fwd.f", 0.25, 0.75)
    np.testing.assert_array_equal(got["frac_low"].to_numpy(), lo)
    np.testing.assert_array_equal(got["frac_high"].to_numpy(), hi)


def test_saturation_refuses_a_non_gate(run):
    with pytest.raises(RunError, match="not a sigmoid gate"):
        sat.saturation(run, "rnn.l0.fwd.h")
