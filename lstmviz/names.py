"""Activation names: ``{module}.l{layer}.{dir}.{kind}``, with an optional ``_grad`` suffix.

Names are never typed by hand. ``module`` is the path from ``model.named_modules()`` and may contain dots, so a
name is parsed from the right with ``rsplit(".", 3)``.

Kinds, each recorded as ``[batch, time, units]`` (batch-first whatever the module's ``batch_first`` is); the
equations that define them are :data:`EQUATIONS`:

====  ======  ==================================================  ========================
cell  kind    meaning                                             units
====  ======  ==================================================  ========================
LSTM  ``i``   input gate (sigmoid)                                hidden_size
LSTM  ``f``   forget gate (sigmoid)                               hidden_size
LSTM  ``g``   cell candidate (tanh)                               hidden_size
LSTM  ``o``   output gate (sigmoid)                               hidden_size
LSTM  ``c``   cell state                                          hidden_size
LSTM  ``hp``  pre-projection o⊙tanh(c) (only when proj_size > 0)  hidden_size
LSTM  ``h``   hidden state (projected when proj_size > 0)         proj_size or hidden_size
GRU   ``r``   reset gate (sigmoid)                                hidden_size
GRU   ``z``   update gate (sigmoid; read :data:`GRU_Z_CAVEAT`)    hidden_size
GRU   ``n``   candidate (tanh)                                    hidden_size
GRU   ``h``   hidden state                                        hidden_size
RNN   ``h``   hidden state (tanh or relu)                         hidden_size
====  ======  ==================================================  ========================

``dir`` is ``fwd`` or ``rev``; for ``rev`` the time axis is the original input position, as in PyTorch's
bidirectional output.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

CELLS = ("LSTM", "GRU", "RNN")
"""The recurrent cell types, named as torch's modules ``nn.LSTM``, ``nn.GRU``, ``nn.RNN``."""
KINDS: dict[str, tuple[str, ...]] = {
    "LSTM": ("i", "f", "g", "o", "c", "h"),
    "GRU": ("r", "z", "n", "h"),
    "RNN": ("h",),
}
"""The kinds recorded for each cell, in recording order (an LSTM with a projection adds ``hp``: :func:`cell_kinds`)."""
GATE_KINDS: dict[str, tuple[str, ...]] = {"LSTM": ("i", "f", "o"), "GRU": ("r", "z")}
"""Sigmoid gates, whose saturation (< 0.1, > 0.9) is meaningful."""
SIGMOID_KINDS = frozenset(k for kinds in GATE_KINDS.values() for k in kinds)
"""Every kind that is a sigmoid, so lies in [0, 1]: i, f, o, r, z."""
CELL_OF_GATE = {kind: cell for cell, kinds in GATE_KINDS.items() for kind in kinds}
"""Gate kind → cell type: i, f, o → LSTM; r, z → GRU."""
CANDIDATE_KIND = {"LSTM": "g", "GRU": "n", "RNN": "h"}
"""The kind whose pre-activation mixes x and h₋₁ through the cell's nonlinearity (tanh; an RNN's may be relu)."""
TANH_KINDS = frozenset(("g", "n"))
"""Every kind that is always a tanh, so lies in [-1, 1]."""
WEIGHT_BLOCKS: dict[str, tuple[str, ...]] = {"LSTM": ("i", "f", "g", "o"), "GRU": ("r", "z", "n"), "RNN": ("h",)}
"""The row blocks of fused weights, in PyTorch's order: ``W_ih`` is ``(W_ii|W_if|W_ig|W_io)`` for an LSTM and
``(W_ir|W_iz|W_in)`` for a GRU, ``[blocks·H, I]``; ``W_hh`` and the biases likewise."""

