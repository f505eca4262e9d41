"""``lstmviz.tap``: record a tensor from inside your own recurrent cell.

One call in a custom cell's ``forward`` names a quantity; while a :class:`lstmviz.recorder.Recorder` records
the model (``run_with_cache``, ``record_corpus``, the dashboard), the value is kept under
``{module}.l0.fwd.{kind}``, one entry per call, joined along time as ``[batch, calls, units]``::

    f = lstmviz.tap(self, "f", torch.sigmoid(zf), gate=True)     # returns f itself

When nothing records, ``tap`` returns its tensor and does nothing else: one test of an empty list
(bench/cells.py measures it). This module imports no torch, so ``import lstmviz`` stays fast.

The contract (docs/FORMAT.md, "Step cells and tapped cells"):

* ``module`` is the cell (usually ``self``); its ``named_modules()`` path in the recorded model is the name's
  module part (``cell`` when the recorded model is the cell itself). A tap from a module outside the recorded
  model is ignored.
* ``kind`` is any name without a dot, not ending in ``_grad``; units come from the tensor's last dimension.
* ``tensor`` is ``[batch, units]`` (one step), ``[batch, time, units]`` (a block of steps, e.g. a parallel
  scan), or ``[units]`` (an unbatched step). Calls join along time; when calls differ in batch size the cache
  keeps a list with one ``[batch_k, time_k, units]`` tensor per call, in call order.
* In a stateful corpus recording, a tapped cell's state is carried across chunks when its ``forward`` follows
  nn.LSTMCell's convention: ``forward(input, hx=None)`` returns the new state and takes it back as ``hx``
  (from its first chunk on, a call with ``hx=None`` continues from the state it last returned). A module that
  runs a whole block of steps needs the model's own call convention to carry its state.
* ``gate=True`` declares a sigmoid-like gate in [0, 1], so the saturation page shows it. Without the
  declaration no tapped kind is taken for a gate, whatever its name.
* Values are taken by reference and joined when the model's forward returns: a tensor changed in place later
  in the same forward is recorded as changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import names as _names
from .errors import UserError
from .store import Activation

ROOT = "cell"
"""The module part of the names when the recorded model is itself the tapped cell."""

_SINKS: list[TapRecorder] = []  # the recorders now recording; empty when nothing records


def tap(module: Any, kind: str, tensor: Any, *, gate: bool = False) -> Any:
    """Record ``tensor`` under ``{path of module}.l0.fwd.{kind}`` while a Recorder records; return it unchanged.

    Args:
        module: the nn.Module the value belongs to (usually ``self`` in a cell's forward).
        kind: the quantity's name (``"f"``, ``"c"``, ``"h"`` …): no dots, not ending in ``_grad``.
        tensor: ``[batch, units]``, ``[batch, time, units]`` or ``[units]``.
        gate: True for a gate with values in [0, 1] (shown by the saturation page).
    """
    if _SINKS:
        for sink in _SINKS:
            sink.add(module, kind, tensor, gate)
    return tensor


class TappedModule:
    """A module of the recorded model that called :func:`tap`, with the kinds (and their units) seen so far."""

    def __init__(self, path: str, module: Any):
        self.path = path
        self.module = module
        self.units: dict[str, int] = {}  # kind → units, in the order first tapped
        self.gates: set[str] = set()

    def kinds(self) -> tuple[str, ...]:
        return tuple(self.units)

    def activations(self) -> list[Activation]:
        """Every activation tapped so far, in the order first tapped."""
        return [
            Activation(_names.build(self.path, 0, "fwd", k), self.path, 0, "fwd", k, u) for k, u in self.units.items()
        ]

    def describe(self) -> dict:
        """The manifest's entry: ``cell`` is ``"custom"``, with the tapped kinds and the ones declared gates."""
        cls = type(self.module)
        return {
            "path": self.path,
            "cell": "custom",
            "class": f"{cls.__module__}.{cls.__qualname__}",
            "kinds": list(self.units),
            "gates": [k for k in self.units if k in self.gates],
            "hidden_size": self.units.get("h", max(self.units.values(), default=0)),
            "num_layers": 1,
            "bidirectional": False,
        }


class TapRecorder:
    """Collects the :func:`tap` calls of one model's modules while active; :meth:`flush` joins them per forward.

    ``keep`` is the Recorder's name filter; ``join`` adds one name's pieces (``[batch_k, time_k, units]`` per call,
    in call order) to a cache.
    """

    def __init__(self, model: Any, keep: Callable[[str], bool], found: Callable[[TappedModule], None] | None = None):
        self.paths = {m: path or ROOT for path, m in model.named_modules()}
        self.keep = keep
        self.found = found  # told of each module at its first tap
        self.modules: dict[str, TappedModule] = {}
        self.pending: dict[str, list[Any]] = {}
        self._wanted: dict[tuple[str, str], str | None] = {}  # (path, kind) → name, or None if filtered out

    def __enter__(self) -> TapRecorder:
        _SINKS.append(self)
        return self

    def __exit__(self, *exc) -> None:
        if self in _SINKS:
            _SINKS.remove(self)

    def add(self, module: Any, kind: str, tensor: Any, gate: bool) -> None:
        path = self.paths.get(module)
        if path is None:
            return
        name = self._wanted.get((path, kind), "")
        if name == "":
            name = self._declare(path, module, kind)
        if name is None:
            return
        x = tensor.detach() if tensor.requires_grad else tensor
        if x.dim() == 1:
            x = x.reshape(1, 1, -1)
        elif x.dim() == 2:
            x = x.unsqueeze(1)
        elif x.dim() != 3:
            raise UserError(
                f"lstmviz.tap({path}, {kind!r}): expected a [batch, units], [batch, time, units] or "
                f"[units] tensor, got shape {list(tensor.shape)}"
            )
        tapped = self.modules[path]
        units = tapped.units.setdefault(kind, x.shape[2])
        if units != x.shape[2]:
            raise UserError(f"lstmviz.tap({path}, {kind!r}): {x.shape[2]} units, where an earlier call had {units}")
        if gate:
            tapped.gates.add(kind)
        self.pending.setdefault(name, []).append(x)

    def _declare(self, path: str, module: Any, kind: str) -> str | None:
        if not isinstance(kind, str) or not kind or "." in kind or kind.endswith(_names.GRAD_SUFFIX):
            raise UserError(
                f"lstmviz.tap({path}, {kind!r}): a kind is a non-empty name without dots, not ending "
                f"in {_names.GRAD_SUFFIX!r}"
            )
        name = _names.build(path, 0, "fwd", kind)
        if path not in self.modules:
            self.modules[path] = TappedModule(path, module)
            if self.found is not None:
                self.found(self.modules[path])
        self._wanted[(path, kind)] = name if self.keep(name) else None
        return self._wanted[(path, kind)]

    def flush(self, join: Callable[[str, list[Any]], None]) -> None:
        """Hand every name's pieces of the forward that just ended to ``join``, and start over."""
        pending, self.pending = self.pending, {}
        for name, pieces in pending.items():
            join(name, pieces)
