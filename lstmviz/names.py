"""Activation names: ``{module}.l{layer}.{dir}.{kind}``, with an optional ``_grad`` suffix.

Names are never typed by hand. ``module`` is the path from ``model.named_modules()`` and may contain dots, so a
name is parsed from the right with ``rsplit(".", 3)``.

Kinds, each recorded as ``[batch, time, units]`` (batch-first whatever the module's ``batch_first`` is):

=====  ======  ==========================================================  ==============
cell   kind    meaning                                                     units
=====  ======  ==========================================================  ==============
LSTM   ``i``   input gate σ(W_ii x + b_ii + W_hi h₋₁ + b_hi)               hidden_size
LSTM   ``f``   forget gate σ(W_if x + b_if + W_hf h₋₁ + b_hf)              hidden_size
LSTM   ``g``   cell candidate tanh(W_ig x + b_ig + W_hg h₋₁ + b_hg)        hidden_size
LSTM   ``o``   output gate σ(W_io x + b_io + W_ho h₋₁ + b_ho)              hidden_size
LSTM   ``c``   cell state c = f⊙c₋₁ + i⊙g                                  hidden_size
LSTM   ``hp``  pre-projection o⊙tanh(c) (only when proj_size > 0)          hidden_size
LSTM   ``h``   hidden state o⊙tanh(c), or W_hr·hp when proj_size > 0       proj_size or hidden_size
GRU    ``r``   reset gate σ(W_ir x + b_ir + W_hr h₋₁ + b_hr)               hidden_size
GRU    ``z``   update gate σ(W_iz x + b_iz + W_hz h₋₁ + b_hz)              hidden_size
GRU    ``n``   candidate tanh(W_in x + b_in + r⊙(W_hn h₋₁ + b_hn))         hidden_size
GRU    ``h``   hidden state (1−z)⊙n + z⊙h₋₁  (PyTorch's convention)        hidden_size
RNN    ``h``   hidden state tanh or relu(W_ih x + b_ih + W_hh h₋₁ + b_hh)  hidden_size
=====  ======  ==========================================================  ==============

``dir`` is ``fwd`` or ``rev``; for ``rev`` the time axis is the original input position, as in PyTorch's
bidirectional output.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS: dict[str, tuple[str, ...]] = {
    "LSTM": ("i", "f", "g", "o", "c", "h"),
    "GRU": ("r", "z", "n", "h"),
    "RNN": ("h",),
}
GATE_KINDS: dict[str, tuple[str, ...]] = {"LSTM": ("i", "f", "o"), "GRU": ("r", "z")}
"""Sigmoid gates, whose saturation (< 0.1, > 0.9) is meaningful."""

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


def cell_kinds(cell: str, proj_size: int = 0) -> tuple[str, ...]:
    """The kinds recorded for a cell type ``"LSTM" | "GRU" | "RNN"``, in recording order."""
    kinds = KINDS[cell]
    if cell == "LSTM" and proj_size > 0:
        kinds = (*kinds[:-1], "hp", "h")
    return kinds
