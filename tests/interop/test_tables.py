"""export_table: known values out, read back by pandas, DuckDB and Polars."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pytest

from lstmviz import RunError, write_run
from lstmviz.interop.tables import export_table
from lstmviz.store import tokens_frame

# values exactly representable in float16, so what comes out must equal what went in
H = np.array([[0.5, -0.25], [0.125, 1.0], [-1.0, 0.75], [0.0, -0.5], [0.25, 0.375]], np.float32)  # [5, 2]
C = np.array([[2.0], [-3.5], [4.0], [0.0625], [-8.0]], np.float32)  # [5, 1]
DISPLAY = ["a", ",", "\n", "b", '"']


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    tokens = tokens_frame(DISPLAY, [0, 1, 2, 3, 4])
    tokens["in_quote"] = [False, False, True, True, False]
    tokens["top3"] = [[1, 2, 3]] * 5
    acts = {"rnn.l0.fwd.h": H, "rnn.l0.fwd.c": C, "rnn.l0.fwd.h_grad": H * 0}
    return write_run(tmp_path / "run", tokens, acts)


def test_wide_csv(run_dir: Path, tmp_path: Path) -> None:
    path = export_table(run_dir, tmp_path / "t.csv")
    table = pd.read_csv(path, keep_default_na=False)
    assert list(table.columns) == [
        "idx",
        "doc",
        "pos",
        "token_id",
        "token",
        "in_quote",
        "rnn.l0.fwd.h.u0000",
        "rnn.l0.fwd.h.u0001",
        "rnn.l0.fwd.c.u0000",
    ]  # no gradient, no list column
    assert list(table["token"]) == DISPLAY  # commas, quotes and newlines survive CSV quoting
    np.testing.assert_array_equal(table[["rnn.l0.fwd.h.u0000", "rnn.l0.fwd.h.u0001"]], H)
    np.testing.assert_array_equal(table["rnn.l0.fwd.c.u0000"], C[:, 0])
    assert list(table["in_quote"]) == [False, False, True, True, False]


def test_wide_parquet_range_and_names(run_dir: Path, tmp_path: Path) -> None:
    path = export_table(run_dir, tmp_path / "t.parquet", ["rnn.l0.fwd.c"], 1, 4, "parquet")
    table = pd.read_parquet(path)
    assert list(table["idx"]) == [1, 2, 3]
    assert table["rnn.l0.fwd.c.u0000"].dtype == np.float32
    np.testing.assert_array_equal(table["rnn.l0.fwd.c.u0000"], C[1:4, 0])


def test_duckdb_and_polars_read_parquet(run_dir: Path, tmp_path: Path) -> None:
    wide = export_table(run_dir, tmp_path / "w.parquet", fmt="parquet")
    long = export_table(run_dir, tmp_path / "l.parquet", fmt="parquet", layout="long")
    total = duckdb.sql(f"select sum(\"rnn.l0.fwd.h.u0001\") from '{wide}'").fetchall()[0][0]
    assert total == pytest.approx(float(H[:, 1].sum()))
    row = duckdb.sql(f"select value from '{long}' where name = 'rnn.l0.fwd.h' and idx = 2 and unit = 1").fetchall()
    assert row == [(0.75,)]
    frame = pl.read_parquet(long)
    assert frame.height == 5 * 3  # 5 tokens × (2 + 1) units
    assert frame.filter(pl.col("name") == "rnn.l0.fwd.c")["value"].to_list() == C[:, 0].tolist()
    assert pl.read_parquet(wide)["token"].to_list() == DISPLAY


def test_long_csv_read_by_polars(run_dir: Path, tmp_path: Path) -> None:
    path = export_table(run_dir, tmp_path / "l.csv", ["rnn.l0.fwd.h"], 3, None, layout="long")
    frame = pl.read_csv(path)
    assert frame.columns[-3:] == ["name", "unit", "value"]
    assert frame["idx"].to_list() == [3, 3, 4, 4] and frame["unit"].to_list() == [0, 1, 0, 1]
    assert frame["value"].to_list() == H[3:].reshape(-1).tolist()


def test_empty_range_keeps_the_header(run_dir: Path, tmp_path: Path) -> None:
    table = pd.read_csv(export_table(run_dir, tmp_path / "e.csv", ["rnn.l0.fwd.c"], 2, 2))
    assert len(table) == 0 and "rnn.l0.fwd.c.u0000" in table.columns


def test_many_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lstmviz.interop import tables

    monkeypatch.setattr(tables, "ROW_GROUP", 3)  # 10 tokens in blocks of 3: the seams must not show
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    run = write_run(tmp_path / "run", list("abcdefghij"), {"m.l0.fwd.h": x})
    table = pd.read_parquet(export_table(run, tmp_path / "t.parquet", start=1, stop=9, fmt="parquet"))
    np.testing.assert_array_equal(table[["m.l0.fwd.h.u0000", "m.l0.fwd.h.u0001"]], x[1:9])
    long = pd.read_csv(export_table(run, tmp_path / "t.csv", start=1, stop=9, layout="long"))
    np.testing.assert_array_equal(long["value"], x[1:9].reshape(-1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fmt": "xlsx"}, "table format must be one of csv, parquet, got 'xlsx'"),
        ({"layout": "tall"}, "table layout must be one of wide, long, got 'tall'"),
        ({"names": ["rnn.l5.fwd.h"]}, "has no activation 'rnn.l5.fwd.h'"),
        ({"names": []}, "no activations to export"),
    ],
)
def test_errors_leave_no_file(run_dir: Path, tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(RunError, match=message.replace(".", r"\.")):
        export_table(run_dir, tmp_path / "t.csv", **kwargs)
    assert list(tmp_path.glob("t.csv*")) == []
