"""Activations as a plain table (CSV or parquet) for pandas, DuckDB, Polars, R or a spreadsheet.

Two layouts, both led by the flat token columns (``idx, doc, pos, token_id, token``, annotations):

- ``wide``: one row per token, one float32 column per activation unit, named ``{activation}.u{unit:04d}``
  (``rnn.l0.fwd.h.u0003``);
- ``long``: one row per (token, activation, unit) with columns ``name``, ``unit``, ``value``.

Rows are written in blocks, so memory stays flat in the token range, and into a hidden sibling
``.<name>.XXXX.partial`` first (see :mod:`lstmviz.outputs`), so an interrupted export never leaves a file that
looks finished.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .. import names as _names
from ..outputs import Output
from ..store import ROW_GROUP, Run, RunError, open_run

FORMATS = ("csv", "parquet")
LAYOUTS = ("wide", "long")


def export_table(
    run_or_path: Run | str | os.PathLike,
    path: str | os.PathLike,
    names: Sequence[str] | None = None,
    start: int | None = None,
    stop: int | None = None,
    fmt: str = "csv",
    *,
    layout: str = "wide",
    overwrite: bool = False,
) -> Path:
    """Write activations ``names`` for tokens ``[start, stop)`` to ``path``; returns ``path``.

    ``names`` defaults to every activation except gradients; ``start``/``stop`` follow Python slicing.
    ``fmt`` is ``csv`` or ``parquet`` (zstd); ``layout`` is ``wide`` (``[tokens, token columns + Σ units]``)
    or ``long`` (``[tokens · Σ units, token columns + 3]``). Values are float32, as stored (float16) exactly.
    List-valued token columns (top-k predictions) are left out. An existing file at ``path`` is replaced only
    with ``overwrite``; a directory never is.
    """
    if fmt not in FORMATS:
        raise RunError(f"table format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if layout not in LAYOUTS:
        raise RunError(f"table layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    run = run_or_path if isinstance(run_or_path, Run) else open_run(run_or_path)
    chosen = [n for n in run.names if not _names.parse(n).grad] if names is None else list(names)
    if not chosen:
        raise RunError(f"no activations to export: run {run.path} has {len(run.names)} and none was chosen")
    for name in chosen:
        run.info(name)
    start, stop, _ = slice(start, stop).indices(run.n_tokens)
    stop = max(stop, start)
    blocks = _blocks(run, chosen, start, stop, layout)
    path = Path(path)
    with Output(path, "table", overwrite, name="output file") as out:
        _write(blocks, out.partial, fmt)
        out.publish()
    return path


def flat_columns(tokens: pd.DataFrame) -> list[str]:
    """Token columns with one scalar per row (lists such as top-k predictions do not fit a flat table)."""
    if not len(tokens):
        return list(tokens.columns)
    return [c for c in tokens.columns if not isinstance(tokens[c].iloc[0], list | tuple | np.ndarray | dict)]


def _blocks(run: Run, chosen: Sequence[str], start: int, stop: int, layout: str) -> Iterator[pa.Table]:
    """Tables of at most ROW_GROUP tokens each, in token order; the first is yielded even when empty."""
    tokens = run.tokens
    columns = flat_columns(tokens)
    for lo in range(start, max(stop, start + 1), ROW_GROUP):
        hi = min(lo + ROW_GROUP, stop)
        tok = tokens.iloc[lo:hi][columns].reset_index(drop=True)
        acts = {name: run.activations(name, start=lo, stop=hi) for name in chosen}  # name → [hi-lo, units]
        frame = _wide(tok, acts) if layout == "wide" else _long(tok, acts)
        yield pa.Table.from_pandas(frame, preserve_index=False)


def _wide(tok: pd.DataFrame, acts: dict[str, np.ndarray]) -> pd.DataFrame:
    """``[n, token columns + Σ units]``: one column ``{name}.u{unit:04d}`` per activation unit."""
    cols = {f"{name}.u{u:04d}": a[:, u] for name, a in acts.items() for u in range(a.shape[1])}
    return pd.concat([tok, pd.DataFrame(cols, index=tok.index)], axis=1)


def _long(tok: pd.DataFrame, acts: dict[str, np.ndarray]) -> pd.DataFrame:
    """``[n · Σ units, token columns + name, unit, value]``, ordered by activation, then token, then unit."""
    parts = []
    for name, a in acts.items():
        n, units = a.shape
        part = tok.loc[np.repeat(np.arange(n), units)].reset_index(drop=True)  # [n·units, token columns]
        part["name"] = pd.array([name] * (n * units), dtype="string")
        part["unit"] = np.tile(np.arange(units, dtype=np.int32), n)
        part["value"] = a.reshape(-1)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _write(blocks: Iterator[pa.Table], dest: Path, fmt: str) -> None:
    """Stream ``blocks`` (all of one schema) into a CSV file with a header or a zstd parquet file."""
    first = next(blocks)
    if fmt == "parquet":
        with pq.ParquetWriter(dest, first.schema, compression="zstd") as writer:
            writer.write_table(first)
            for table in blocks:
                writer.write_table(table.cast(first.schema))
    else:
        with pacsv.CSVWriter(dest, first.schema) as writer:
            writer.write_table(first)
            for table in blocks:
                writer.write_table(table.cast(first.schema))
