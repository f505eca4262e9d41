"""Run a model with units of its recurrent state held at chosen values: the causal half of run_with_cache.

    output, cache = lstmviz.intervene(model, ids, clamp={"rnn.l0.fwd.c": {255: 1.0}})
    fx = lstmviz.effects(model, ids, clamp={"rnn.l1.fwd.h": {197: "mean"}}, run=run)   # direct vs total

For the duration of a ``with Intervention(...)`` block every recurrent module is instrumented as by
:class:`~lstmviz.recorder.Recorder` (so the cache is collected as ``run_with_cache`` collects it), and the forward
of each module that holds something is replaced by one that runs it layer by layer and direction by direction
(:mod:`lstmviz.causal.steps`): torch's fused kernel outside the held span, a step loop that writes the clamp
inside it. The held value flows on through the recurrence and every layer above: the *total* effect.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from .. import cells
from .. import names as _names
from ..cache import ActivationCache, NameFilter
from ..errors import UserError
from ..recorder import Recorder
from ..recurrent import RecurrentModule
from ..store import Run
from .clamp import Clamp, resolve, resolve_span
from .steps import run_direction

Call = Callable[..., object]


class Intervention(contextlib.AbstractContextManager):
    """Context manager: ``model`` runs with ``clamp`` held, and each forward's activations are collected.

    Args:
        model: any module containing nn.LSTM / nn.GRU / nn.RNN submodules.
        clamp: ``{activation name: {unit: value}}``; see :mod:`lstmviz.causal.clamp`.
        span: ``(start, stop)`` time positions to hold (stop exclusive), or None for every step. Positions count
            each module's steps from the start of the block (for ``rev``, the original input position), as the
            cache's time axis does.
        run: a recorded run of this model (or its stats frame), for ``"mean"`` values.
        names: which activations the cache keeps, as for ``run_with_cache``.
        carry: a module called with no state starts from the state it ended with on the previous call
            (generation, token by token).
        direct: the clamp reaches only the held layer's output, not the state it carries to the next step; only
            for the last layer of a module.
    """

    def __init__(
        self,
        model: nn.Module,
        clamp: Clamp | None = None,
        *,
        span: tuple[int, int] | None = None,
        run: Run | pd.DataFrame | None = None,
        names: NameFilter = None,
        carry: bool = False,
        direct: bool = False,
    ):
        self.recorder = Recorder(model, names=names, carry=carry)
        self.holds = resolve(self.recorder.modules, clamp, run)
        self.start, self.stop = resolve_span(span)
        self.direct = direct
        if direct:
            for rm in self.recorder.modules:
                below = sorted({layer for layer, _ in self.holds.get(rm.path, {}) if layer != rm.layers - 1})
                if below:
                    raise UserError(
                        f"the direct effect is for the last layer of {rm.path} (l{rm.layers - 1}); "
                        f"l{below[0]} feeds a recurrent layer above it, so its effect is never direct"
                    )
        self._time: dict[str, int] = {}
        self._stack = contextlib.ExitStack()

    @property
    def cache(self) -> ActivationCache:
        """The activations of the latest forward (see :class:`~lstmviz.cache.ActivationCache`)."""
        return self.recorder.cache

    def reset(self) -> None:
        """Forget carried states and restart the time count."""
        self.recorder.reset()
        self._time.clear()

    def __enter__(self) -> Intervention:
        self._stack.enter_context(self.recorder)
        try:
            for rm in self.recorder.modules:
                if rm.path in self.holds:
                    self._stack.callback(_restore, rm.module, rm.module.__dict__.get("forward"))
                    rm.module.forward = self._held_forward(rm)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def _held_forward(self, rm: RecurrentModule) -> Callable:
        def forward(input, hx=None):
            return self._forward(rm, input, hx)

        return forward

    def _forward(self, rm: RecurrentModule, input, hx):
        m = rm.module
        if isinstance(input, PackedSequence):
            raise UserError(
                f"intervene runs {rm.path} on padded tensors; it was given a PackedSequence "
                f"(pad it with pad_packed_sequence, or record without a clamp)"
            )
        unbatched = input.dim() == 2
        if unbatched:
            input = input.unsqueeze(0 if m.batch_first else 1)
            if hx is not None:
                hx = tuple(h.unsqueeze(1) for h in hx) if isinstance(hx, tuple) else hx.unsqueeze(1)
        x = input if m.batch_first else input.transpose(0, 1)  # (B, T, I)
        B, T = x.shape[:2]
        h0, c0 = self._initial(rm, hx, x)
        t0 = self._time.get(rm.path, 0)
        self._time[rm.path] = t0 + T
        a = min(max(self.start - t0, 0), T)
        b = T if self.stop is None else min(max(self.stop - t0, 0), T)  # held steps [a, b) of this call
        cache = self.recorder.cache
        layer_in, h_n, c_n = x, [], []
        for layer in range(rm.layers):
            outs = []
            for di, d in enumerate(rm.dirs):
                rev = d == "rev"
                i = layer * len(rm.dirs) + di
                wanted = {k: n for k in rm.kinds() if self.recorder.keep(n := _names.build(rm.path, layer, d, k))}
                track = run_direction(
                    rm.cell,
                    getattr(m, "nonlinearity", "tanh"),
                    cells.layer_params(m, layer, rev),
                    layer_in.flip(1) if rev else layer_in,
                    h0[i],
                    None if c0 is None else c0[i],
                    self.holds[rm.path].get((layer, d)),
                    (T - b, T - a) if rev else (a, b),
                    direct=self.direct,
                    keep=frozenset(wanted),
                )
                h = track.h.flip(1) if rev else track.h
                outs.append(h)
                h_n.append(track.h_n)
                c_n.append(track.c_n)
                for k, name in wanted.items():
                    v = h if k == "h" else track.acts[k].flip(1) if rev else track.acts[k]
                    cache.add(name, v.detach())
            layer_in = torch.cat(outs, 2) if len(outs) > 1 else outs[0]
            if m.training and m.dropout and layer < rm.layers - 1:
                layer_in = F.dropout(layer_in, m.dropout, training=True)
        lens = torch.full((B,), T, dtype=torch.long)
        cache.lengths[rm.path] = lens if rm.path not in cache.lengths else cache.lengths[rm.path] + lens
        output = layer_in if m.batch_first else layer_in.transpose(0, 1)
        h_n = torch.stack(h_n)
        c_n = torch.stack(c_n) if rm.cell == "LSTM" else None
        if unbatched:
            output = output.squeeze(0 if m.batch_first else 1)
            h_n = h_n.squeeze(1)
            c_n = c_n.squeeze(1) if c_n is not None else None
        state = (h_n, c_n) if rm.cell == "LSTM" else h_n
        if self.recorder.carry:
            self.recorder.state[rm.path] = (h_n.detach(), c_n.detach()) if c_n is not None else h_n.detach()
        cache.final[rm.path] = state
        return output, state

    def _initial(self, rm: RecurrentModule, hx, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """(h0 ``[L·D, B, P]``, c0 ``[L·D, B, H]`` or None): given, carried, or zeros."""
        if hx is None and self.recorder.carry:
            hx = self.recorder.state.get(rm.path)
        if hx is None:
            n, B = rm.layers * len(rm.dirs), x.shape[0]
            return x.new_zeros(n, B, rm.out_size), (x.new_zeros(n, B, rm.hidden) if rm.cell == "LSTM" else None)
        return (hx[0], hx[1]) if rm.cell == "LSTM" else (hx, None)


def _restore(module: nn.Module, previous) -> None:
    if previous is None:
        module.__dict__.pop("forward", None)
    else:
        module.forward = previous


def intervene(
    model: nn.Module,
    *args,
    clamp: Clamp | None = None,
    span: tuple[int, int] | None = None,
    call: Call | None = None,
    run: Run | pd.DataFrame | None = None,
    names: NameFilter = None,
    **kwargs,
) -> tuple[object, ActivationCache]:
    """Run ``model(*args, **kwargs)`` (or ``call(model, *args, **kwargs)``) with ``clamp`` held; → (output, cache).

    ``clamp`` maps activation names to ``{unit: value}``: ``h`` or ``c`` of an LSTM layer, ``h`` of a GRU or RNN
    layer, any layer and direction (``{"rnn.l0.fwd.c": {255: 1.0}}``). A value is a number, ``"zero"``, or
    ``"mean"`` (the unit's corpus mean, from ``run``'s stats). ``span=(start, stop)`` holds only those time
    positions, else every step. The change flows on through the recurrence (the total effect). ``clamp={}`` is the
    plain forward. ``cache`` is as :func:`~lstmviz.run_with_cache` returns it, with the held values in it.

    A :class:`~lstmviz.models.loading.LoadedModel` is called by its own convention (``model.call``) on ids
    ``[batch, time]``.
    """
    module, call = unpack(model, call)
    with Intervention(module, clamp, span=span, run=run, names=names) as iv:
        output = call(module, *args, **kwargs) if call is not None else module(*args, **kwargs)
    return output, iv.cache


def unpack(model, call: Call | None) -> tuple[nn.Module, Call | None]:
    """(module, call) of a module or a LoadedModel (whose own convention is the default call)."""
    if hasattr(model, "module") and hasattr(model, "call") and not isinstance(model, nn.Module):
        return model.module, call or model.call
    if not isinstance(model, nn.Module):
        raise UserError(f"expected a torch nn.Module or a loaded model, got {type(model).__name__}")
    return model, call


def logits_of(output: object, what: str) -> Tensor:
    """The float ``[B, T, V]`` logits in a model's output (itself, or the first element of a tuple)."""
    if isinstance(output, tuple | list) and output:
        output = output[0]
    if isinstance(output, Tensor) and output.is_floating_point() and output.dim() == 3:
        return output
    shape = list(output.shape) if isinstance(output, Tensor) else type(output).__name__
    raise UserError(f"{what} needs a model that returns next-token logits [batch, time, vocab]; this one gave {shape}")


