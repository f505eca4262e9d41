"""The run directory: written atomically, opened lazily. docs/FORMAT.md is the specification.

A run is a folder of plain parquet files plus ``manifest.json``::

    <run>/manifest.json           what is here; "complete": true is written last
    <run>/tokens.parquet          one row per token, in corpus order
    <run>/acts/<name>.parquet     one file per activation, wide float16 columns u0000…, same rows as tokens
    <run>/stats.parquet           per activation, per unit: count, mean, std, min, max, saturation, histogram
    <run>/cache/                  derived data, safe to delete

:class:`RunWriter` fills ``<run>.partial/`` and renames it to ``<run>`` only when every file is written, so an
interrupted recording never looks complete, and writing again simply starts over.

The package's rooms: :mod:`.format` (an activation's manifest entry, the tokens table, the observer protocol),
:mod:`.stats` (the per-unit aggregates counted while writing), :mod:`.writer` (:class:`RunWriter`,
:func:`write_run`), :mod:`.reader` (:class:`RunReader`, the files of a run read lazily) and :mod:`.run`
(:class:`Run`, which adds the unit cards' reads, and :func:`open_run`, which checks a run before it opens it).
Modules that build derived data (the cards, the match index, the overview) import :mod:`.format` and
:mod:`.reader`, never this package; only :mod:`.run` reaches up to them (the cards' reads), so nothing cycles.
"""

from __future__ import annotations

from ..errors import RunError
from ..layout import SCHEMA_VERSION, TOKEN_COLUMNS, unit_columns
from .format import Activation, Observer, tokens_frame
from .reader import RunReader
from .run import Run, open_run
from .stats import HIGH, HIST_BINS, LOW
from .writer import COMPRESSION, ROW_GROUP, RunWriter, write_run

__all__ = [
    "COMPRESSION",
    "HIGH",
    "HIST_BINS",
    "LOW",
    "ROW_GROUP",
    "SCHEMA_VERSION",
    "TOKEN_COLUMNS",
    "Activation",
    "Observer",
    "Run",
    "RunError",
    "RunReader",
    "RunWriter",
    "open_run",
    "tokens_frame",
    "unit_columns",
    "write_run",
]
