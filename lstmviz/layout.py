"""What docs/FORMAT.md fixes about a run directory's files, shared by the writer (:mod:`lstmviz.store`) and the
checks that open a run (:mod:`lstmviz.validate`)."""

from __future__ import annotations

SCHEMA_VERSION = 1
"""The version of an unsharded run; sharded runs are :data:`lstmviz.shards.SHARDED_VERSION`."""

TOKEN_COLUMNS = ("idx", "doc", "pos", "token_id", "token")
"""The columns every tokens.parquet has; any others are predictions (loss, top_ids, top_p) or annotation tracks."""


def unit_columns(units: int) -> list[str]:
    """Column names of an activation file: ``["u0000", "u0001", …]``."""
    return [f"u{u:04d}" for u in range(units)]
