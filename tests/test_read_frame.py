"""shards.read_frame, the column-at-a-time reader of a run's tables, against pandas' own ``pd.read_parquet``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lstmviz.shards import read_frame
from lstmviz.store import open_run, tokens_frame, write_run


def table(n: int = 50) -> pd.DataFrame:
    """A tokens table with annotation columns of every kind a run holds: bool, float with NaN, int, strings with
    missing values, lists."""
    rng = np.random.default_rng(0)
    t = tokens_frame([chr(97 + i % 26) for i in range(n)])
    t["in_string"] = rng.random(n) > 0.5
    t["loss"] = np.where(rng.random(n) > 0.8, np.nan, rng.random(n))
    t["depth"] = rng.integers(-3, 3, n)
    t["kind"] = pd.Series(["x", None, "yy", "z", "é"] * (n // 5), dtype=object)
    t["top_ids"] = [list(rng.integers(0, 9, 3)) for _ in range(n)]
    return t


@pytest.mark.parametrize("index", [False, None, True])
def test_read_frame_equals_read_parquet(tmp_path, index):
    """Written without an index (as runs are), with pandas' range-index metadata, and with a stored index."""
    t = table()
    if index:
        t = t.set_index("idx")
    pq.write_table(pa.Table.from_pandas(t, preserve_index=index), tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(read_frame(tmp_path / "t.parquet"), pd.read_parquet(tmp_path / "t.parquet"))


def test_a_runs_tokens_are_the_table_written(tmp_path):
    t = table()
    run = open_run(write_run(tmp_path / "run", t, {"rnn.l0.fwd.h": np.zeros((len(t), 2))}))
    pd.testing.assert_frame_equal(run.tokens, pd.read_parquet(tmp_path / "run" / "tokens.parquet"))
    for column in ("token", "in_string", "depth"):
        assert run.tokens[column].tolist() == t[column].tolist()
