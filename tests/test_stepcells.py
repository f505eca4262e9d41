"""Step cells (nn.LSTMCell, nn.GRUCell, nn.RNNCell) against the cells' own outputs and the cell equations."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_models import AttentionDecoder, CellCharModel
from torch import nn

import lstmviz
from lstmviz.recorder import Recorder
from lstmviz.store import RunError


def tol(dtype: torch.dtype) -> float:
    return 1e-10 if dtype == torch.float64 else 1e-5


def own_calls(cell: nn.Module, run) -> tuple[object, list[tuple]]:
    """``run()``'s result and, per call of ``cell``, (x, hx, output) as torch's own cell saw them in that run."""
    calls = []
    handle = cell.register_forward_hook(lambda m, a, out: calls.append((a[0], a[1] if len(a) > 1 else None, out)))
    try:
        with torch.no_grad():
            return run(), calls
    finally:
        handle.remove()


def lstm_equations(cell: nn.LSTMCell, x, hx) -> dict[str, torch.Tensor]:
    """i f g o c h by the LSTM equations, in float64, from one call's input and state."""
    B, H = x.shape[0], cell.hidden_size
    h0, c0 = hx if hx is not None else (x.new_zeros(B, H), x.new_zeros(B, H))
    w_ih, w_hh = cell.weight_ih.double(), cell.weight_hh.double()
    pre = x.double() @ w_ih.T + h0.double() @ w_hh.T
    if cell.bias:
        pre = pre + cell.bias_ih.double() + cell.bias_hh.double()
    i, f, g, o = pre.chunk(4, dim=1)
    i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
    c = f * c0.double() + i * g
    return {"i": i, "f": f, "g": g, "o": o, "c": c, "h": o * c.tanh()}


def gru_equations(cell: nn.GRUCell, x, h0) -> dict[str, torch.Tensor]:
    """r z n h by PyTorch's GRU equations, in float64."""
    h0 = h0 if h0 is not None else x.new_zeros(x.shape[0], cell.hidden_size)
    gi = x.double() @ cell.weight_ih.double().T
    gh = h0.double() @ cell.weight_hh.double().T
    if cell.bias:
        gi, gh = gi + cell.bias_ih.double(), gh + cell.bias_hh.double()
    i_r, i_z, i_n = gi.chunk(3, dim=1)
    h_r, h_z, h_n = gh.chunk(3, dim=1)
    r, z = (i_r + h_r).sigmoid(), (i_z + h_z).sigmoid()
    n = (i_n + r * h_n).tanh()
    return {"r": r, "z": z, "n": n, "h": (1 - z) * n + z * h0.double()}