@dataclass
class Effects:
    """Logits ``[B, T, V]`` of the plain run, of the run with the clamp reaching the decoder only (``direct``), and
    of the full rerun through the recurrence (``total``). ``ids`` ``[B, T]`` the input. ``direct`` is None when it
    was not asked for."""

    ids: Tensor
    plain: Tensor
    direct: Tensor | None
    total: Tensor

    def delta_logp(self, which: str = "total") -> Tensor:
        """Change in log p(actual next token) at each position: ``[B, T-1]`` (position t predicts ids[t+1])."""
        return next_logp(getattr(self, which), self.ids) - next_logp(self.plain, self.ids)

    def delta_loss(self, which: str = "total") -> float:
        """Change in the mean next-token cross-entropy (nats): ``−mean(delta_logp)``."""
        return float(-self.delta_logp(which).mean())


def next_logp(logits: Tensor, ids: Tensor) -> Tensor:
    """log p(ids[t+1]) under logits[t]: logits ``[B, T, V]``, ids ``[B, T]`` → ``[B, T-1]``."""
    logits = logits[:, :-1]
    logp = torch.log_softmax(logits if logits.dtype == torch.float64 else logits.float(), dim=-1)
    return logp.gather(2, ids[:, 1:].unsqueeze(2).to(logp.device)).squeeze(2)


