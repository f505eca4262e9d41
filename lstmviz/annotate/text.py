"""User annotations: a CSV with one row per token, added as columns of tokens.parquet."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..errors import UserError

RESERVED = ("idx", "doc", "pos", "token_id", "token", "loss", "top_ids", "top_p")


def read_annotations(
    path: str | os.PathLike, display: list[str] | None = None, n_tokens: int | None = None
) -> pd.DataFrame:
    """Columns of the CSV at ``path``, one row per token (header row first).

    ``n_tokens`` (default ``len(display)``) must equal the number of rows. A ``token`` column, if present, must
    agree with ``display`` and is then dropped; any other column whose name the run already uses is an error.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"no such annotation file: {p}")
    try:
        frame = pd.read_csv(p, keep_default_na=False, na_values=[""], encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise UserError(f"{p} is empty: an annotation CSV needs a header row and one row per token") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise UserError(f"{p} is not a readable CSV: {' '.join(str(e).split())}") from None
    n = len(display) if n_tokens is None and display is not None else n_tokens
    if n is not None and len(frame) != n:
        raise UserError(f"{p} has {len(frame)} rows but the text has {n} tokens: it needs one row per token")
    if "token" in frame.columns and display is not None:
        given = frame["token"].astype(str).tolist()
        bad = next((i for i, (a, b) in enumerate(zip(given, display, strict=True)) if a != b), None)
        if bad is not None:
            raise UserError(f"{p} row {bad}: token {given[bad]!r} but the text has {display[bad]!r} there")
        frame = frame.drop(columns="token")
    clash = [c for c in frame.columns if c in RESERVED]
    if clash:
        raise UserError(f"{p} has column(s) {', '.join(clash)} whose names the run already uses: rename them")
    return frame.reset_index(drop=True)
