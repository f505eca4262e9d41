"""Record every gate, cell and hidden state of the LSTM / GRU / RNN modules inside any PyTorch model.

The recorder finds each ``nn.LSTM``, ``nn.GRU`` and ``nn.RNN`` with ``named_modules()`` and, for the duration of
a ``with`` block, replaces its ``forward`` by an instrumented one that runs the layers one at a time:

* ``h`` of every layer and direction comes from torch's own fused kernel (the same ``_VF`` call the module makes,
  one layer at a time), so it *is* the module's output;
* gates and ``c`` are then rebuilt exactly from ``(x_t, h_{t-1})`` in one batched GEMM plus a chunked linear scan
  (strategy ``"replay"``), or the layer is run by a tight step loop that keeps the gates as it goes (strategy
  ``"loop"``, same FLOPs as the plain forward; it wins on a CPU when many streams make the forward GEMM-bound).
  Both live in :mod:`lstmviz.layers`.

See :mod:`lstmviz.cells` for the equations and :mod:`lstmviz.names` for the activation names and shapes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import layers, stepcells, taps
from .cache import ActivationCache, NameFilter, check_names, join_calls, name_filter
from .errors import RunError, UserError
from .kernels.pointwise import compiled_pointwise
from .kernels.pool import Pool
from .recurrent import RecurrentModule, find_recurrent
from .store import Activation

STRATEGIES = ("auto", "replay", "loop")
Call = Callable[[nn.Module, Tensor], object]


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
        self.keep = name_filter(names)
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
        self._taps.flush(lambda name, pieces: self.cache.add(name, join_calls(pieces)))

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
        output, h_n, c_n = layers.run_layers(
            rm, input, x_bf, lengths, h0, c0, strategy, self.keep, self.cache.add, self._pool_of(rm)
        )
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

    def _pool_of(self, rm: RecurrentModule) -> layers.PoolOf:
        """The step loop's buffers for this call of ``rm``: one pool per call, so a stepped decoder keeps every
        step's values (None unless ``reuse_buffers``)."""
        if self._pools is None:
            return lambda layer, d: None
        call = self._calls[rm.path]
        return lambda layer, d: self._pools.setdefault((rm.path, call, layer, d), Pool())


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


def default_call(model: nn.Module, ids: Tensor) -> object:
    """The default calling convention: ``model(ids)`` with ids ``[batch, time]``."""
    return model(ids)
