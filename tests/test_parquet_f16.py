"""lstmviz.parquet_f16 writes the file pyarrow writes for the same float16 table: pyarrow is the oracle."""

from __future__ import annotations

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lstmviz.store.parquet_f16 import F16ParquetWriter, _varint, _zigzag

ALL_F16 = np.arange(1 << 16, dtype=np.uint16).view(np.float16)  # every bit pattern: NaNs, ±inf, ±0, denormals


def _columns(n_units: int) -> list[str]:
    return [f"u{i}" for i in range(n_units)]


def _pyarrow(path, block: np.ndarray, groups: list[int]) -> None:
    names = _columns(len(block))
    schema = pa.schema([(n, pa.float16()) for n in names])
    with pq.ParquetWriter(path, schema, use_dictionary=False, write_statistics=False, compression="none") as w:
        r = 0
        for rows in groups:
            part = block[:, r : r + rows]
            w.write_table(pa.table({n: pa.array(part[u]) for u, n in enumerate(names)}, schema=schema))
            r += rows


def _ours(path, block: np.ndarray, groups: list[int]) -> None:
    with F16ParquetWriter(path, _columns(len(block))) as w:
        r = 0
        for rows in groups:
            w.write_group(block[:, r : r + rows])
            r += rows


@pytest.mark.parametrize(("n_units", "groups"), [(1, [1]), (3, [5, 1, 7]), (17, [16384, 100]), (1100, [40, 3])])
def test_same_table_schema_and_row_groups_as_pyarrow(tmp_path, n_units: int, groups: list[int]) -> None:
    rng = np.random.default_rng(n_units)
    block = ALL_F16[rng.integers(0, 1 << 16, (n_units, sum(groups)))]
    _ours(tmp_path / "ours.parquet", block, groups)
    _pyarrow(tmp_path / "ref.parquet", block, groups)
    ours, ref = (pq.ParquetFile(tmp_path / f) for f in ("ours.parquet", "ref.parquet"))
    assert ours.schema_arrow.equals(ref.schema_arrow) and ours.schema.equals(ref.schema)
    assert ours.metadata.metadata[b"ARROW:schema"] == ref.metadata.metadata[b"ARROW:schema"]
    assert [ours.metadata.row_group(g).num_rows for g in range(len(groups))] == groups
    got = ours.read()
    assert got.schema.equals(ref.read().schema)
    values = np.stack([got.column(n).to_numpy() for n in _columns(n_units)])
    np.testing.assert_array_equal(values.view(np.uint16), block.view(np.uint16))  # bit for bit, NaN payloads too
    assert got.column(0).null_count == 0


def test_duckdb_and_polars_read_it_as_pyarrow_does(tmp_path) -> None:
    block = ALL_F16.reshape(4, -1)
    block = block[:, np.isfinite(block).all(0)]  # SQL sums of finite values
    _ours(tmp_path / "ours.parquet", block, [9000, block.shape[1] - 9000])
    sql = "select count(*), sum(u0::double), min(u1::double), max(u3::double) from '{}'"
    expected = (
        block.shape[1],
        *(float(f(block[u].astype(np.float64))) for u, f in ((0, np.sum), (1, np.min), (3, np.max))),
    )
    [row] = duckdb.sql(sql.format(tmp_path / "ours.parquet")).fetchall()
    assert row == pytest.approx(expected)
    frame = pl.read_parquet(tmp_path / "ours.parquet")
    assert frame.shape == (block.shape[1], 4)
    np.testing.assert_array_equal(frame["u2"].to_numpy().astype(np.float16), block[2])


def test_refuses_a_block_of_the_wrong_shape_or_type(tmp_path) -> None:
    with F16ParquetWriter(tmp_path / "x.parquet", _columns(3)) as w:
        with pytest.raises(ValueError, match=r"float16 \[3, rows\]"):
            w.write_group(np.zeros((2, 5), np.float16))
        with pytest.raises(ValueError, match=r"float16 \[3, rows\]"):
            w.write_group(np.zeros((3, 5), np.float32))
        w.write_group(np.zeros((3, 5), np.float16))
    assert pq.read_table(tmp_path / "x.parquet").num_rows == 5


def test_varints_are_thrift_compact() -> None:
    assert _varint(0) == b"\x00" and _varint(127) == b"\x7f" and _varint(300) == b"\xac\x02"
    assert [_zigzag(n) for n in (0, -1, 1, -2, 2**31)] == [b"\x00", b"\x01", b"\x02", b"\x03", b"\x80\x80\x80\x80\x10"]