decoder_config = st.fixed_dictionaries(
    {
        "cell": st.sampled_from([nn.LSTMCell, nn.GRUCell]),
        "embed": st.integers(1, 9),
        "hidden": st.integers(1, 24),
        "batch": st.integers(1, 12),  # both sides of stepcells.IN_CALL_BATCH
        "src": st.integers(1, 6),
        "tgt": st.integers(1, 9),
        "bias": st.booleans(),
        "given_state": st.booleans(),
        "dtype": st.sampled_from([torch.float32, torch.float64]),
        "seed": st.integers(0, 2**16),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=decoder_config)
def test_attention_decoder_cells_are_exact(cfg):
    """h (and c) are the cell's own outputs; every gate satisfies the cell equations on that call's inputs."""
    torch.manual_seed(cfg["seed"])
    model = AttentionDecoder(cfg["cell"], embed=cfg["embed"], hidden=cfg["hidden"]).to(cfg["dtype"]).eval()
    if not cfg["bias"]:
        model.cell = cfg["cell"](cfg["embed"] + cfg["hidden"], cfg["hidden"], bias=False).to(cfg["dtype"])
    B, H = cfg["batch"], cfg["hidden"]
    src, tgt = torch.randint(0, 11, (B, cfg["src"])), torch.randint(0, 11, (B, cfg["tgt"]))
    hx = None
    if cfg["given_state"]:
        hx = torch.randn(B, H, dtype=cfg["dtype"])
        hx = (hx, torch.randn(B, H, dtype=cfg["dtype"])) if cfg["cell"] is nn.LSTMCell else hx
    with torch.no_grad():
        ref = model(src, tgt, hx)
    (out, cache), calls = own_calls(model.cell, lambda: lstmviz.run_with_cache(model, src, tgt, hx))
    eps = tol(cfg["dtype"])
    assert (out - ref).abs().max() <= eps  # recording changes nothing the model computes
    kinds = ("i", "f", "g", "o", "c", "h") if cfg["cell"] is nn.LSTMCell else ("r", "z", "n", "h")
    assert {n for n in cache if n.startswith("cell.")} == {f"cell.l0.fwd.{k}" for k in kinds}
    assert cache["encoder.l0.fwd.h"].shape == (B, cfg["src"], H)  # the sequence module is still recorded
    assert cache.calls["cell"] == [B] * cfg["tgt"]
    assert torch.equal(cache.lengths["cell"], torch.full((B,), cfg["tgt"]))
    equations = lstm_equations if cfg["cell"] is nn.LSTMCell else gru_equations
    for t, (x, state, own) in enumerate(calls):
        assert all(cache[f"cell.l0.fwd.{k}"].shape == (B, cfg["tgt"], H) for k in kinds)
        own_h, own_c = own if isinstance(own, tuple) else (own, None)
        assert torch.equal(cache["cell.l0.fwd.h"][:, t], own_h)
        if own_c is not None:
            assert torch.equal(cache["cell.l0.fwd.c"][:, t], own_c)
        want = equations(model.cell, x, state)
        for k in kinds:
            assert (cache[f"cell.l0.fwd.{k}"][:, t].double() - want[k]).abs().max() <= eps, (t, k)


@pytest.mark.parametrize("cell", [nn.LSTMCell, nn.GRUCell, nn.RNNCell], ids=["lstm", "gru", "rnn"])
def test_a_beam_is_recorded_per_call_when_batch_sizes_differ(cell):
    """Independent sequences of batch 1, 9 and 2 through one cell in one forward: a list per call, in order (the
    call of 9 computes its gates itself, the others have them rebuilt)."""
    torch.manual_seed(0)
    module = cell(4, 5).eval()
    xs = [torch.randn(b, 4) for b in (1, 9, 2)]

    class Beam(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = module

        def forward(self, xs):
            return [self.cell(x) for x in xs]

    model = Beam()
    with torch.no_grad():
        outs, cache = lstmviz.run_with_cache(model, xs)
    assert cache.calls["cell"] == [1, 9, 2]
    assert "cell" not in cache.lengths
    h = cache["cell.l0.fwd.h"]
    assert isinstance(h, list) and [v.shape for v in h] == [(b, 1, 5) for b in (1, 9, 2)]
    for k, (x, own) in enumerate(zip(xs, outs, strict=True)):
        own_h = own[0] if isinstance(own, tuple) else own
        assert torch.equal(h[k][:, 0], own_h)
        if cell is nn.LSTMCell:
            want = lstm_equations(module, x, None)
            assert all((cache[f"cell.l0.fwd.{q}"][k][:, 0].double() - want[q]).abs().max() < 1e-5 for q in "ifgoc")
        if cell is nn.GRUCell:
            want = gru_equations(module, x, None)
            assert all((cache[f"cell.l0.fwd.{q}"][k][:, 0].double() - want[q]).abs().max() < 1e-5 for q in "rzn")


def test_an_unbatched_call_is_recorded_as_batch_one():
    torch.manual_seed(0)
    cell = nn.LSTMCell(3, 4).eval()
    x, hx = torch.randn(3), (torch.randn(4), torch.randn(4))
    with torch.no_grad():
        (h, c), cache = lstmviz.run_with_cache(cell, x, hx)
    assert torch.equal(cache["lstmcell.l0.fwd.c"], c.reshape(1, 1, 4))
    assert torch.equal(cache["lstmcell.l0.fwd.h"], h.reshape(1, 1, 4))
    want = lstm_equations(cell, x.unsqueeze(0), (hx[0].unsqueeze(0), hx[1].unsqueeze(0)))
    assert (cache["lstmcell.l0.fwd.f"][0, 0].double() - want["f"][0]).abs().max() < 1e-6


def test_names_select_without_rebuilding_gates(monkeypatch):
    """Asking only for h and c takes them from the cell: the gate rebuild never runs."""
    from lstmviz import cells

    monkeypatch.setattr(cells, "lstm_replay", lambda *a: pytest.fail("gates rebuilt that nobody asked for"))
    torch.manual_seed(0)
    model = CellCharModel().eval()
    _, cache = lstmviz.run_with_cache(model, torch.randint(0, 12, (2, 5)), names=["cell.l0.fwd.h", "cell.l0.fwd.c"])
    assert sorted(cache) == ["cell.l0.fwd.c", "cell.l0.fwd.h"]


def test_the_model_keeps_its_graph_while_recording():
    torch.manual_seed(0)
    model = CellCharModel(nn.GRUCell)
    ids = torch.randint(0, 12, (2, 4))
    out, cache = lstmviz.run_with_cache(model, ids)
    out.sum().backward()
    assert model.cell.weight_hh.grad is not None and not cache["cell.l0.fwd.z"].requires_grad


def test_carry_continues_a_stepped_cell_across_forwards():
    """With carry, hx=None continues from the state the cell last returned: two chunks equal one forward."""
    torch.manual_seed(0)
    model = CellCharModel().eval()
    ids = torch.randint(0, 12, (3, 10))
    with torch.no_grad():
        _, whole = lstmviz.run_with_cache(model, ids)
        with Recorder(model, carry=True) as rec:
            parts = []
            for k in (0, 6):
                parts.append(rec.new_cache())
                model(ids[:, k : k + 6] if k == 0 else ids[:, 6:])
    for kind in ("f", "c", "h"):
        joined = torch.cat([p[f"cell.l0.fwd.{kind}"] for p in parts], dim=1)
        assert (joined - whole[f"cell.l0.fwd.{kind}"]).abs().max() < 1e-6


def test_a_carried_state_of_another_batch_is_refused():
    model = CellCharModel().eval()
    with torch.no_grad(), Recorder(model, carry=True) as rec:
        model(torch.randint(0, 12, (3, 2)))
        rec.new_cache()
        with pytest.raises(RunError, match="carried from the previous chunk has batch"):
            model(torch.randint(0, 12, (2, 2)))


def test_recording_restores_the_cells_forward():
    model = CellCharModel(nn.RNNCell)
    with Recorder(model):
        assert "forward" in model.cell.__dict__
    assert "forward" not in model.cell.__dict__


def test_a_cell_subclass_with_its_own_forward_is_left_to_tap():
    """Its equations are not torch's, so lstmviz neither rebuilds its gates nor replaces its forward."""

    class Peephole(nn.LSTMCell):
        def forward(self, x, hx=None):
            h, c = super().forward(x, hx)
            return lstmviz.tap(self, "h", h), lstmviz.tap(self, "c", c * 0.5)

    cell = Peephole(3, 4)
    (h, c), cache = lstmviz.run_with_cache(cell, torch.randn(2, 3))
    assert sorted(cache) == ["cell.l0.fwd.c", "cell.l0.fwd.h"]
    assert torch.equal(cache["cell.l0.fwd.c"][:, 0], c.detach())
    assert torch.equal(cache["cell.l0.fwd.h"][:, 0], h.detach())
