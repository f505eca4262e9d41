"""Recording ``nn.LSTMCell``, ``nn.GRUCell`` and ``nn.RNNCell``: models that step a cell one token at a time.

Each call of a cell is one time step. Its activations are named ``{module}.l0.fwd.{kind}`` with the kinds of the
sequence modules (LSTM ``i f g o c h``, GRU ``r z n h``, RNN ``h``; see :mod:`lstmviz.names`) and joined along
time as ``[batch, calls, units]``.

* ``h`` (and ``c``) are exactly what the cell returned to the model.
* The gates come from the call's own inputs ``(x, h₋₁, c₋₁)`` by the cell equations (:mod:`lstmviz.cells`), not
  from any earlier call, so calls in any order (a beam, several sequences, teacher forcing) are exact. At small
  batch the calls are kept by reference and their gates rebuilt together when the model's forward returns, in
  one batched GEMM; from :data:`IN_CALL_BATCH` rows on a CPU without autograd, the call itself computes h, c and
  the gates by the equations (torch's fused cell agrees to float rounding), since a rebuild would repeat the
  cell's GEMMs.
* Calls of one forward that differ in batch size (a beam that grows, independent sequences of different
  batch) cannot share a time axis: the cache then holds, for each name, a list with one ``[batch_k, 1, units]``
  tensor per call, in call order, and ``cache.calls[module]`` lists the batch size of each call.
* With ``carry`` (stateful corpus recording), a call with ``hx=None`` continues from the state the cell last
  returned, as a sequence module's does; ``reset()`` forgets it. A custom cell that calls ``lstmviz.tap`` is
  carried the same way when it follows the same convention (:func:`follows_cell_convention`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import cells
from . import names as _names
from .store import Activation, RunError

CELL_MODULES: dict[type[nn.Module], str] = {nn.LSTMCell: "LSTM", nn.GRUCell: "GRU", nn.RNNCell: "RNN"}


@dataclass(frozen=True)
class StepCell:
    """A step cell found inside a model. Its names have one layer (``l0``) and one direction (``fwd``)."""

    path: str
    module: nn.RNNCellBase
    cell: str  # "LSTM" | "GRU" | "RNN"

    @property
    def hidden(self) -> int:
        return self.module.hidden_size

    def kinds(self) -> tuple[str, ...]:
        return _names.cell_kinds(self.cell)

    def activations(self) -> list[Activation]:
        """Every activation this cell yields, in recording order; all have hidden_size units."""
        return [
            Activation(_names.build(self.path, 0, "fwd", k), self.path, 0, "fwd", k, self.hidden) for k in self.kinds()
        ]

    def params(self) -> cells.LayerParams:
        m = self.module
        return cells.LayerParams(m.weight_ih, m.weight_hh, m.bias_ih, m.bias_hh)

    def describe(self) -> dict:
        m = self.module
        return {
            "path": self.path,
            "cell": self.cell,
            "module": type(m).__name__,
            "stepped": True,
            "input_size": m.input_size,
            "hidden_size": m.hidden_size,
            "num_layers": 1,
            "bidirectional": False,
            "batch_first": True,
            "proj_size": 0,
            "bias": m.bias,
            "dropout": 0.0,
            "nonlinearity": getattr(m, "nonlinearity", None),
        }


def cell_module_type(module: nn.Module) -> str | None:
    """``"LSTM" | "GRU" | "RNN"`` for torch's step cells (and subclasses that keep torch's forward), else None.

    A subclass with its own forward computes something lstmviz cannot know; it can record itself with
    ``lstmviz.tap``.
    """
    for cls, name in CELL_MODULES.items():
        if isinstance(module, cls) and type(module).forward is cls.forward:
            return name
    return None


def find_cells(model: nn.Module) -> list[StepCell]:
    """Every ``nn.LSTMCell`` / ``nn.GRUCell`` / ``nn.RNNCell`` in ``model``, by ``named_modules()`` path.

    A model that *is* a cell (path ``""``) is named ``lstmcell``, ``grucell`` or ``rnncell``.
    """
    found = []
    for path, m in model.named_modules():
        cell = cell_module_type(m)
        if cell is not None:
            found.append(StepCell(path or f"{cell.lower()}cell", m, cell))
    return found


@dataclass
class _Call:
    """One call's inputs and outputs, batched: x ``[B, I]``, h0/h ``[B, H]``, c0/c ``[B, H]`` (LSTM only)."""

    x: Tensor
    h0: Tensor | None  # None: the cell's zero state
    c0: Tensor | None
    h: Tensor
    c: Tensor | None
    gates: dict[str, Tensor] | None = None  # computed in the call; None: rebuilt when the forward returns


