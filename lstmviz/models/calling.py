"""How to call a model on token ids: ``model(ids)``, ``model(ids, hidden)`` or ``model(ids, lengths)``, ids
``[batch, time]`` or ``[time, batch]``.

:func:`probe` finds out by calling the model on a tiny input of a real symbol (never the padding id) under a
:class:`~lstmviz.recorder.Recorder` and watching what the first thing it records (an nn.LSTM/GRU/RNN, a step
cell, or a cell calling ``lstmviz.tap``) computes. PyTorch's word-language-model example takes
``(ids [time, batch], hidden)`` with ``init_hidden(batch)``; a classifier that packs its batch takes
``(ids, lengths)``. When the probe cannot tell, the error names the argument to pass (``convention=``,
``layout=``). The :class:`CallConvention` it returns is the recorder's ``call=``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import ModelError, UserError, no_recurrent
from .tokenizers import PAD_NAMES, Tokenizer, is_special

CONVENTIONS = ("ids", "ids_hidden", "ids_lengths")
LAYOUTS = ("batch", "seq")
_PROBE_B, _PROBE_T = 2, 3  # distinct, so the time axis the recorded module sees tells the layout


@dataclass
class CallConvention:
    """How to call a model on batch-first ids; usable as the recorder's ``call=``.

    ``convention``: ``"ids"`` calls ``model(x)``; ``"ids_lengths"`` calls ``model(x, lengths)`` (a classifier
    that packs its batch); ``"ids_hidden"`` calls ``model(x, hidden)`` where hidden is
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

    @property
    def takes_lengths(self) -> bool:
        """True for ``model(x, lengths)``: the recorder then passes each row's valid length."""
        return self.convention == "ids_lengths"

    def reset(self) -> None:
        """Forget the carried hidden state: the next call starts from ``init_hidden``."""
        self.state = None

    def __call__(self, model: nn.Module, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> Any:
        """ids: int64 ``[B, T]`` (right-padded rows of ``lengths [B]`` valid steps, default all ``T``) → the
        model's output, as ``[B, T, V]`` when it is a per-step tensor. ``"ids_lengths"`` passes ``lengths`` as an
        int64 CPU tensor, as ``pack_padded_sequence`` wants it; the other conventions ignore it."""
        B, T = ids.shape
        x = ids if self.layout == "batch" else ids.t()  # (B, T) or (T, B)
        if self.convention == "ids":
            out = model(x)
        elif self.convention == "ids_lengths":
            lens = torch.full((B,), T, dtype=torch.long) if lengths is None else torch.as_tensor(lengths)
            out = model(x, lens.to("cpu", torch.long))
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


def padding_ids(module: nn.Module, tok: Tokenizer | None) -> list[int]:
    """The ids that stand for padding: every embedding's ``padding_idx``, then the tokenizer's pad symbol."""
    found = [m.padding_idx for m in module.modules() if isinstance(m, nn.Embedding) and m.padding_idx is not None]
    if tok is not None:
        found += [tok.index[s] for s in PAD_NAMES if s in tok.index]
    return list(dict.fromkeys(int(i) for i in found))


def probe_id(vocab_size: int | None, padding: list[int], tok: Tokenizer | None) -> int:
    """An id to probe with that is a real symbol: not padding (a model that packs by ``ids != pad`` would see
    empty sequences) and, when the tokenizer says, no special symbol such as ``<unk>``."""
    n = vocab_size if vocab_size is not None else (len(tok) if tok is not None else 2 + len(padding))
    if tok is not None:
        plain = [i for i in range(min(n, len(tok))) if i not in padding and not is_special(tok.vocab[i])]
        if plain:
            return plain[0]
    return next((i for i in range(n) if i not in padding), 0)


def _second_argument(module: nn.Module) -> str | None:
    """The name of ``forward``'s second positional parameter when it is required (a hidden state or lengths)."""
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) >= 2 and positional[1].default is inspect.Parameter.empty:
        return positional[1].name
    return None


def _guessed_conventions(module: nn.Module) -> list[str]:
    """The conventions to probe, most likely first: a second argument named like ``lengths`` is tried as lengths
    first, any other as a hidden state first; both are tried, and the probe tells."""
    second = _second_argument(module)
    if second is None:
        return ["ids"]
    return ["ids_lengths", "ids_hidden"] if "len" in second.lower() else ["ids_hidden", "ids_lengths"]


