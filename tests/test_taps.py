"""lstmviz.tap: a custom cell's own quantities through run_with_cache and record_corpus, and a no-op otherwise."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_models import CellCharModel, LayerNormLSTMCell
from torch import nn

import lstmviz
from lstmviz import taps
from lstmviz.analysis import saturation
from lstmviz.errors import UserError
from lstmviz.recorder import Recorder

KINDS = ("i", "f", "o", "g", "c", "h")


def layernorm_lstm_equations(cell: LayerNormLSTMCell, x, hx) -> dict[str, torch.Tensor]:
    """The LayerNorm-LSTM's quantities in float64, from one call's input and state, with no tap involved."""
    d = {k: v.double() for k, v in cell.state_dict().items()}
    h, c = (t.double() for t in hx) if hx is not None else (x.new_zeros(x.shape[0], cell.hidden_size).double(),) * 2
    pre = x.double() @ d["ih.weight"].T + d["ih.bias"] + h @ d["hh.weight"].T
    pre = F.layer_norm(pre, pre.shape[1:], d["norm_gates.weight"], d["norm_gates.bias"])
    i, f, g, o = pre.chunk(4, dim=1)
    i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
    c = f * c + i * g
    h = o * F.layer_norm(c, c.shape[1:], d["norm_c.weight"], d["norm_c.bias"]).tanh()
    return {"i": i, "f": f, "g": g, "o": o, "c": c, "h": h}


def layernorm_model(hidden: int = 8, seed: int = 0) -> CellCharModel:
    torch.manual_seed(seed)
    model = CellCharModel(LayerNormLSTMCell, hidden=hidden).eval()
    with torch.no_grad():  # larger weights than the default init, so that the gates saturate and take sides
        model.cell.ih.weight.mul_(4)
    return model


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hidden=st.integers(1, 16), batch=st.integers(1, 4), time=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_a_layernorm_lstm_records_what_it_computes(hidden, batch, time, seed):
    model = layernorm_model(hidden, seed)
    ids = torch.randint(0, 12, (batch, time))
    calls = []
    handle = model.cell.register_forward_hook(lambda m, a, out: calls.append((a[0], a[1], out)))
    with torch.no_grad():
        out, cache = lstmviz.run_with_cache(model, ids)
    handle.remove()
    assert torch.equal(out, model(ids))  # the same numbers with and without recording
    assert sorted(cache) == sorted(f"cell.l0.fwd.{k}" for k in KINDS)
    for t, (x, hx, (h, c)) in enumerate(calls):
        assert torch.equal(cache["cell.l0.fwd.h"][:, t], h) and torch.equal(cache["cell.l0.fwd.c"][:, t], c)
        want = layernorm_lstm_equations(model.cell, x, hx)
        for k in KINDS:
            assert cache[f"cell.l0.fwd.{k}"].shape == (batch, time, hidden)
            assert (cache[f"cell.l0.fwd.{k}"][:, t].double() - want[k]).abs().max() < 1e-5, (t, k)


def whole_streams(model: nn.Module, ids: torch.Tensor, S: int) -> dict[str, np.ndarray]:
    """Every tapped kind over each whole stream in one forward, flattened to corpus rows ``[N, H]``."""
    L = -(-len(ids) // S)
    padded = torch.cat([ids, ids.new_zeros(S * L - len(ids))]).reshape(S, L)
    with torch.no_grad():
        _, cache = lstmviz.run_with_cache(model, padded)
    return {k: v.reshape(S * L, -1)[: len(ids)].numpy() for k, v in cache.items()}


def test_record_corpus_carries_a_tapped_cell_across_chunks(tmp_path):
    """Stateful streams: chunked recording of the custom cell equals one forward over each whole stream."""
    model = layernorm_model()
    ids = torch.randint(0, 12, (301,))
    run = lstmviz.open_run(lstmviz.record_corpus(model, ids, tmp_path / "run", streams=3, chunk=17, progress=False))
    want = whole_streams(model, ids, 3)
    assert run.names == [f"cell.l0.fwd.{k}" for k in ("i", "f", "o", "g", "c", "h")]  # the order first tapped
    for name, value in want.items():
        np.testing.assert_allclose(run.activations(name), value, rtol=2**-11, atol=1e-6)
    entry = json.loads((run.path / "manifest.json").read_text())["model"]["modules"][0]
    assert (entry["cell"], entry["kinds"], entry["gates"]) == ("custom", list("ifogch"), ["i", "f", "o"])
    assert saturation.gate_names(run) == ["cell.l0.fwd.i", "cell.l0.fwd.f", "cell.l0.fwd.o"]
    table = saturation.saturation(run)
    f = run.activations("cell.l0.fwd.f")
    got = table[table["name"] == "cell.l0.fwd.f"].sort_values("unit")
    np.testing.assert_allclose(got["frac_high"], (f > 0.9).mean(0))
    assert set(table["cell"]) == {"custom"}
    with pytest.raises(lstmviz.RunError, match="is not a sigmoid gate"):
        saturation.saturation(run, "cell.l0.fwd.g")


@pytest.mark.parametrize("cell", [nn.LSTMCell, nn.GRUCell, LayerNormLSTMCell], ids=["lstm", "gru", "layernorm"])
def test_record_corpus_of_a_stepped_cell_equals_whole_streams(cell, tmp_path):
    torch.manual_seed(1)
    model = CellCharModel(cell).eval()
    ids = torch.randint(0, 12, (211,))
    run = lstmviz.open_run(lstmviz.record_corpus(model, ids, tmp_path / "run", streams=4, chunk=13, progress=False))
    want = whole_streams(model, ids, 4)
    assert sorted(run.names) == sorted(want)
    for name, value in want.items():
        np.testing.assert_allclose(run.activations(name), value, rtol=2**-11, atol=1e-6)
    logits = model.decoder(torch.from_numpy(want["cell.l0.fwd.h"]))
    loss = F.cross_entropy(logits[:-1], ids[1:], reduction="none")
    np.testing.assert_allclose(run.tokens["loss"].to_numpy()[:-1], loss.detach().numpy(), atol=1e-4)


def test_documents_of_a_tapped_cell_start_from_a_zero_state(tmp_path):
    model = layernorm_model()
    lengths = [5, 9, 1, 7]
    ids = torch.randint(0, 12, (sum(lengths),))
    docs = np.repeat(np.arange(len(lengths)), lengths)
    run = lstmviz.open_run(
        lstmviz.record_corpus(model, ids, tmp_path / "r", mode="sequences", docs=docs, streams=2, progress=False)
    )
    start = 0
    for n in lengths:
        _, cache = lstmviz.run_with_cache(model, ids[start : start + n].unsqueeze(0))
        np.testing.assert_allclose(
            run.activations("cell.l0.fwd.c")[start : start + n], cache["cell.l0.fwd.c"][0], rtol=2**-11, atol=1e-6
        )
        start += n


class ParallelScan(nn.Module):
    """A minGRU-style recurrence computed for all steps at once, tapped once per forward as [B, T, H]."""

    def __init__(self):
        super().__init__()
        self.gate = nn.Linear(3, 4)
        self.cand = nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = lstmviz.tap(self, "z", torch.sigmoid(self.gate(x)), gate=True)  # (B, T, H)
        a, b = 1 - z, z * self.cand(x)
        state, steps = torch.zeros_like(b[:, 0]), []
        for t in range(x.shape[1]):  # h_t = (1 − z_t) ⊙ h_{t−1} + z_t ⊙ cand_t
            state = a[:, t] * state + b[:, t]
            steps.append(state)
        return lstmviz.tap(self, "h", torch.stack(steps, 1))


def test_a_block_of_steps_is_one_call():
    torch.manual_seed(0)
    model = nn.Sequential(ParallelScan())
    x = torch.randn(2, 5, 3)
    with Recorder(model) as rec:
        h1 = model(x)
        h2 = model(x[:, :2])
    assert torch.equal(rec.cache["0.l0.fwd.h"], torch.cat([h1, h2], 1).detach())
    assert rec.cache["0.l0.fwd.z"].shape == (2, 7, 4)


def test_taps_of_different_batch_sizes_are_kept_per_call():
    cell = LayerNormLSTMCell(3, 4).eval()
    xs = [torch.randn(b, 3) for b in (2, 1)]
    with torch.no_grad(), Recorder(cell) as rec:
        outs = [cell(x) for x in xs]
    h = rec.cache["cell.l0.fwd.h"]
    assert isinstance(h, list) and all(torch.equal(h[k][:, 0], outs[k][0]) for k in range(2))


def test_tap_outside_recording_changes_nothing():
    model = layernorm_model()
    ids = torch.randint(0, 12, (2, 6))
    t = torch.randn(3, 4)
    assert lstmviz.tap(model.cell, "f", t) is t
    with torch.no_grad():
        before = model(ids)
        with pytest.raises(ValueError, match="not enough values"), Recorder(model):
            model(torch.randint(0, 12, (2, 6, 1)))  # a forward that raises still removes the recorder
        assert taps._SINKS == []
        assert torch.equal(model(ids), before)


def test_a_tap_of_a_module_outside_the_recorded_model_is_ignored():
    other = LayerNormLSTMCell(3, 4)
    model = CellCharModel(nn.GRUCell)
    with Recorder(model) as rec:
        other(torch.randn(2, 3))
        model(torch.randint(0, 12, (2, 3)))
    assert all(n.startswith("cell.") for n in rec.cache) and "cell.l0.fwd.z" in rec.cache


def test_names_filter_the_tapped_kinds():
    model = layernorm_model()
    _, cache = lstmviz.run_with_cache(model, torch.randint(0, 12, (2, 3)), names=lambda n: n.endswith(".f"))
    assert list(cache) == ["cell.l0.fwd.f"]


@pytest.mark.parametrize(
    ("kind", "tensor", "message"),
    [
        ("a.b", torch.zeros(2, 3), "without dots"),
        ("f_grad", torch.zeros(2, 3), "without dots"),
        ("f", torch.zeros(2, 3, 4, 5), r"expected a \[batch, units\]"),
    ],
)
def test_a_tap_the_recorder_cannot_name_is_one_clear_error(kind, tensor, message):
    cell = nn.Linear(1, 1)
    with pytest.raises(UserError, match=message), Recorder(cell):
        lstmviz.tap(cell, kind, tensor)


def test_a_kind_that_changes_its_units_is_refused():
    cell = nn.Linear(1, 1)
    with pytest.raises(UserError, match="3 units, where an earlier call had 2"), Recorder(cell):
        lstmviz.tap(cell, "f", torch.zeros(1, 2))
        lstmviz.tap(cell, "f", torch.zeros(1, 3))


def test_the_readme_example_records_what_the_tested_cell_does(tmp_path):
    """The LayerNorm-LSTM in README.md, run as written: the same activations as tiny_models' (same weights)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "lstmviz.tap" in b)
    scope = {"nn": nn, "torch": torch, "lstmviz": lstmviz}
    exec(code, scope)
    ours = layernorm_model()
    theirs = CellCharModel(lambda n_in, n_hidden: scope["LayerNormLSTMCell"](n_in, n_hidden)).eval()
    theirs.load_state_dict(ours.state_dict())
    ids = torch.randint(0, 12, (2, 7))
    _, want = lstmviz.run_with_cache(ours, ids)
    _, got = lstmviz.run_with_cache(theirs, ids)
    assert sorted(got) == sorted(want) and all(torch.allclose(got[k], want[k], atol=1e-6) for k in want)
    run = lstmviz.open_run(
        lstmviz.record_corpus(theirs, ids.reshape(-1), tmp_path / "r", streams=2, chunk=3, progress=False)
    )
    assert saturation.gate_names(run) == ["cell.l0.fwd.i", "cell.l0.fwd.f", "cell.l0.fwd.o"]
    np.testing.assert_allclose(run.activations("cell.l0.fwd.c"), want["cell.l0.fwd.c"].reshape(14, -1), atol=2e-3)
