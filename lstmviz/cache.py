"""What a recording keeps: the name filter (``names=``) and the :class:`ActivationCache` a forward fills."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor

from .errors import UserError
from .recurrent import RecurrentModule

NameFilter = Iterable[str] | Callable[[str], bool] | None


def name_filter(names: NameFilter) -> Callable[[str], bool]:
    """``names`` as a predicate on activation names (None keeps every name)."""
    if names is None:
        return lambda _: True
    if callable(names):
        return names
    wanted = listed(names)
    return wanted.__contains__


def listed(names: NameFilter) -> set[str] | None:
    """The names an iterable filter lists (one string is one name); None for no filter or a predicate."""
    if names is None or callable(names):
        return None
    return {names} if isinstance(names, str) else set(names)


def check_names(names: NameFilter, available: Sequence[str]) -> None:
    """A :class:`UserError` naming the valid names when ``names`` lists one that ``available`` lacks."""
    unknown = sorted((listed(names) or set()) - set(available))
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


def join_calls(pieces: list[Tensor]) -> Tensor | list[Tensor]:
    """Per-call ``[batch_k, time_k, units]`` pieces → ``[batch, Σ time_k, units]``, or the list if batches differ."""
    if len({p.shape[0] for p in pieces}) == 1:
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
    return pieces