_CALLS = {"ids": "model(ids)", "ids_hidden": "model(ids, hidden)", "ids_lengths": "model(ids, lengths)"}


def _check_signature(module: nn.Module, convention: str, given: bool) -> None:
    """A UserError when ``module.forward`` cannot take the arguments of ``convention`` at all (told apart from a
    TypeError raised inside forward, which is the model's)."""
    try:
        signature = inspect.signature(module.forward)
    except (TypeError, ValueError):
        return  # nothing to read: the probe will tell
    try:
        signature.bind(*([None] if convention == "ids" else [None, None]))
    except TypeError as e:
        fix = (
            f"convention={convention!r} does not fit it"
            if given
            else "lstmviz calls model(ids), (ids, hidden) or (ids, lengths)"
        )
        raise UserError(
            f"{type(module).__name__}.forward{signature} cannot be called as {_CALLS[convention]} ({e}): {fix}",
            arguments=(f"convention={convention!r}",) if given else (),
        ) from None


def probe(
    module: nn.Module, convention: str | None, layout: str | None, probe_id: int = 0
) -> tuple[CallConvention, list[str]]:
    """Find the call convention by calling the model on a ``[2, 3]`` (or ``[3, 2]``) probe of ``probe_id`` under a
    :class:`~lstmviz.recorder.Recorder`, and checking that the first thing it records (a sequence module, a step
    cell stepped 3 times, or a tapped cell) is ``[2, 3, units]``. Returns the convention and the paths recorded;
    a model with nothing to record is :func:`~lstmviz.errors.no_recurrent`."""
    from ..recorder import Recorder

    user_convention = convention
    conventions = [convention] if convention is not None else _guessed_conventions(module)
    _check_signature(module, conventions[0], user_convention is not None)
    has_init = callable(getattr(module, "init_hidden", None))
    candidates = [
        CallConvention(conv, lay, none)
        for conv in conventions
        for lay in ([layout] if layout else LAYOUTS)
        for none in ([True, False] if conv == "ids_hidden" and has_init else [True])
    ]
    errors: list[Exception] = []
    recorded: list[str] = []
    ids = torch.full((_PROBE_B, _PROBE_T), probe_id, dtype=torch.long)
    with Recorder(module) as rec:
        for cand in candidates:
            cache = rec.new_cache()
            try:
                with torch.no_grad():
                    out = cand(module, ids)
                rec.flush()
            except Exception as e:  # any failure rules this candidate out
                errors.append(e)
                continue
            cand.reset()
            recorded = [m.path for m in rec.recorded()]
            first = next((cache[a.name] for a in rec.activations() if a.name in cache), None)
            if isinstance(first, list):  # calls that differ in batch size (a beam): the first call tells
                first = first[0]
            fits_output = (
                not isinstance(out, torch.Tensor) or out.dim() != 3 or tuple(out.shape[:2]) == (_PROBE_B, _PROBE_T)
            )
            if isinstance(first, torch.Tensor) and tuple(first.shape[:2]) == (_PROBE_B, _PROBE_T) and fits_output:
                return cand, recorded
            if layout is not None and first is not None:
                return cand, recorded  # the user said so, and the call runs
    if len(errors) == len(candidates):
        # forward's signature fits (checked above) and every layout and hidden state raised: no option can
        # help, so it is the model's own error; show the one most calls raised
        keys = [(type(e), str(e)) for e in errors]
        raised = errors[keys.index(max(keys, key=keys.count))]
        raise ModelError.wrap(raised) from raised
    if not recorded:
        raise no_recurrent(module)
    options = [
        option
        for option, given in (
            ("layout='batch'|'seq'", layout),
            ("convention='ids'|'ids_hidden'|'ids_lengths'", user_convention),
        )
        if not given
    ]
    why = f" (tried: {'; '.join(first_line(e) for e in errors[:2])})" if errors else ""
    hint = ": pass " + " or ".join(options) if options else ""
    raise UserError(f"cannot tell how to call {type(module).__name__} on token ids{hint}{why}", arguments=options)
