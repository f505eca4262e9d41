"""The cell tables in lstmviz.names against torch's own modules: equations, weight blocks and parameter names."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch
from torch import nn

from lstmviz import cells, names


def evaluate(rhs: str, env: dict[str, torch.Tensor], weight) -> torch.Tensor:
    """Evaluate one right-hand side of :data:`names.EQUATIONS` on tensors ``[B, ·]``.

    ``W_ab v`` is ``v @ weight(W_ab).T``; ``b_ab`` is ``weight(b_ab)``; σ, ⊙, − and the ₋₁ subscripts are
    spelled as Python.
    """
    expr = rhs.replace("σ(", "torch.sigmoid(").replace("tanh(", "torch.tanh(").replace("relu(", "torch.relu(")
    expr = expr.replace("⊙", "*").replace("−", "-").replace("h₋₁", "h_prev").replace("c₋₁", "c_prev")
    expr = re.sub(r"W_(\w\w) (\w+)", r"(\2 @ weight('W_\1').T)", expr)
    expr = re.sub(r"\bb_(\w\w)\b", r"weight('b_\1')", expr)
    return eval(expr, {"torch": torch, "weight": weight}, dict(env))


def block_weights(module: nn.RNNBase, cell: str):
    """``W_ab`` / ``b_ab`` → the rows of torch's fused parameter for gate b (from x if a is i, from h if a is h)."""
    blocks = names.WEIGHT_BLOCKS[cell]

    def weight(symbol: str) -> torch.Tensor:
        kind, (src, gate) = symbol[0], symbol[2:]
        full = getattr(module, ("weight" if kind == "W" else "bias") + ("_ih" if src == "i" else "_hh") + "_l0")
        H = full.shape[0] // len(blocks)
        k = blocks.index(gate if cell != "RNN" else "h")
        return full[k * H : (k + 1) * H]

    return weight


@pytest.mark.parametrize(
    "cell,kw", [("LSTM", {}), ("LSTM", {"proj_size": 3}), ("GRU", {}), ("RNN", {}), ("RNN", {"nonlinearity": "relu"})]
)
def test_the_equations_are_what_torch_computes(cell, kw):
    torch.manual_seed(len(kw))
    module = getattr(nn, cell)(4, 5, 1, batch_first=True, **kw).double()
    B, P = 3, kw.get("proj_size") or 5
    x, h_prev, c_prev = torch.randn(B, 4).double(), torch.randn(B, P).double(), torch.randn(B, 5).double()
    with torch.no_grad():
        hx = (h_prev[None], c_prev[None]) if cell == "LSTM" else h_prev[None]
        want = module(x[:, None], hx)[0][:, 0]
        env = {"x": x, "h_prev": h_prev, "c_prev": c_prev}
        weight = block_weights(module, cell)
        for line in names.equations(cell, kw.get("proj_size", 0), kw.get("nonlinearity", "tanh")):
            kind, rhs = line.split(" = ", 1)
            if kind == "h" and "W_hr hp" in rhs:  # the projection's weight, not a GRU reset block
                env["h"] = env["hp"] @ module.weight_hr_l0.T
            else:
                env[kind] = evaluate(rhs, env, weight)
    assert (env["h"] - want).abs().max() <= 1e-12


def test_weight_suffix_names_torchs_parameters():
    module = nn.LSTM(2, 3, 3, bidirectional=True, proj_size=2)
    built = {
        f"{w}{names.weight_suffix(layer, rev)}"
        for layer in range(3)
        for rev in (False, True)
        for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
    }
    assert built == {n for n, _ in module.named_parameters()}


@pytest.mark.parametrize("cell", names.CELLS)
def test_cell_of_kinds_inverts_the_recorded_kinds(cell):
    assert names.cell_of_kinds(names.cell_kinds(cell)) == cell
    assert names.cell_of_kinds(names.cell_kinds(cell, proj_size=2)) == cell
    for missing in set(names.KINDS[cell]) - {"h"}:  # a layer recorded in part is not taken for its cell
        assert names.cell_of_kinds(set(names.cell_kinds(cell)) - {missing}) == "RNN"
    assert names.cell_of_kinds({"h"}) == "RNN"
    assert cells.cell_type(getattr(nn, cell)(2, 2)) == cell


def test_kind_sets_follow_the_equations():
    for cell, eqs in names.EQUATIONS.items():
        for kind, rhs in eqs.items():
            assert (kind in names.SIGMOID_KINDS) == rhs.startswith("σ("), (cell, kind)
            assert (kind in names.TANH_KINDS) == (rhs.startswith("tanh(") and cell != "RNN"), (cell, kind)
        assert names.EQUATIONS[cell][names.CANDIDATE_KIND[cell]].startswith("tanh(")
        assert set(names.WEIGHT_BLOCKS[cell]) <= set(eqs)
        assert set(names.KINDS[cell]) == set(eqs)
    assert set(names.CELL_OF_GATE) == names.SIGMOID_KINDS


def test_the_cells_docstring_carries_every_equation_and_the_gru_caveat():
    doc = " ".join(cells.__doc__.split())
    for cell in names.CELLS:
        for line in names.equations(cell):
            assert line in doc
    assert names.GRU_Z_CAVEAT in doc
    for kind, rhs in names.PROJECTION.items():
        assert f"{kind} = {rhs}" in doc


def test_cells_imports_without_docstrings():
    """``python -OO`` strips docstrings; filling the equations into cells' must not fail there."""
    subprocess.run([sys.executable, "-OO", "-c", "import lstmviz.cells"], check=True)