IN_CALL_BATCH = 8
"""From this batch on (CPU, no autograd), an LSTM or GRU cell's call computes its own gates; below it, torch's cell
runs and the gates are rebuilt for all calls at once (bench/cells.py). With many rows the cell's two GEMMs are
most of a step, and a rebuild repeats them; with few, a step is mostly dispatch, and the elementwise ops of
computing the gates in the call would cost more than one batched GEMM at the end."""


class StepRecorder:
    """Instrumented forwards for a model's step cells, and the joining of their calls into a cache.

    ``state`` is the Recorder's dict of carried states (shared with the sequence modules; paths differ).
    """

    def __init__(self, found: list[StepCell], keep: Callable[[str], bool], state: dict, carry: bool):
        self.cells = found
        self.keep = keep
        self.state = state
        self.carry = carry
        self.pending: dict[str, list[_Call]] = {}

    def forward_of(self, sc: StepCell) -> Callable:
        """The forward installed on ``sc.module`` while recording."""
        own = type(sc.module).forward

        def run(input: Tensor, hx):
            gates = None
            if (
                sc.cell != "RNN"
                and input.dim() == 2
                and input.shape[0] >= IN_CALL_BATCH
                and input.device.type == "cpu"
                and not torch.is_grad_enabled()
            ):
                out, gates = (_lstm_call if sc.cell == "LSTM" else _gru_call)(sc.module, input, hx)
            else:
                out = own(sc.module, input, hx)
            self._keep(sc, input, hx, out, gates)
            return out

        return carrying(sc.module, sc.path, self.state if self.carry else None, run)

    def _keep(self, sc: StepCell, input: Tensor, hx, out, gates: dict[str, Tensor] | None) -> None:
        one = input.dim() == 1  # unbatched: recorded as batch 1

        def b(t: Tensor | None) -> Tensor | None:
            return t.unsqueeze(0) if t is not None and one else t

        h0, c0 = (hx if sc.cell == "LSTM" else (hx, None)) if hx is not None else (None, None)
        h, c = out if sc.cell == "LSTM" else (out, None)
        self.pending.setdefault(sc.path, []).append(_Call(b(input), b(h0), b(c0), b(h), b(c), gates))

    @torch.no_grad()
    def flush(
        self, add: Callable[[str, Tensor | list[Tensor]], None], calls: dict[str, list[int]], lengths: dict[str, Tensor]
    ) -> None:
        """Join the calls of the forward that just ended: ``add(name, value)`` for every kept name.

        ``value`` is ``[batch, calls, units]`` when every call had the same batch, else a list of
        ``[batch_k, 1, units]`` per call. ``calls[path]`` gets each call's batch size, ``lengths[path]`` the
        number of steps per row (only when the batch was the same throughout).
        """
        pending, self.pending = self.pending, {}
        for sc in self.cells:
            got = pending.get(sc.path)
            if not got:
                continue
            sizes = [c.x.shape[0] for c in got]
            prev = calls.get(sc.path, [])
            calls[sc.path] = prev + sizes
            if len(set(calls[sc.path])) == 1:
                n = torch.full((sizes[0],), len(sizes), dtype=torch.long)
                lengths[sc.path] = n if sc.path not in lengths else lengths[sc.path] + n
            else:
                lengths.pop(sc.path, None)
            wanted = {k: name for k in sc.kinds() if self.keep(name := _names.build(sc.path, 0, "fwd", k))}
            if not wanted:
                continue
            for name, value in self._values(sc, got, wanted).items():
                add(name, _per_call(value, sizes))

    def _values(self, sc: StepCell, got: list[_Call], wanted: dict[str, str]) -> dict[str, Tensor]:
        """name → the rows of every call stacked call by call, ``[Σ batch_k, units]``."""
        H = sc.hidden

        def rows(field: str, calls: list[_Call]) -> Tensor:
            like = got[0].h
            parts = [getattr(c, field) for c in calls]
            return torch.cat(
                [p if p is not None else like.new_zeros(len(c.x), H) for p, c in zip(parts, calls, strict=True)]
            )

        vals = {"h": rows("h", got)}
        if sc.cell == "LSTM":
            vals["c"] = rows("c", got)
        gates = set(wanted) - set(vals)
        if not gates:
            return {name: vals[k] for k, name in wanted.items()}
        need = [c for c in got if c.gates is None]
        rebuilt: dict[str, Iterator[Tensor]] = {}
        if need:
            x = torch.cat([c.x for c in need]).unsqueeze(1)  # (N, 1, I): every call is one step
            h = rows("h", need).unsqueeze(1)
            if sc.cell == "LSTM":
                out = cells.lstm_replay(x, h, rows("h0", need), rows("c0", need), sc.params())
            else:
                out = cells.gru_replay(x, h, rows("h0", need), sc.params())
            sizes = [len(c.x) for c in need]
            rebuilt = {k: iter(out[k].squeeze(1).split(sizes)) for k in gates}
        for k in gates:
            vals[k] = torch.cat([c.gates[k] if c.gates is not None else next(rebuilt[k]) for c in got])
        return {name: vals[k] for k, name in wanted.items()}