def effects(
    model: nn.Module,
    ids: Tensor,
    clamp: Clamp,
    *,
    span: tuple[int, int] | None = None,
    call: Call | None = None,
    run: Run | pd.DataFrame | None = None,
    direct: bool = True,
) -> Effects:
    """Direct against total effect of holding units of a module's last layer, on ids ``[B, T]`` (or ``[T]``).

    The direct effect lets the held value reach only what reads the module's output (the decoder), at the held
    steps themselves; the total effect reruns the recurrence with it held, so later steps and states change too.
    Their difference is what the recurrence carried. ``direct=False`` computes the total effect only, for a clamp
    of any layer.
    """
    module, call = unpack(model, call)
    ids = torch.as_tensor(ids, dtype=torch.long)
    ids = ids[None] if ids.dim() == 1 else ids
    device = next(module.parameters()).device

    def forward() -> Tensor:
        getattr(call, "reset", lambda: None)()  # a call that carries the model's own state starts afresh
        out = call(module, ids.to(device)) if call is not None else module(ids.to(device))
        return logits_of(out, "effects").detach()

    with torch.no_grad():
        plain = forward()
        logits = {}
        for only_direct in (True, False) if direct else (False,):
            with Intervention(module, clamp, span=span, run=run, names=(), direct=only_direct):
                logits[only_direct] = forward()
    return Effects(ids, plain, logits.get(True), logits[False])
