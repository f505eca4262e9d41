"""What an intervention holds: ``{name: {unit: value}}`` checked against a model, and values resolved.

A clamp names activations as a run does (``rnn.l0.fwd.c``; see :mod:`lstmviz.names`). Only the recurrent state can
be held: ``h`` and ``c`` of an LSTM layer, ``h`` of a GRU or RNN layer. The gates are functions of
``(x_t, h_{t-1})`` at the same step, so holding one would leave the state that carries it unexplained; hold the
state they feed instead.

A value is a number, ``"zero"``, or ``"mean"``: the unit's mean over the recorded corpus, from a run's stats.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .. import names as _names
from ..errors import UserError
from ..recurrent import RecurrentModule
from ..store import Run

Value = float | int | str
Clamp = Mapping[str, Mapping[int, Value]]
HOLDABLE = {"LSTM": ("h", "c"), "GRU": ("h",), "RNN": ("h",)}
"""The kinds of each cell that a clamp can hold."""
_KNOWN = {k for cell in _names.KINDS for k in _names.cell_kinds(cell, proj_size=1)}


@dataclass(frozen=True)
class Held:
    """Units of one kind held at values: units long ``[k]``, values ``[k]``."""

    units: Tensor
    values: Tensor

    def write(self, x: Tensor) -> Tensor:
        """``x`` ``[…, units]`` with the held units replaced; out of place, so autograd sees the write."""
        k = len(self.units)
        return x.index_copy(-1, self.units.to(x.device), self.values.to(x).expand(*x.shape[:-1], k).contiguous())


@dataclass(frozen=True)
class LayerHold:
    """What one layer and direction holds: ``h`` and / or ``c`` (either may be None)."""

    h: Held | None = None
    c: Held | None = None


def holdable_names(modules: Sequence[RecurrentModule]) -> list[str]:
    """Every activation name a clamp may hold in these modules, in recording order."""
    return [
        _names.build(rm.path, layer, d, k)
        for rm in modules
        for layer in range(rm.layers)
        for d in rm.dirs
        for k in HOLDABLE[rm.cell]
    ]


def _listing(options: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(options[:limit])
    return shown + (f", … ({len(options)} in all)" if len(options) > limit else "")


def resolve(
    modules: Sequence[RecurrentModule], clamp: Clamp | None, run: Run | pd.DataFrame | None = None
) -> dict[str, dict[tuple[int, str], LayerHold]]:
    """Check ``clamp`` against the model's recurrent modules and resolve its values.

    Returns ``{module path: {(layer, dir): LayerHold}}``, only for what is held. ``run``: a :class:`Run` or its
    stats frame, needed for ``"mean"``. Raises :class:`UserError` with the valid options on any bad entry,
    before anything runs.
    """
    by_path = {rm.path: rm for rm in modules}
    valid = holdable_names(modules)
    out: dict[str, dict[tuple[int, str], dict[str, Held]]] = {}
    for name, units in (clamp or {}).items():
        rm, where, kind = _locate(name, by_path, valid)
        if not isinstance(units, Mapping):
            raise UserError(f"clamp[{name!r}] must map unit → value, e.g. {{{name!r}: {{0: 1.0}}}}")
        if not units:
            continue
        size = rm.out_size if kind == "h" else rm.hidden
        idx, vals = [], []
        for unit, value in units.items():
            if isinstance(unit, bool) or not isinstance(unit, int | np.integer) or not 0 <= unit < size:
                raise UserError(f"{name} has units 0…{size - 1}; got unit {unit!r}")
            idx.append(int(unit))
            vals.append(_value(name, int(unit), value, run))
        if len(set(idx)) != len(idx):
            raise UserError(f"clamp[{name!r}] names a unit twice")
        p = rm.module.weight_hh_l0
        out.setdefault(rm.path, {}).setdefault(where, {})[kind] = Held(
            torch.tensor(idx, dtype=torch.long, device=p.device), torch.tensor(vals, dtype=p.dtype, device=p.device)
        )
    return {path: {k: LayerHold(**v) for k, v in layers.items()} for path, layers in out.items()}


def _locate(
    name: str, by_path: Mapping[str, RecurrentModule], valid: Sequence[str]
) -> tuple[RecurrentModule, tuple[int, str], str]:
    """The module, (layer, dir) and kind a clamp's name refers to, or a UserError listing the valid names."""
    if name in valid:
        n = _names.parse(name)
        return by_path[n.module], (n.layer, n.dir), n.kind
    try:
        n = _names.parse(name)
    except ValueError:
        n = None
    if n is not None and n.module in by_path and not n.grad:
        rm = by_path[n.module]
        if n.layer < rm.layers and n.dir in rm.dirs and n.kind in _KNOWN:
            kinds = " and ".join(HOLDABLE[rm.cell])
            raise UserError(
                f"cannot clamp {name}: a {rm.cell} layer holds only its state ({kinds}); gates are recomputed "
                f"from (x_t, h_t-1) at every step, so hold the state they read. Clampable: {_listing(valid)}"
            )
    raise UserError(f"cannot clamp {name!r}: this model has no such state. Clampable: {_listing(valid)}")


def _value(name: str, unit: int, value: Value, run: Run | pd.DataFrame | None) -> float:
    if isinstance(value, str):
        if value == "zero":
            return 0.0
        if value == "mean":
            return _mean(name, unit, run)
        raise UserError(f"clamp value {value!r} for {name} unit {unit}: use a number, 'zero' or 'mean'")
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise UserError(f"clamp value for {name} unit {unit} must be a number, 'zero' or 'mean'; got {value!r}")
    if not np.isfinite(value):
        raise UserError(f"clamp value for {name} unit {unit} must be finite; got {value!r}")
    return float(value)


def _mean(name: str, unit: int, run: Run | pd.DataFrame | None) -> float:
    if run is None:
        raise UserError(f"clamp value 'mean' for {name} needs run= (a recorded run of this model, or its stats)")
    stats = run.stats if isinstance(run, Run) else run
    rows = stats[(stats["name"] == name) & (stats["unit"] == unit)] if len(stats) else stats
    if not len(rows):
        raise UserError(f"clamp value 'mean' for {name} unit {unit}: the run's stats have no such activation")
    return float(rows["mean"].iloc[0])


def resolve_span(span: tuple[int, int] | None) -> tuple[int, int | None]:
    """``(start, stop)`` of time positions to hold, stop exclusive; None holds every step."""
    if span is None:
        return 0, None
    try:
        start, stop = (int(s) for s in span)
    except (TypeError, ValueError):
        raise UserError(f"span must be (start, stop) time positions, got {span!r}") from None
    if start < 0 or stop <= start:
        raise UserError(f"span ({start}, {stop}) is empty or negative: it needs 0 ≤ start < stop")
    return start, stop