EQUATIONS: dict[str, dict[str, str]] = {
    "LSTM": {
        "i": "σ(W_ii x + b_ii + W_hi h₋₁ + b_hi)",
        "f": "σ(W_if x + b_if + W_hf h₋₁ + b_hf)",
        "g": "tanh(W_ig x + b_ig + W_hg h₋₁ + b_hg)",
        "o": "σ(W_io x + b_io + W_ho h₋₁ + b_ho)",
        "c": "f ⊙ c₋₁ + i ⊙ g",
        "h": "o ⊙ tanh(c)",
    },
    "GRU": {
        "r": "σ(W_ir x + b_ir + W_hr h₋₁ + b_hr)",
        "z": "σ(W_iz x + b_iz + W_hz h₋₁ + b_hz)",
        "n": "tanh(W_in x + b_in + r ⊙ (W_hn h₋₁ + b_hn))",
        "h": "(1 − z) ⊙ n + z ⊙ h₋₁",
    },
    "RNN": {"h": "tanh(W_ih x + b_ih + W_hh h₋₁ + b_hh)"},
}
"""Each cell's equations, kind → right-hand side, exactly as PyTorch computes them. x is the layer's input at a
step, h₋₁ and c₋₁ the states one step before (the initial state at the first step), ⊙ the elementwise product.
An RNN with ``nonlinearity="relu"`` takes relu for tanh; an LSTM with ``proj_size > 0`` ends in
:data:`PROJECTION`."""
PROJECTION = {"hp": "o ⊙ tanh(c)", "h": "W_hr hp"}
"""The last two equations of an LSTM with ``proj_size > 0`` (h is then ``[B, T, proj_size]``)."""
GRU_Z_CAVEAT = (
    "PyTorch's GRU computes h = (1 − z) ⊙ n + z ⊙ h₋₁, so z near 1 *keeps* the old state: the opposite of "
    "Chung et al. (2014) and of Karpathy et al.'s (2015) figures, where z near 1 takes the new candidate."
)
"""Said wherever a GRU's z is shown."""

DIRECTIONS = ("fwd", "rev")
GRAD_SUFFIX = "_grad"


@dataclass(frozen=True)
class Name:
    """A parsed activation name."""

    module: str
    layer: int
    dir: str
    kind: str
    grad: bool = False

    def __str__(self) -> str:
        return build(self.module, self.layer, self.dir, self.kind, grad=self.grad)


def build(module: str, layer: int, dir: str, kind: str, *, grad: bool = False) -> str:
    """``build("rnn", 0, "fwd", "f") == "rnn.l0.fwd.f"``."""
    if dir not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {dir!r}")
    return f"{module}.l{layer}.{dir}.{kind}{GRAD_SUFFIX if grad else ''}"


def parse(name: str) -> Name:
    """Inverse of :func:`build`. Raises ``ValueError`` naming the malformed part."""
    parts = name.rsplit(".", 3)
    if len(parts) != 4:
        raise ValueError(f"activation name {name!r} is not of the form module.l<layer>.<fwd|rev>.<kind>")
    module, layer, dir, kind = parts
    if not (layer.startswith("l") and layer[1:].isdigit()):
        raise ValueError(f"activation name {name!r}: layer part {layer!r} is not l<number>")
    if dir not in DIRECTIONS:
        raise ValueError(f"activation name {name!r}: direction {dir!r} is not fwd or rev")
    grad = kind.endswith(GRAD_SUFFIX)
    if grad:
        kind = kind[: -len(GRAD_SUFFIX)]
    return Name(module, int(layer[1:]), dir, kind, grad)


def weight_suffix(layer: int, reverse: bool) -> str:
    """The suffix of torch's parameter names for a layer and direction: ``weight_hh`` + ``"_l1_reverse"``."""
    return f"_l{layer}{'_reverse' if reverse else ''}"


def equations(cell: str, proj_size: int = 0, nonlinearity: str = "tanh") -> list[str]:
    """``["i = σ(W_ii x + …)", …]``: the cell's :data:`EQUATIONS` as lines, in order of computation."""
    eqs = dict(EQUATIONS[cell])
    if cell == "LSTM" and proj_size > 0:
        del eqs["h"]
        eqs.update(PROJECTION)
    if cell == "RNN" and nonlinearity == "relu":
        eqs["h"] = eqs["h"].replace("tanh", "relu")
    return [f"{k} = {v}" for k, v in eqs.items()]


def cell_of_kinds(kinds: Iterable[str]) -> str:
    """``"LSTM"``, ``"GRU"`` or ``"RNN"``: the cell whose kinds besides h are all among ``kinds``."""
    have = set(kinds)
    for cell in CELLS:
        if set(KINDS[cell]) - {"h"} <= have:
            return cell
    return "RNN"


def cell_kinds(cell: str, proj_size: int = 0) -> tuple[str, ...]:
    """The kinds recorded for a cell type ``"LSTM" | "GRU" | "RNN"``, in recording order."""
    kinds = KINDS[cell]
    if cell == "LSTM" and proj_size > 0:
        kinds = (*kinds[:-1], "hp", "h")
    return kinds