def follows_cell_convention(module: nn.Module) -> bool:
    """Does ``module`` take its state as nn.LSTMCell does: ``forward(input, hx=None, …)``, returning the new state?

    Only the signature can be checked: a second parameter that defaults to None.
    """
    try:
        params = list(inspect.signature(type(module).forward).parameters.values())[1:]  # after self
    except (TypeError, ValueError):
        return False
    return len(params) >= 2 and params[1].default is None


def carrying(module: nn.Module, path: str, state: dict | None, run: Callable | None = None) -> Callable:
    """A forward ``(input, hx=None, …)`` for ``module``: ``run(input, hx, …)`` (default: the module's own forward);
    with ``state``, a call with ``hx=None`` continues from the state the module last returned (``state[path]``)."""
    run = run or functools.partial(type(module).forward, module)

    def forward(input: Tensor, hx=None, *args, **kwargs):
        if hx is None and state is not None and path in state:
            hx = _carried(path, state[path], input)
        out = run(input, hx, *args, **kwargs)
        if state is not None:
            state[path] = out  # detached when it is used, once a chunk rather than once a step
        return out

    return forward


def _lstm_call(cell: nn.LSTMCell, x: Tensor, hx) -> tuple[tuple[Tensor, Tensor], dict[str, Tensor]]:
    """One nn.LSTMCell call by the cell equations, keeping its gates. x ``[B, I]`` → ((h, c), {i, f, g, o})."""
    h0, c0 = hx if hx is not None else (x.new_zeros(len(x), cell.hidden_size),) * 2
    z = F.linear(x, cell.weight_ih, cell.bias_ih).add_(F.linear(h0, cell.weight_hh, cell.bias_hh))  # (B, 4H)
    i, f, g, o = z.sigmoid().chunk(4, dim=1)
    g = z[:, 2 * cell.hidden_size : 3 * cell.hidden_size].tanh()
    c = torch.addcmul(i * g, f, c0)
    return (o * c.tanh(), c), {"i": i, "f": f, "g": g, "o": o}


def _gru_call(cell: nn.GRUCell, x: Tensor, h0: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
    """One nn.GRUCell call by PyTorch's GRU equations, keeping its gates. x ``[B, I]`` → (h, {r, z, n})."""
    H = cell.hidden_size
    h0 = h0 if h0 is not None else x.new_zeros(len(x), H)
    gi, gh = F.linear(x, cell.weight_ih, cell.bias_ih), F.linear(h0, cell.weight_hh, cell.bias_hh)  # (B, 3H)
    r, z = gi[:, : 2 * H].add_(gh[:, : 2 * H]).sigmoid_().chunk(2, dim=1)
    n = torch.addcmul(gi[:, 2 * H :], r, gh[:, 2 * H :]).tanh_()
    return torch.addcmul(n, z, h0 - n), {"r": r, "z": z, "n": n}  # h = n + z ⊙ (h₋₁ − n)


def _detach(t):
    return t.detach() if isinstance(t, Tensor) and t.requires_grad else t  # detach() itself costs a dispatch


def _carried(path: str, carried, input: Tensor):
    """The carried state, detached, after checking that it has this call's batch (``[B, ·]``, or unbatched)."""
    carried = tuple(_detach(t) for t in carried) if isinstance(carried, tuple | list) else _detach(carried)
    first = carried[0] if isinstance(carried, tuple) else carried
    if isinstance(first, Tensor) and isinstance(input, Tensor):
        have = first.shape[0] if first.dim() >= 2 else None
        batch = input.shape[0] if input.dim() >= 2 else None
        if have != batch:
            raise RunError(
                f"{path}: the state carried from the previous chunk has batch {have} but this call has {batch}; "
                f"stateful recording needs every call with hx=None to step all streams"
            )
    return carried


def _per_call(rows: Tensor, sizes: list[int]) -> Tensor | list[Tensor]:
    """``[Σ batch_k, U]`` rows, call by call → ``[B, calls, U]`` if every batch_k is B, else ``[batch_k, 1, U]``
    per call."""
    if len(set(sizes)) == 1:
        return rows.reshape(len(sizes), sizes[0], -1).transpose(0, 1)
    return [part.unsqueeze(1) for part in rows.split(sizes)]
