"""Record every gate, cell and hidden state of the LSTM / GRU / RNN modules inside any PyTorch model.

The recorder finds each ``nn.LSTM``, ``nn.GRU`` and ``nn.RNN`` with ``named_modules()`` and, for the duration of
a ``with`` block, replaces its ``forward`` by an instrumented one that runs the layers one at a time:

* ``h`` of every layer and direction comes from torch's own fused kernel (the same ``_VF`` call the module makes,
  one layer at a time), so it *is* the module's output;
* gates and ``c`` are then rebuilt exactly from ``(x_t, h_{t-1})`` in one batched GEMM plus a chunked linear scan
  (strategy ``"replay"``), or the layer is run by a tight step loop that keeps the gates as it goes (strategy
  ``"loop"``, same FLOPs as the plain forward; it wins on a CPU when many streams make the forward GEMM-bound).

See :mod:`lstmviz.cells` for the equations and :mod:`lstmviz.names` for the activation names and shapes.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import _VF, Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import cells, stepcells, taps
from . import names as _names
from .errors import ModelError, UserError
from .kernels.loop import gru_loop, lstm_loop
from .kernels.pointwise import compiled_pointwise
from .kernels.pool import Pool
from .store import Activation, Observer, RunError, RunWriter, tokens_frame

NameFilter = Iterable[str] | Callable[[str], bool] | None
STRATEGIES = ("auto", "replay", "loop")
_KERNELS = {"LSTM": _VF.lstm, "GRU": _VF.gru, ("RNN", "tanh"): _VF.rnn_tanh, ("RNN", "relu"): _VF.rnn_relu}


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


def _name_filter(names: NameFilter) -> Callable[[str], bool]:
    if names is None:
        return lambda _: True
    if callable(names):
        return names
    wanted = _listed(names)
    return wanted.__contains__


def _listed(names: NameFilter) -> set[str] | None:
    """The names an iterable filter lists (one string is one name); None for no filter or a predicate."""
    if names is None or callable(names):
        return None
    return {names} if isinstance(names, str) else set(names)


def check_names(names: NameFilter, available: Sequence[str]) -> None:
    """A :class:`UserError` naming the valid names when ``names`` lists one that ``available`` lacks."""
    unknown = sorted((_listed(names) or set()) - set(available))
    if unknown:
        shown = ", ".join(available[:12]) + (f" … ({len(available)} in all)" if len(available) > 12 else "")
        raise UserError(
            f"names=: this model has no activation {unknown[0]!r}; its activations are {shown or '(none)'}",
            arguments=("names=",),
        )


class ActivationCache(dict):
    """Recorded activations: name → tensor ``[batch, time, units]`` (batch-first), detached.

    ``lengths[module_path]`` is a LongTensor ``[batch]`` of valid lengths (all ``time`` unless the input was a
    PackedSequence, whose padded positions are zero). ``final[module_path]`` is the state the module returned.
    A module called several times in one forward (e.g. a decoder stepped token by token, a step cell, a tapped
    cell) has its calls concatenated along time; ``calls[module_path]`` is the batch size of each call. Calls
    that differ in batch size (a beam) cannot share a time axis: such a name holds a list with one
    ``[batch_k, time_k, units]`` tensor per call, in call order (see :mod:`lstmviz.stepcells`).
    """

    def __init__(self) -> None:
        super().__init__()
        self.lengths: dict[str, Tensor] = {}
        self.final: dict[str, Tensor | tuple[Tensor, Tensor]] = {}
        self.calls: dict[str, list[int]] = {}
        self.modules: list[RecurrentModule] = []

    def add(self, name: str, value: Tensor | list[Tensor]) -> None:
        """Append one call's (or calls') value along time; a list per call once batch sizes differ."""
        prev = self.get(name)
        if prev is None:
            self[name] = value
        elif isinstance(prev, Tensor) and isinstance(value, Tensor) and prev.shape[0] == value.shape[0]:
            self[name] = torch.cat([prev, value], dim=1)
        else:
            self[name] = [*_as_calls(prev), *_as_calls(value)]


def _as_calls(value: Tensor | list[Tensor]) -> list[Tensor]:
    return value if isinstance(value, list) else [value]


def _join(pieces: list[Tensor]) -> Tensor | list[Tensor]:
    """Per-call ``[batch_k, time_k, units]`` pieces → ``[batch, Σ time_k, units]``, or the list if batches differ."""
    if len({p.shape[0] for p in pieces}) == 1:
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
    return pieces


def _reverse_within(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence in time within its length. x ``[B, T, ·]``; positions past a length stay put."""
    if lengths is None:
        return x.flip(1)
    T = x.shape[1]
    t = torch.arange(T, device=x.device)
    lens = lengths.to(x.device).unsqueeze(1)
    idx = torch.where(t < lens, lens - 1 - t, t)  # (B, T)
    return x.gather(1, idx.unsqueeze(2).expand_as(x))


def _permute(state, index: Tensor | None):
    """Reorder a state tensor (or tuple of them, ``[L·D, B, ·]``) along batch, as PyTorch's permute_hidden."""
    if state is None or index is None:
        return state
    if isinstance(state, tuple):
        return tuple(s.index_select(1, index) for s in state)
    return state.index_select(1, index)


