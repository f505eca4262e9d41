"""How to call a model on token ids: ``model(ids)`` or ``model(ids, hidden)``, ids ``[batch, time]`` or
``[time, batch]``.

:func:`probe` finds out by calling the model on a tiny input and watching what its first recurrent module
receives (PyTorch's word-language-model example takes ``(ids [time, batch], hidden)`` with ``init_hidden(batch)``);
when that cannot tell, the error names the argument to pass (``convention=``, ``layout=``). The
:class:`CallConvention` it returns is the recorder's ``call=``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import ModelError, UserError

RECURRENT = (nn.LSTM, nn.GRU, nn.RNN)
"""The module types lstmviz records."""
CONVENTIONS = ("ids", "ids_hidden")
LAYOUTS = ("batch", "seq")
_PROBE_B, _PROBE_T = 2, 3  # distinct, so the time axis the recurrent module sees tells the layout


@dataclass
class CallConvention:
    """How to call a model on batch-first ids; usable as the recorder's ``call=``.

    ``convention``: ``"ids"`` calls ``model(x)``; ``"ids_hidden"`` calls ``model(x, hidden)`` where hidden is
    None when the model accepts it (the recorder then carries state across chunks) and else the state the model
    returned on the previous call, starting from ``model.init_hidden(batch)`` after :meth:`reset` (which the
    recorder calls at the start of every independent stream). ``layout``: ``"batch"`` passes ``x = ids [B, T]``,
    ``"seq"`` passes ``x = ids.T [T, B]``. The output (or the first element of an ``(output, hidden)`` tuple) is
    returned as ``[B, T, V]``, unflattening ``[T·B, V]`` or ``[B·T, V]`` outputs.
    """

    convention: str = "ids"
    layout: str = "batch"
    hidden_none: bool = True
    state: Any = field(default=None, repr=False)

    def reset(self) -> None:
        """Forget the carried hidden state: the next call starts from ``init_hidden``."""
        self.state = None

    def __call__(self, model: nn.Module, ids: torch.Tensor) -> Any:
        """ids: int64 ``[B, T]`` → the model's output, as ``[B, T, V]`` when it is a per-step tensor."""
        B, T = ids.shape
        x = ids if self.layout == "batch" else ids.t()  # (B, T) or (T, B)
        if self.convention == "ids":
            out = model(x)
        elif self.hidden_none:
            out = model(x, None)
        else:
            out = model(x, self.state if self.state is not None else model.init_hidden(B))
            if isinstance(out, tuple | list) and len(out) > 1:
                self.state = _detached(out[1])
        if isinstance(out, tuple | list):
            out = out[0]
        if not (isinstance(out, torch.Tensor) and out.is_floating_point()):
            return out
        if out.dim() == 2 and out.shape[0] == B * T:
            out = out.view(B, T, -1) if self.layout == "batch" else out.view(T, B, -1)  # unflatten
        if out.dim() == 3 and self.layout == "seq":
            out = out.transpose(0, 1)  # (T, B, V) -> (B, T, V)
        return out


def _detached(state: Any) -> Any:
    """A returned hidden state (tensor or nested tuple of tensors) cut from the graph, as repackage_hidden does."""
    if isinstance(state, torch.Tensor):
        return state.detach()
    return tuple(_detached(s) for s in state)


def first_line(e: BaseException) -> str:
    """The first non-blank line of an exception's message (its type when it has none)."""
    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    return lines[0] if lines else type(e).__name__


def _takes_hidden(module: nn.Module) -> bool:
    """Does ``forward`` take a second positional argument (the hidden state)?"""
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 and positional[1].default is inspect.Parameter.empty


def _check_signature(module: nn.Module, convention: str, given: bool) -> None:
    """A UserError when ``module.forward`` cannot take the arguments of ``convention`` at all (told apart from a
    TypeError raised inside forward, which is the model's)."""
    try:
        signature = inspect.signature(module.forward)
    except (TypeError, ValueError):
        return  # nothing to read: the probe will tell
    call = "model(ids)" if convention == "ids" else "model(ids, hidden)"
    try:
        signature.bind(*([None] if convention == "ids" else [None, None]))
    except TypeError as e:
        fix = f"convention={convention!r} does not fit it" if given else "lstmviz calls model(ids) or (ids, hidden)"
        raise UserError(
            f"{type(module).__name__}.forward{signature} cannot be called as {call} ({e}): {fix}",
            arguments=(f"convention={convention!r}",) if given else (),
        ) from None


def probe(module: nn.Module, convention: str | None, layout: str | None) -> CallConvention:
    """Find the call convention by calling the model on a ``[2, 3]`` (or ``[3, 2]``) probe and checking that its
    first recurrent module sees 3 time steps."""
    user_convention = convention
    if convention is None:
        convention = "ids_hidden" if _takes_hidden(module) else "ids"
    _check_signature(module, convention, user_convention is not None)
    has_init = callable(getattr(module, "init_hidden", None))
    hidden_options = [True, False] if convention == "ids_hidden" and has_init else [True]
    rnn = next(m for m in module.modules() if isinstance(m, RECURRENT))
    seen: list[int] = []

    def hook(m: nn.Module, args: tuple) -> None:
        x = args[0]
        if isinstance(x, torch.Tensor) and x.dim() == 3:
            seen.append(x.shape[1] if m.batch_first else x.shape[0])

    candidates = [
        CallConvention(convention, lay, none) for lay in ([layout] if layout else LAYOUTS) for none in hidden_options
    ]
    errors: list[Exception] = []
    handle = rnn.register_forward_pre_hook(hook)
    try:
        for cand in candidates:
            seen.clear()
            ids = torch.zeros(_PROBE_B, _PROBE_T, dtype=torch.long)
            try:
                with torch.no_grad():
                    out = cand(module, ids)
            except Exception as e:  # any failure rules this candidate out
                errors.append(e)
                continue
            fits_output = (
                not isinstance(out, torch.Tensor) or out.dim() != 3 or tuple(out.shape[:2]) == (_PROBE_B, _PROBE_T)
            )
            if seen and seen[0] == _PROBE_T and fits_output:
                return cand
            if layout is not None:
                return cand  # the user said so, and the call runs
    finally:
        handle.remove()
    if len(errors) == len(candidates):
        # forward's signature fits (checked above) and every layout and hidden state raised: no option can
        # help, so it is the model's own error; show the one most calls raised
        keys = [(type(e), str(e)) for e in errors]
        raised = errors[keys.index(max(keys, key=keys.count))]
        raise ModelError.wrap(raised) from raised
    options = [
        option
        for option, given in (("layout='batch'|'seq'", layout), ("convention='ids'|'ids_hidden'", user_convention))
        if not given
    ]
    why = f" (tried: {'; '.join(first_line(e) for e in errors[:2])})" if errors else ""
    hint = ": pass " + " or ".join(options) if options else ""
    raise UserError(f"cannot tell how to call {type(module).__name__} on token ids{hint}{why}", arguments=options)
