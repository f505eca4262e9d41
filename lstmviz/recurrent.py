"""The recurrent modules inside a model: each ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` found by ``named_modules()``,
with what determines its activation names and shapes (see :mod:`lstmviz.names`)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from . import cells
from . import names as _names
from .store import Activation


@dataclass(frozen=True)
class RecurrentModule:
    """A recurrent module found inside a model, with what determines its activation names and shapes."""

    path: str
    module: nn.RNNBase
    cell: str  # "LSTM" | "GRU" | "RNN"

    @property
    def layers(self) -> int:
        return self.module.num_layers

    @property
    def dirs(self) -> tuple[str, ...]:
        return ("fwd", "rev") if self.module.bidirectional else ("fwd",)

    @property
    def hidden(self) -> int:
        return self.module.hidden_size

    @property
    def out_size(self) -> int:
        """Size of h: proj_size for a projected LSTM, else hidden_size."""
        return getattr(self.module, "proj_size", 0) or self.module.hidden_size

    def kinds(self) -> tuple[str, ...]:
        return _names.cell_kinds(self.cell, getattr(self.module, "proj_size", 0))

    def activations(self) -> list[Activation]:
        """Every activation this module yields, in recording order."""
        return [
            Activation(
                _names.build(self.path, layer, d, k), self.path, layer, d, k, self.out_size if k == "h" else self.hidden
            )
            for layer in range(self.layers)
            for d in self.dirs
            for k in self.kinds()
        ]

    def describe(self) -> dict:
        m = self.module
        return {
            "path": self.path,
            "cell": self.cell,
            "input_size": m.input_size,
            "hidden_size": m.hidden_size,
            "num_layers": m.num_layers,
            "bidirectional": m.bidirectional,
            "batch_first": m.batch_first,
            "proj_size": getattr(m, "proj_size", 0),
            "bias": m.bias,
            "dropout": m.dropout,
            "nonlinearity": getattr(m, "nonlinearity", None),
        }


def find_recurrent(model: nn.Module) -> list[RecurrentModule]:
    """Every ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` in ``model``, by ``named_modules()`` path.

    A model that *is* a recurrent module (path ``""``) is named by its cell: ``lstm``, ``gru`` or ``rnn``.
    """
    found = []
    for path, m in model.named_modules():
        cell = cells.cell_type(m)
        if cell is not None:
            found.append(RecurrentModule(path or cell.lower(), m, cell))
    return found
