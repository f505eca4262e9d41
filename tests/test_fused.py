"""The compiled LSTM pointwise update (lstmviz.kernels.compiled) against float64 cell equations, and the step loop
with and without it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numba import njit
from torch import nn

from lstmviz import cells
from lstmviz.kernels import compiled, loop, pointwise
from lstmviz.kernels.pool import Pool
from lstmviz.recorder import Recorder


@njit(**{**compiled._JIT, "cache": False})  # the flags the step is compiled with, which set its rounding
def tanh_array(x: np.ndarray, out: np.ndarray) -> None:
    for k in range(x.shape[0]):
        out[k] = compiled.tanh(x[k])


def test_tanh_is_within_3e_7_of_the_true_tanh():
    x = np.concatenate([np.linspace(-20, 20, 2_000_001), [0.0, 1e-30, -1e-30, 7.99881172, -7.99881172, 1e30, -1e30]])
    x = x.astype(np.float32)
    out = np.empty_like(x)
    tanh_array(x, out)
    assert np.abs(out - np.tanh(x.astype(np.float64))).max() <= 3e-7
    neg = np.empty_like(x)
    tanh_array(-x, neg)
    assert np.array_equal(neg, -out)  # odd, exactly
    assert np.abs(out).max() <= 1.0


def reference_step(z: np.ndarray, c_prev: np.ndarray) -> dict[str, np.ndarray]:
    """The cell equations in float64, for pre-activations whose g block is doubled (see lstm_pointwise)."""
    z, c_prev = z.astype(np.float64), c_prev.astype(np.float64)
    i, f, g2, o = np.split(z, 4, axis=1)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    i, f, g, o = sig(i), sig(f), np.tanh(g2 / 2), sig(o)
    c = f * c_prev + i * g
    return {"gates": np.concatenate([i, f, g, o], axis=1), "c": c, "h": o * np.tanh(c)}


@pytest.mark.parametrize("B,H", [(1, 1), (3, 7), (64, 512)])
@pytest.mark.parametrize("impl", ["fused", "torch"])
def test_step_follows_the_cell_equations(B, H, impl):
    rng = np.random.default_rng(B * 1000 + H)
    z = (rng.standard_normal((B, 4 * H)) * 6).astype(np.float32)  # deep into saturation both ways
    c_prev = (rng.standard_normal((B, H)) * 3).astype(np.float32)
    gates, c, h = np.empty((B, 4 * H), np.float32), np.empty((B, H), np.float32), np.empty((B, H), np.float32)
    xh = np.zeros((B, 5 + H), np.float32)  # the next input row: x then h, so the h view is strided
    if impl == "fused":
        compiled.lstm_pointwise(z, c_prev, gates, c, h, xh[:, 5:])
    else:
        t = torch.from_numpy
        pointwise.lstm_pointwise_torch(t(z), t(c_prev), t(gates), t(c), t(h), t(xh)[:, 5:])
    want = reference_step(z, c_prev)
    for name, got in {"gates": gates, "c": c, "h": h}.items():
        assert (np.abs(got - want[name]) <= 1e-6 * (1 + np.abs(want[name]))).all(), name  # float32 rounding
    assert np.array_equal(xh[:, 5:], h)
    assert not xh[:, :5].any()


@pytest.mark.parametrize("impl", ["fused", "torch"])
def test_nan_and_inf_come_out_as_torch_gives_them(impl):
    """A diverged model must look diverged: NaN stays NaN (fastmath may not assume it away), ±inf saturates."""
    H = 16
    z = np.zeros((3, 4 * H), np.float32)
    z[0, 5] = np.nan  # an input gate
    z[1, :] = np.inf
    z[2, :] = -np.inf
    c_prev = np.zeros((3, H), np.float32)
    c_prev[2, 7] = np.nan
    gates, c, h, h_copy = (np.empty_like(a) for a in (z, c_prev, c_prev, c_prev))
    if impl == "fused":
        compiled.lstm_pointwise(z, c_prev, gates, c, h, h_copy)
    else:
        t = torch.from_numpy
        pointwise.lstm_pointwise_torch(t(z), t(c_prev), t(gates), t(c), t(h), t(h_copy))
    assert np.isnan(gates[0, 5]) and np.isnan(c[0, 5]) and np.isnan(h[0, 5])
    assert np.isfinite(np.delete(h[0], 5)).all()
    assert np.allclose(gates[1], 1, atol=1e-6) and np.allclose(h[1], np.tanh(1), atol=1e-6)
    assert np.allclose(gates[2, : 2 * H], 0, atol=1e-6) and np.isnan(c[2, 7]) and np.isnan(h[2, 7])
    assert np.allclose(np.delete(h[2], 7), 0, atol=1e-6)


@pytest.mark.parametrize("value,on", [("1", False), ("yes", False), ("0", True), ("", True)])
def test_no_jit_switch(value, on, monkeypatch):
    monkeypatch.setenv("LSTMVIZ_NO_JIT", value)
    x = torch.zeros(2, 3, 4)
    assert (pointwise.compiled_pointwise(x) is compiled.lstm_pointwise) == on
    assert pointwise.compiled_pointwise(x.double()) is None


@pytest.mark.parametrize("proj", [0, 3])
def test_loop_with_and_without_the_compiled_step_matches_torch(proj, monkeypatch):
    torch.manual_seed(proj)
    module = nn.LSTM(6, 8, 2, batch_first=True, proj_size=proj).eval()
    x = torch.randn(5, 30, 6)
    runs = {}
    for jit in (True, False):
        if jit:
            monkeypatch.delenv("LSTMVIZ_NO_JIT", raising=False)
            assert pointwise.compiled_pointwise(x) is compiled.lstm_pointwise
        else:
            monkeypatch.setenv("LSTMVIZ_NO_JIT", "1")
            assert pointwise.compiled_pointwise(x) is None
        with torch.no_grad(), Recorder(module, strategy="loop") as rec:
            out, (h_n, c_n) = module(x)
        runs[jit] = rec.cache
        with torch.no_grad():
            ref, (ref_h, ref_c) = module(x)
        assert (out - ref).abs().max() <= 1e-5
        assert (h_n - ref_h).abs().max() <= 1e-5 and (c_n - ref_c).abs().max() <= 1e-5
    assert runs[True].keys() == runs[False].keys()
    for name in runs[True]:
        assert (runs[True][name] - runs[False][name]).abs().max() <= 1e-5, name


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("proj", [0, 2])
def test_loop_carries_h_across_its_input_blocks(proj, jit, monkeypatch):
    """Chunks on and off the input buffer's block boundaries, through one pool (a shorter chunk takes the
    leading rows of its buffers, a longer one new ones), against torch's own layer with given states."""
    if not jit:
        monkeypatch.setenv("LSTMVIZ_NO_JIT", "1")
    torch.manual_seed(proj)
    module = nn.LSTM(5, 6, 1, batch_first=True, proj_size=proj).eval()
    p, pool = cells.layer_params(module, 0, False), Pool()
    with torch.no_grad():
        for T in (7, 9, 1, 20, 3):
            x, h0, c0 = torch.randn(4, T, 5), torch.randn(4, proj or 6), torch.randn(4, 6)
            ref, (h_n, c_n) = module(x, (h0[None], c0[None]))
            out = loop.lstm_loop(x, h0, c0, p, pool, block=3)
            assert (out["h"] - ref).abs().max() <= 1e-5, T
            assert (out["h"][:, -1] - h_n[0]).abs().max() <= 1e-5 and (out["c"][:, -1] - c_n[0]).abs().max() <= 1e-5