class Recorder(contextlib.AbstractContextManager):
    """Context manager that instruments every recurrent module of ``model`` and collects a fresh cache per forward.

    Besides nn.LSTM / nn.GRU / nn.RNN it records every call of an nn.LSTMCell / nn.GRUCell / nn.RNNCell
    (:mod:`lstmviz.stepcells`) and every :func:`lstmviz.tap` of the model's modules (:mod:`lstmviz.taps`). Their
    calls are joined into the cache when the model's forward returns (or at :meth:`flush`, or the block's end).

    Args:
        model: any module containing recurrent modules, step cells, or cells that call ``lstmviz.tap``.
        names: which activation names to keep (iterable, predicate, or None for all). Gates that nothing asks
            for are not computed.
        strategy: ``"auto"``, ``"replay"`` or ``"loop"`` (see the module docstring).
        carry: if True, a module called with ``hx=None`` starts from the state it ended with on the previous
            forward (stateful streaming over a long corpus); ``reset()`` forgets it.
        reuse_buffers: if True, the step loop writes into the same buffers on every forward, so a cache is
            only valid until the next forward (streaming callers that consume each chunk at once).

    ``lengths`` (LongTensor ``[B]``, or None), set before a forward over a right-padded batch of ``B``
    independent sequences, makes the padding invisible: a sequence module given a plain ``[B, T, ·]`` tensor
    (``T`` the longest length) runs as if it were packed, so each row's states, forward and reverse (which
    starts at the row's own last step), and its final state equal the module on that row alone; its output
    is zero past each length, as ``pad_packed_sequence`` gives it. Modules given a PackedSequence, step
    cells and taps are recorded as they are called.
    """

    def __init__(
        self,
        model: nn.Module,
        names: NameFilter = None,
        strategy: str = "auto",
        carry: bool = False,
        reuse_buffers: bool = False,
    ):
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        self.model = model
        self.modules = find_recurrent(model)
        self.cells = stepcells.find_cells(model)
        self.keep = _name_filter(names)
        self.strategy = strategy
        self.carry = carry
        self.state: dict[str, object] = {}
        self.cache = ActivationCache()
        self._pools: dict[tuple[str, int, int, str], Pool] | None = {} if reuse_buffers else None
        self._calls: dict[str, int] = {}  # calls of each module in the current forward
        self._installed: list[tuple[nn.Module, object]] = []
        self._steps = stepcells.StepRecorder(self.cells, self.keep, self.state, carry)
        self._taps = taps.TapRecorder(model, self.keep, self._carry_tapped if carry else None)
        self._hook = None
        self.lengths: Tensor | None = None

    def reset(self) -> None:
        """Forget carried states."""
        self.state.clear()

    def _carry_tapped(self, tapped: taps.TappedModule) -> None:
        """From its next call on, carry a tapped cell's state as a step cell's (when it takes ``hx`` as one)."""
        m = tapped.module
        if stepcells.follows_cell_convention(m) and not any(m is done for done, _ in self._installed):
            self._installed.append((m, m.__dict__.get("forward")))
            m.forward = stepcells.carrying(m, tapped.path, self.state)

    def flush(self) -> None:
        """Join the step cells' and taps' calls so far into the cache (done when the model's forward returns)."""
        self._steps.flush(self.cache.add, self.cache.calls, self.cache.lengths)
        self._taps.flush(lambda name, pieces: self.cache.add(name, _join(pieces)))

    def recorded(self) -> list:
        """Everything recorded, in recording order: the sequence modules, the step cells, and the modules whose
        taps have been seen. Each has ``path``, ``kinds()``, ``activations()`` and ``describe()``."""
        return [*self.modules, *self.cells, *(t for t in self._taps.modules.values() if t.units)]

    def activations(self) -> list[Activation]:
        """The activations kept by the name filter, in recording order (taps: those seen so far)."""
        return [a for m in self.recorded() for a in m.activations() if self.keep(a.name)]

    def nothing_found(self) -> RunError:
        """The error for a model with nothing to record."""
        return RunError(
            f"{type(self.model).__name__} contains no nn.LSTM, nn.GRU, nn.RNN, nn.LSTMCell, nn.GRUCell "
            f"or nn.RNNCell, and its forward called no lstmviz.tap: there is nothing to record"
        )

    def new_cache(self) -> ActivationCache:
        """Start collecting into a fresh cache, and return it."""
        if self._installed:
            self.flush()  # what is pending belongs to the cache being replaced
        self.cache = ActivationCache()
        self.cache.modules = self.modules
        self._calls = {}
        return self.cache

    def __enter__(self) -> Recorder:
        self.new_cache()
        try:
            for rm in self.modules:
                self._installed.append((rm.module, rm.module.__dict__.get("forward")))
                rm.module.forward = self._instrumented(rm)
            for sc in self.cells:
                self._installed.append((sc.module, sc.module.__dict__.get("forward")))
                sc.module.forward = self._steps.forward_of(sc)
            self._hook = self.model.register_forward_hook(lambda *_: self.flush())
            self._taps.__enter__()
        except BaseException:
            self._uninstall()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            if exc[0] is None:
                self.flush()
        finally:
            self._uninstall()

    def _uninstall(self) -> None:
        self._taps.__exit__()
        self._steps.pending.clear()  # a forward that raised leaves calls that belong to no cache
        self._taps.pending.clear()
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        while self._installed:
            module, previous = self._installed.pop()
            if previous is None:
                module.__dict__.pop("forward", None)
            else:
                module.forward = previous

    def _instrumented(self, rm: RecurrentModule) -> Callable:
        def forward(input, hx=None):
            return self._forward(rm, input, hx)

        return forward

    def _pick_strategy(self, rm: RecurrentModule, x: Tensor, packed: bool) -> str:
        if rm.cell == "RNN" or packed or torch.is_grad_enabled():
            return "replay"  # the kernel's output keeps its autograd graph; the step loop would not
        if self.strategy != "auto":
            return self.strategy
        # bench/record.py measures these crossovers. torch's own CPU GRU is not a fused oneDNN kernel, so our
        # step loop (packed GEMM + a few elementwise ops) beats replaying its gates at any batch. torch's LSTM is
        # fused; replaying its gates costs one extra GEMM over all steps, which is cheap at batch 1 (the fused
        # kernel is latency-bound there) but doubles the FLOPs with more streams, where the loop wins instead:
        # from batch 2 with the compiled pointwise update, from between 2 and 4 with torch ops.
        # On a GPU, replay: cuDNN's kernel is far faster than any Python step loop.
        if x.device.type != "cpu":
            return "replay"
        batch = x.shape[0] if rm.module.batch_first else x.shape[1]
        return "loop" if rm.cell == "GRU" or batch >= (2 if compiled_pointwise(x) else 4) else "replay"

    def _padded(self, rm: RecurrentModule, input) -> Tensor | None:
        """The row lengths to pack ``input`` by: when :attr:`lengths` is set, ``input`` is a plain batched
        tensor with one row per length and the longest length's steps, and some row is shorter."""
        lens = self.lengths
        if lens is None or isinstance(input, PackedSequence) or input.dim() != 3:
            return None
        B, T = (input.shape[0], input.shape[1]) if rm.module.batch_first else (input.shape[1], input.shape[0])
        if len(lens) != B or int(lens.max()) != T or int(lens.min()) in (0, T):
            return None
        return lens.to("cpu", torch.long)

    def _forward(self, rm: RecurrentModule, input, hx):
        m = rm.module
        lens = self._padded(rm, input)
        if lens is not None:
            T = input.shape[1] if m.batch_first else input.shape[0]
            packed_in = pack_padded_sequence(input, lens, batch_first=m.batch_first, enforce_sorted=False)
            out, state = self._forward(rm, packed_in, hx)
            return pad_packed_sequence(out, batch_first=m.batch_first, total_length=T)[0], state
        packed = isinstance(input, PackedSequence)
        unbatched = not packed and input.dim() == 2
        if unbatched:
            input = input.unsqueeze(1 if not m.batch_first else 0)
            if hx is not None:
                hx = tuple(h.unsqueeze(1) for h in hx) if isinstance(hx, tuple) else hx.unsqueeze(1)
        if packed:
            x_bf, lengths = pad_packed_sequence(input, batch_first=True)  # (B, T, I), original order
            B = x_bf.shape[0]
        else:
            x_bf = input if m.batch_first else input.transpose(0, 1)
            B, lengths = x_bf.shape[0], None
        h0, c0 = self._initial_state(rm, hx, B, x_bf)
        self._calls[rm.path] = self._calls.get(rm.path, -1) + 1
        self.cache.calls.setdefault(rm.path, []).append(B)
        strategy = self._pick_strategy(rm, input if not packed else x_bf, packed)
        lens = lengths if lengths is not None else torch.full((B,), x_bf.shape[1], dtype=torch.long)
        prev = self.cache.lengths.get(rm.path)
        self.cache.lengths[rm.path] = lens if prev is None else prev + lens  # calls concatenate in time
        output, h_n, c_n = self._run_layers(rm, input, x_bf, lengths, h0, c0, strategy)
        if unbatched:
            output = output.squeeze(1 if not m.batch_first else 0)
            h_n = h_n.squeeze(1)
            c_n = c_n.squeeze(1) if c_n is not None else None
        state = (h_n, c_n) if rm.cell == "LSTM" else h_n
        if self.carry:
            self.state[rm.path] = (h_n.detach(), c_n.detach()) if rm.cell == "LSTM" else h_n.detach()
        self.cache.final[rm.path] = state
        return output, state

    def _initial_state(self, rm: RecurrentModule, hx, B: int, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """(h0 ``[L·D, B, P]``, c0 ``[L·D, B, H]`` or None), in the caller's batch order."""
        if hx is None and self.carry and rm.path in self.state:
            hx = self.state[rm.path]
        n = rm.layers * len(rm.dirs)
        if hx is None:
            h0 = x.new_zeros(n, B, rm.out_size)
            return h0, (x.new_zeros(n, B, rm.hidden) if rm.cell == "LSTM" else None)
        if rm.cell == "LSTM":
            return hx[0], hx[1]
        return hx, None

    def _run_layers(self, rm, input, x_bf, lengths, h0, c0, strategy):
        """Run every layer; record; return (output in the module's layout, h_n, c_n)."""
        m = rm.module
        packed = isinstance(input, PackedSequence)
        D = len(rm.dirs)
        per = len(m._flat_weights) // (m.num_layers * D)
        kernel = _KERNELS[rm.cell] if rm.cell != "RNN" else _KERNELS[("RNN", m.nonlinearity)]
        layer_in = input.data if packed else input
        layer_in_bf = x_bf
        h_ns, c_ns = [], []
        for layer in range(m.num_layers):
            sl = slice(layer * D, (layer + 1) * D)
            if strategy == "loop":
                out_bf, h_n, c_n, rec = self._loop_layer(
                    rm, layer, layer_in_bf, h0[sl], c0[sl] if c0 is not None else None
                )
                layer_out = out_bf if m.batch_first else out_bf.transpose(0, 1)
            else:
                weights = m._flat_weights[layer * D * per : (layer + 1) * D * per]
                hx = (h0[sl], c0[sl]) if rm.cell == "LSTM" else h0[sl]
                if packed:
                    hx = _permute(hx, input.sorted_indices)
                    res = kernel(layer_in, input.batch_sizes, hx, weights, m.bias, 1, 0.0, m.training, D == 2)
                else:
                    res = kernel(layer_in, hx, weights, m.bias, 1, 0.0, m.training, D == 2, m.batch_first)
                layer_out = res[0]
                h_n = res[1]
                c_n = res[2] if rm.cell == "LSTM" else None
                if packed:
                    h_n, c_n = _permute(h_n, input.unsorted_indices), _permute(c_n, input.unsorted_indices)
                out_bf = self._to_batch_first(rm, input, layer_out)
                rec = self._replay_layer(
                    rm, layer, layer_in_bf, out_bf, lengths, h0[sl], c0[sl] if c0 is not None else None
                )
            for name, value in rec.items():
                self.cache.add(name, value.detach())
            h_ns.append(h_n)
            if c_n is not None:
                c_ns.append(c_n)
            if m.training and m.dropout > 0 and layer < m.num_layers - 1:
                # Same semantics as the module's inter-layer dropout, though not the same random draws.
                layer_out = F.dropout(layer_out, m.dropout, True)
                out_bf = self._to_batch_first(rm, input, layer_out)
            layer_in, layer_in_bf = layer_out, out_bf
        h_n = torch.cat(h_ns, 0)
        c_n = torch.cat(c_ns, 0) if c_ns else None
        if packed:
            output = PackedSequence(layer_in, input.batch_sizes, input.sorted_indices, input.unsorted_indices)
        else:
            output = layer_in
        return output, h_n, c_n

    @staticmethod
    def _to_batch_first(rm: RecurrentModule, input, layer_out: Tensor) -> Tensor:
        """A layer's output in the kernel's layout → padded batch-first ``[B, T, ·]`` in the caller's order."""
        if isinstance(input, PackedSequence):
            seq = PackedSequence(layer_out, input.batch_sizes, input.sorted_indices, input.unsorted_indices)
            return pad_packed_sequence(seq, batch_first=True)[0]
        return layer_out if rm.module.batch_first else layer_out.transpose(0, 1)

    def _wanted(self, rm: RecurrentModule, layer: int, d: str) -> dict[str, str]:
        return {k: n for k in rm.kinds() if self.keep(n := _names.build(rm.path, layer, d, k))}

    def _replay_layer(self, rm, layer, x_bf, out_bf, lengths, h0, c0) -> dict[str, Tensor]:
        """Activations of one layer from its input x ``[B, T, I]`` and kernel output ``[B, T, D·P]``."""
        P = rm.out_size
        rec: dict[str, Tensor] = {}
        for di, d in enumerate(rm.dirs):
            wanted = self._wanted(rm, layer, d)
            if not wanted:
                continue
            h = out_bf[..., di * P : (di + 1) * P]
            vals = {"h": h}
            if set(wanted) - {"h"}:
                vals.update(self._replay_gates(rm, layer, d, di, x_bf, h, lengths, h0, c0))
            for k, name in wanted.items():
                v = vals[k]
                if lengths is not None and k != "h":
                    mask = torch.arange(v.shape[1], device=v.device) < lengths.to(v.device).unsqueeze(1)
                    v = v * mask.unsqueeze(2)
                rec[name] = v
        return rec

    @staticmethod
    @torch.no_grad()
    def _replay_gates(rm, layer, d, di, x_bf, h, lengths, h0, c0) -> dict[str, Tensor]:
        """Gates (and c) of one layer and direction, rebuilt from x ``[B, T, I]`` and h ``[B, T, P]``."""
        p = cells.layer_params(rm.module, layer, d == "rev")
        rev = d == "rev"
        xs = _reverse_within(x_bf, lengths) if rev else x_bf
        hs = _reverse_within(h, lengths) if rev else h
        g = cells.lstm_replay(xs, hs, h0[di], c0[di], p) if rm.cell == "LSTM" else cells.gru_replay(xs, hs, h0[di], p)
        return {k: _reverse_within(v, lengths) if rev else v for k, v in g.items()}

    def _loop_layer(self, rm, layer, x_bf, h0, c0):
        """Run one layer with the step loop. Returns (out ``[B, T, D·P]``, h_n, c_n, activations)."""
        outs, h_ns, c_ns, rec = [], [], [], {}
        for di, d in enumerate(rm.dirs):
            rev = d == "rev"
            p = cells.layer_params(rm.module, layer, rev)
            xs = x_bf.flip(1) if rev else x_bf
            key = (rm.path, self._calls[rm.path], layer, d)  # one pool per call: a stepped decoder keeps every step
            pool = None if self._pools is None else self._pools.setdefault(key, Pool())
            if rm.cell == "LSTM":
                vals = lstm_loop(xs, h0[di], c0[di], p, pool)
                c_ns.append(vals["c"][:, -1])
            else:
                vals = gru_loop(xs, h0[di], p, pool)
            h_ns.append(vals["h"][:, -1])
            if rev:
                vals = {k: v.flip(1) for k, v in vals.items()}
            outs.append(vals["h"])
            for k, name in self._wanted(rm, layer, d).items():
                rec[name] = vals[k]
        if len(outs) > 1:  # joined time-major, so the memory layout is torch's own (contiguous when seq-first)
            outs = [torch.cat([o.transpose(0, 1) for o in outs], dim=2).transpose(0, 1)]
        return outs[0], torch.stack(h_ns), (torch.stack(c_ns) if c_ns else None), rec


def run_with_cache(
    model: nn.Module,
    *args,
    names: NameFilter = None,
    strategy: str = "auto",
    call: Call | None = None,
    lengths: Sequence[int] | Tensor | None = None,
    **kwargs,
) -> tuple[object, ActivationCache]:
    """Run ``model(*args, **kwargs)`` (or ``call(model, ids)``) once and return ``(output, cache)``.

    ``output`` is what the model returns; the recorded ``h`` is the modules' own output. ``cache`` maps every
    activation name (``rnn.l0.fwd.f`` …; see :mod:`lstmviz.names`) to a detached ``[batch, time, units]``
    tensor; ``names`` keeps a subset: one name, an iterable of names (each must exist: an unknown one is a
    :class:`UserError` listing the valid ones), or a predicate. Hooks are removed even if the forward raises.

    ``call``: how to call the model on ids ``[batch, time]``, e.g. ``lstmviz.load_model(...).call`` for a model
    that is ``model(ids, hidden)``, ``model(ids, lengths)`` or sequence-first; ``args`` is then ``(ids,)``.
    ``lengths`` ``[batch]``: the valid length of each row of right-padded ids, so the padding is invisible to
    the sequence modules (see :class:`Recorder`) and ``call`` passes them to a model that takes lengths.
    """
    lens = None if lengths is None else torch.as_tensor(lengths, dtype=torch.long).reshape(-1)
    with Recorder(model, names=names, strategy=strategy) as rec:
        rec.lengths = lens
        if call is None:
            output = model(*args, **kwargs)
        elif len(args) != 1 or kwargs:
            raise UserError("with call=, run_with_cache takes the ids alone: run_with_cache(model, ids, call=...)")
        elif lens is not None and getattr(call, "takes_lengths", False):
            output = call(model, args[0], lengths=lens)
        else:
            output = call(model, args[0])
    if not rec.cache and not rec.recorded():
        raise rec.nothing_found()
    check_names(names, [a.name for m in rec.recorded() for a in m.activations()])
    return output, rec.cache


Call = Callable[[nn.Module, Tensor], object]
RowColumns = Callable[[object, np.ndarray, np.ndarray], Mapping[str, np.ndarray]]


def default_call(model: nn.Module, ids: Tensor) -> object:
    """The default calling convention: ``model(ids)`` with ids ``[batch, time]``."""
    return model(ids)


def _logits(output: object, batch: int, time: int) -> Tensor | None:
    """The ``[B, T, V]`` float logits in a model's output (itself, or the first element of a tuple), if any."""
    if isinstance(output, tuple | list) and output:
        output = output[0]
    if (
        isinstance(output, Tensor)
        and output.is_floating_point()
        and output.dim() == 3
        and output.shape[:2] == (batch, time)
    ):
        return output
    return None


@dataclass
class _Predictions:
    """Per-token next-token loss and top-k predictions, filled as chunks are recorded."""

    n: int
    k: int = 5
    loss: np.ndarray = field(init=False)
    top_ids: np.ndarray = field(init=False)
    top_p: np.ndarray = field(init=False)
    seen: bool = False

    def __post_init__(self) -> None:
        self.loss = np.full(self.n, np.nan, np.float32)
        self.top_ids = np.zeros((self.n, self.k), np.int32)
        self.top_p = np.zeros((self.n, self.k), np.float32)

    def add(self, logits: Tensor, targets: Tensor, rows: np.ndarray) -> None:
        """logits ``[M, V]`` for corpus rows ``rows [M]``; targets ``[M]`` (−1 where there is no next token)."""
        self.seen = True
        logp = torch.log_softmax(logits.float(), dim=-1)
        valid = targets >= 0
        loss = -logp.gather(1, targets.clamp(min=0).unsqueeze(1)).squeeze(1)
        loss = torch.where(valid, loss, torch.full_like(loss, float("nan")))
        top = logp.topk(min(self.k, logp.shape[-1]), dim=-1)
        k = top.indices.shape[1]
        self.loss[rows] = loss.cpu().numpy()
        self.top_ids[rows, :k] = top.indices.cpu().numpy()
        self.top_p[rows, :k] = top.values.exp().cpu().numpy()


def _manifest(model: nn.Module, modules: Sequence[RecurrentModule], extra: Mapping | None, **recording) -> dict:
    return {
        "model": {
            "class": f"{type(model).__module__}.{type(model).__qualname__}",
            "params": sum(p.numel() for p in model.parameters()),
            "modules": [rm.describe() for rm in modules],
        },
        "recording": recording,
        **(extra or {}),
    }


def record_corpus(
    model: nn.Module,
    token_ids: Sequence[int] | np.ndarray | Tensor,
    out_dir: str | Path,
    *,
    streams: int = 64,
    chunk: int = 128,
    device: str | torch.device | None = None,
    display: Sequence[str] | None = None,
    docs: Sequence[int] | np.ndarray | None = None,
    mode: str = "stateful",
    call: Call | None = None,
    names: NameFilter = None,
    strategy: str = "auto",
    tokens_extra: pd.DataFrame | None = None,
    manifest: Mapping | None = None,
    overwrite: bool = False,
    progress: bool | Callable[[int], None] = True,
    observers: Callable[[Activation], Iterable[Observer]] | None = None,
    hist_ranges: Mapping[str, tuple[float, float]] | None = None,
    shards: int | None = None,
    ray: str | None = None,
    pad_id: int = 0,
    row_columns: RowColumns | None = None,
) -> Path:
    """Stream a token sequence through ``model`` and write a run directory (see docs/FORMAT.md).

    ``mode="stateful"`` splits the corpus into ``streams`` contiguous parallel streams (as char-rnn trains) and
    feeds them ``chunk`` steps at a time, carrying every recurrent module's state from chunk to chunk; memory is
    flat in corpus length. ``mode="sequences"`` records each document (``docs``: a document id per token,
    contiguous) independently from a zero state, batching up to ``streams`` documents, right-padded with
    ``pad_id``; the padding is invisible to the sequence modules (see :class:`Recorder`: each document's states,
    forward and reverse, are the module's on that document alone), and a ``call`` that takes lengths
    (``call.takes_lengths``) is given each document's length.

    Args:
        model: any module with nn.LSTM / nn.GRU / nn.RNN, step cells (nn.LSTMCell …) or cells calling
            ``lstmviz.tap`` inside (see docs/FORMAT.md), called as ``call(model, ids)`` with ids
            ``[streams, chunk]`` (default ``model(ids)``). If it returns ``[B, T, V]`` logits, tokens.parquet
            gets ``loss`` (next-token cross-entropy, nats) and ``top_ids`` / ``top_p`` (top-5) columns.
        token_ids: ``[N]`` ints. display: ``[N]`` display strings (default: the ids).
        out_dir: the run directory; written as ``<out_dir>.partial`` and renamed when complete.
        device: ``"cuda"`` when available, else ``"cpu"``, unless given. The model is moved there.
        names / strategy: as for :func:`run_with_cache`.
        tokens_extra: annotation columns aligned to the tokens, stored in tokens.parquet.
        manifest: extra manifest entries (tokenizer, corpus source, checkpoint metrics…).
        observers: per activation, the :class:`~lstmviz.store.Observer` s that build derived data from the
            values as they are stored (see :class:`~lstmviz.store.RunWriter`). Default: the match indices at the
            select page's default θs and the overview (:func:`lstmviz.analysis.match_bits.recording_observers`),
            so a fresh run answers its first query as fast as later ones; ``lambda act: []`` builds none. The unit
            cards (:func:`lstmviz.cards.card_observers`) are not built by default: they cost more than a recording
            may (bench/cards.py), and a run without them builds each card on first use.
        hist_ranges: name → (lo, hi) of the stats histograms (see :class:`~lstmviz.store.RunWriter`).
        shards / ray: record ``shards`` contiguous pieces on Ray workers into one sharded run
            (:func:`lstmviz.distributed.record_sharded`; ``ray`` is ``"local"`` or a cluster address).
        progress: a bar, or a callable given the number of tokens of each chunk once it is recorded.
        pad_id: the id that right-pads the documents of a ``"sequences"`` batch (the model's own padding id).
        row_columns: ``row_columns(output, starts, counts)`` → ``{column: values [B]}`` for each batch: token
            columns made from the model's output, one value per batch row given to each of that row's tokens
            (in ``"sequences"`` mode, per document: e.g. a classifier's prediction). Not with ``shards``.
    """
    if shards is not None:
        from .distributed import record_sharded

        if observers is not None or hist_ranges is not None:
            raise ValueError("a sharded recording builds its own observers and histogram ranges")
        if row_columns is not None:
            raise ValueError("row_columns= is not supported with shards= (each shard is recorded on its own worker)")
        return record_sharded(
            model,
            token_ids,
            out_dir,
            shards=shards,
            ray=ray or "local",
            streams=streams,
            chunk=chunk,
            device=device,
            display=display,
            docs=docs,
            mode=mode,
            call=call,
            names=names,
            strategy=strategy,
            tokens_extra=tokens_extra,
            manifest=manifest,
            overwrite=overwrite,
            progress=progress,
            pad_id=pad_id,
        )
    ids = torch.as_tensor(np.asarray(token_ids), dtype=torch.long).reshape(-1)
    n = len(ids)
    doc_ids = check_corpus(n, mode, streams, chunk, display, tokens_extra, docs)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    call = call or default_call
    was_training = model.training
    model.to(device).eval()
    try:
        with Recorder(model, names=names, strategy=strategy, carry=(mode == "stateful"), reuse_buffers=True) as rec:
            tokens = tokens_frame(
                list(display) if display is not None else [str(i) for i in ids.tolist()], ids.numpy(), doc_ids
            )
            if tokens_extra is not None:
                for col in tokens_extra.columns:
                    tokens[col] = tokens_extra[col].to_numpy()
            preds = _Predictions(n)
            if observers is None:
                from .analysis.match_bits import recording_observers

                observers = recording_observers(n, Path(out_dir).expanduser().parent)
            staging = _Staging(device)
            with contextlib.ExitStack() as opened:
                writer = None  # opened after the first chunk: a tapped kind's units come from its tensor
                batches = (
                    _stateful_batches(ids, streams, chunk)
                    if mode == "stateful"
                    else _sequence_batches(ids, doc_ids, streams, pad_id)
                )
                for batch, starts, counts, targets, fresh in _progress(batches, progress):
                    if fresh:
                        rec.reset()
                        getattr(call, "reset", lambda: None)()  # a call that carries the model's own state
                    cache = rec.new_cache()
                    rec.lengths = torch.as_tensor(counts) if mode == "sequences" else None
                    with torch.inference_mode():
                        try:
                            if rec.lengths is not None and getattr(call, "takes_lengths", False):
                                out = call(model, batch.to(device), lengths=rec.lengths)
                            else:
                                out = call(model, batch.to(device))
                        except (UserError, RunError):
                            raise
                        except Exception as e:
                            raise ModelError.wrap(e) from e
                        rec.flush()  # for a call that steps the model's parts without calling the model itself
                    if writer is None:
                        meta = _manifest(
                            model,
                            rec.recorded(),
                            manifest,
                            mode=mode,
                            streams=streams,
                            chunk=chunk,
                            device=str(device),
                            strategy=strategy,
                        )
                        writer = opened.enter_context(
                            RunWriter(
                                out_dir,
                                tokens,
                                _kept(rec, names),
                                meta,
                                overwrite=overwrite,
                                observers=observers,
                                hist_ranges=hist_ranges,
                            )
                        )
                    staging.write(writer, cache, starts, counts)
                    for column, values in (row_columns(out, starts, counts) if row_columns else {}).items():
                        _set_rows(writer, column, np.asarray(values), starts, counts)
                    logits = _logits(out, *batch.shape)
                    if logits is not None:
                        rows, sel = _rows(starts, counts, batch.shape[1])
                        preds.add(logits.reshape(-1, logits.shape[-1])[sel], targets.reshape(-1)[sel], rows)
                if preds.seen:
                    writer.set_column("loss", 0, preds.loss)
                    writer.set_column("top_ids", 0, preds.top_ids)
                    writer.set_column("top_p", 0, preds.top_p)
                return writer.out
    finally:
        model.train(was_training)


def check_corpus(
    n: int,
    mode: str,
    streams: int,
    chunk: int,
    display: Sequence[str] | None,
    tokens_extra: pd.DataFrame | None,
    docs: np.ndarray | None,
) -> np.ndarray:
    """Check a corpus of ``n`` tokens and what comes with it before anything is recorded; returns the document
    id of each token, int64 ``[n]`` (all 0 without ``docs``)."""
    if n == 0:
        raise RunError("the corpus is empty: there are no tokens to record")
    if mode not in ("stateful", "sequences"):
        raise ValueError(f"mode must be 'stateful' or 'sequences', got {mode!r}")
    if streams < 1 or chunk < 1:
        raise ValueError("streams and chunk must be positive")
    if display is not None and len(display) != n:
        raise RunError(f"display has {len(display)} entries for {n} tokens")
    if tokens_extra is not None and len(tokens_extra) != n:
        raise RunError(f"annotations have {len(tokens_extra)} rows for {n} tokens")
    doc_ids = np.zeros(n, np.int64) if docs is None else np.asarray(docs, np.int64)
    if len(doc_ids) != n:
        raise RunError(f"docs has {len(doc_ids)} entries for {n} tokens")
    return doc_ids


def _kept(rec: Recorder, names: NameFilter) -> list[Activation]:
    """The activations a corpus recording writes, or the error that says why there are none."""
    every = [a for m in rec.recorded() for a in m.activations()]
    if not every:
        raise rec.nothing_found()
    kept = rec.activations()
    if kept:
        check_names(names, [a.name for a in every])
        return kept
    unknown = sorted(_listed(names) or ())
    why = f"names=: this model has no activation {unknown[0]!r}, so " if unknown else ""
    raise RunError(
        f"{why}names= matches no activation of this model (they look like {every[0].name!r})", arguments=("names=",)
    )


def _set_rows(writer: RunWriter, column: str, values: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> None:
    """Give ``values[b]`` (one per batch row) to the row's tokens ``[starts[b], starts[b] + counts[b])``."""
    if len(values) != len(starts):
        raise RunError(f"row column {column!r} has {len(values)} values for a batch of {len(starts)} rows")
    for value, start, count in zip(values, starts, counts, strict=True):
        if count:
            writer.set_column(column, int(start), np.repeat(value[None], count, axis=0))


def _rows(starts: np.ndarray, counts: np.ndarray, T: int) -> tuple[np.ndarray, Tensor]:
    """Corpus rows of the valid cells of a ``[B, T]`` batch, and their flat indices into it."""
    t = np.arange(T)
    valid = t[None, :] < counts[:, None]  # (B, T)
    rows = (starts[:, None] + t[None, :])[valid]
    return rows, torch.from_numpy(np.flatnonzero(valid))


class _Staging:
    """Two float16 host copies of a chunk's activations, so the writer's thread stores one while the forward
    computes the next (the recorder reuses its buffers, so each chunk is copied out before the next forward).

    On CUDA the copies are asynchronous, into pinned memory, and the writer's thread waits on an event recorded
    after them; on the CPU ``copy_`` is the float16 conversion itself.
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.buffers: list[dict[str, Tensor]] = [{}, {}]
        self.pending: list[list] = [[], []]
        self.k = 0

    def buffer(self, slot: int, name: str, shape: torch.Size) -> Tensor:
        """The slot's float16 host tensor for ``name``, of ``shape`` ``[B, T, U]`` (grown as needed)."""
        n = shape.numel()
        buf = self.buffers[slot].get(name)
        if buf is None or buf.numel() < n:
            buf = torch.empty(n, dtype=torch.float16, pin_memory=self.cuda)
            self.buffers[slot][name] = buf
        return buf[:n].view(shape)

    def write(self, writer: RunWriter, cache: ActivationCache, starts: np.ndarray, counts: np.ndarray) -> None:
        """Copy every cached activation ``[B, T, U]`` out and hand it to the writer's thread."""
        slot = self.k % 2
        self.k += 1
        for future in self.pending[slot]:  # this slot's previous chunk must be stored before it is overwritten
            future.result()
        for name, value in cache.items():
            if isinstance(value, list):
                raise RunError(
                    f"{name}: its calls in one chunk differ in batch size; a corpus recording needs every call "
                    f"to step all {len(starts)} streams"
                )
            if value.shape[0] != len(starts):
                raise RunError(
                    f"{name} came back with batch {value.shape[0]} for {len(starts)} streams: the model is "
                    f"called with ids [streams, chunk]; check its layout (--layout batch|seq)"
                )
        items = [(name, value) for name, value in cache.items() if name in writer.acts]
        copies = [(name, self.buffer(slot, name, value.shape)) for name, value in items]
        for (_, buf), (_, value) in zip(copies, items, strict=True):
            buf.copy_(value, non_blocking=self.cuda)
        ready = None
        if self.cuda:
            ready = torch.cuda.Event()
            ready.record()
        self.pending[slot] = [writer.submit_blocks(name, starts, buf.numpy(), counts, ready) for name, buf in copies]


BatchItem = tuple[Tensor, np.ndarray, np.ndarray, Tensor, bool]


def _stateful_batches(ids: Tensor, streams: int, chunk: int) -> Iterator[BatchItem]:
    """Split ids ``[N]`` into ``S`` contiguous streams of length ``L = ceil(N/S)`` and yield ``[S, chunk]`` steps.

    Yields (ids ``[S, c]``, corpus start of each row ``[S]``, valid count per row ``[S]``, next-token targets
    ``[S, c]`` (−1 past the corpus end), reset flag).
    """
    n = len(ids)
    S = min(streams, n)
    L = -(-n // S)
    padded = torch.cat([ids, ids.new_zeros(S * L - n)]).reshape(S, L)  # (S, L)
    nxt = torch.cat([ids[1:], ids.new_full((S * L - n + 1,), -1)]).reshape(S, L)  # (S, L)
    base = np.arange(S) * L
    for k in range(0, L, chunk):
        c = min(chunk, L - k)
        starts = base + k
        counts = np.clip(n - starts, 0, c)
        yield padded[:, k : k + c], starts, counts, nxt[:, k : k + c], k == 0


def _sequence_batches(ids: Tensor, docs: np.ndarray, streams: int, pad_id: int = 0) -> Iterator[BatchItem]:
    """Batch whole documents, up to ``streams`` at a time, each batch of documents of one length.

    Equal lengths mean no padding at all, so a model that reads its last step (``output[:, -1]``), or steps a
    cell over every column, computes each document's verdict as it would on that document alone (``pad_id``
    then fills no cell).
    """
    bounds = np.r_[0, np.flatnonzero(np.diff(docs)) + 1, len(docs)]
    spans = sorted(itertools.pairwise(bounds), key=lambda s: (s[1] - s[0], s[0]))
    groups = [list(g) for _, g in itertools.groupby(spans, key=lambda s: s[1] - s[0])]
    for group in (same[i : i + streams] for same in groups for i in range(0, len(same), streams)):
        T = max(b - a for a, b in group)
        batch = ids.new_full((len(group), T), pad_id)
        targets = ids.new_full((len(group), T), -1)
        for r, (a, b) in enumerate(group):
            batch[r, : b - a] = ids[a:b]
            targets[r, : b - a - 1] = ids[a + 1 : b]
        starts = np.array([a for a, _ in group])
        counts = np.array([b - a for a, b in group])
        yield batch, starts, counts, targets, True


def _progress(items: Iterable, enabled: bool | Callable[[int], None]) -> Iterable:
    if callable(enabled):
        return _reporting(items, enabled)
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc="recording", unit="chunk")


def _reporting(items: Iterable, report: Callable[[int], None]) -> Iterator:
    """Yield each batch, then report its token count (the valid cells) once the caller has recorded it."""
    for item in items:
        yield item
        report(int(np.asarray(item[2]).sum()))
