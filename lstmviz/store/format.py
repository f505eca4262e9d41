"""What a run is made of: an activation's manifest entry, the base tokens table, and the protocol of the observers
that build derived data while a run is written (docs/FORMAT.md)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from .. import names as _names


@dataclass(frozen=True)
class Activation:
    """One entry of the manifest's activation list."""

    name: str
    module: str
    layer: int
    dir: str
    kind: str
    units: int
    dtype: str = "float16"

    @property
    def file(self) -> str:
        return f"acts/{self.name}.parquet"

    def to_json(self) -> dict:
        return {**self.__dict__, "file": self.file}

    @classmethod
    def from_name(cls, name: str, units: int) -> Activation:
        n = _names.parse(name)
        return cls(name, n.module, n.layer, n.dir, n.kind + ("_grad" if n.grad else ""), units)


class Observer(Protocol):
    """Derived data built in the recording's own pass (e.g. a match index), one observer per activation.

    ``update`` receives every row of the activation exactly once, as stored (float16 ``[n, units]`` rows
    ``[start, start + n)``; ``np.float32(values)`` equals what :meth:`Run.activations` returns), in any row order
    (a stateful recording interleaves its streams); calls for one activation never run concurrently, and the
    array is only valid during the call (copy what you keep). ``finish`` runs once, after every update and after
    the activation files are written, with the run's (still partial) directory; write under ``run_dir / "cache"``
    (the observers of different activations may finish concurrently; those of one activation finish in turn).
    Its dict is merged into the activation's manifest entry, so keys must be JSON-serialisable and should not
    collide with the entry's own (name, units, …).

    An observer with a ``row_group(run_dir, start, group)`` method is given no ``update``: instead, when the writer
    closes, it gets every row group of the written file in corpus order, float16 patterns uint16 ``[units, R]``
    (unit-major, rows ``[start, start + R)``, valid during the call), and, first, if its ``needs_spill()`` is
    true, every stored value once through ``read_spill(values, tiles)``: values uint16 ``[*]`` (read-only, the
    memory-mapped file), tiles int64 ``[k, 4]``, one per row group (first row, rows R, element offset of unit
    0's values, elements from one unit's values to the next) (see :class:`lstmviz.store.RunWriter`). The
    recording's match indices are built so (:class:`lstmviz.analysis.match_pass.PassIndex`).
    """

    def update(self, start: int, values: np.ndarray) -> None: ...

    def finish(self, run_dir: Path) -> dict: ...


def tokens_frame(
    display: Sequence[str], token_ids: Iterable[int] | None = None, docs: Iterable[int] | None = None
) -> pd.DataFrame:
    """The base tokens table: ``idx, doc, pos, token_id, token`` for tokens in corpus order."""
    n = len(display)
    doc = np.zeros(n, np.int32) if docs is None else np.asarray(list(docs), np.int32)
    starts = np.r_[0, np.flatnonzero(np.diff(doc)) + 1] if n else np.zeros(0, np.int64)
    pos = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n])) if n else np.zeros(0, np.int64)
    ids = np.arange(n) if token_ids is None else np.asarray(list(token_ids))
    return pd.DataFrame(
        {
            "idx": np.arange(n, dtype=np.int64),
            "doc": doc,
            "pos": pos.astype(np.int32),
            "token_id": ids.astype(np.int32),
            "token": pd.array(list(display), dtype="string"),
        }
    )
