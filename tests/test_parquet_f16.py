"""lstmviz.parquet_f16 writes the file pyarrow writes for the same float16 table: pyarrow is the oracle. A file
written in place (lstmviz.store.mapped, padded column chunks) reads as the same table in pyarrow, DuckDB, Polars."""

from __future__ import annotations

import itertools

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lstmviz.store.mapped import MappedF16File
from lstmviz.store.parquet_f16 import ALIGN, F16ParquetWriter, _page_header, _varint, _zigzag, layout, plain_chunks

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


def _in_place(path, block: np.ndarray, row_group: int, pieces: int, seed: int) -> MappedF16File:
    """block float16 [units, n] written into a MappedF16File as unit-major tiles of random rows, in random order,
    some straddling row groups (rows of no tile stay 0); returns the closed file."""
    U, n = block.shape
    rng = np.random.default_rng(seed)
    cuts = np.unique(np.r_[0, rng.integers(0, n, pieces), n])
    f = MappedF16File(path, _columns(U), n, row_group)
    for i in rng.permutation(len(cuts) - 1):
        s, e = int(cuts[i]), int(cuts[i + 1])
        if i % 5 == 4:
            continue  # never written: reads as 0
        tile = np.ascontiguousarray(block[:, s:e]).view(np.uint16).reshape(1, -1)  # [1, U·c], unit-major
        f.write_runs(tile, np.array([s]), np.array([e - s]))
    f.close()
    return f


def _expected(block: np.ndarray, row_group: int, pieces: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = block.shape[1]
    cuts = np.unique(np.r_[0, rng.integers(0, n, pieces), n])
    want = block.copy()
    for i in range(len(cuts) - 1):
        if i % 5 == 4:
            want[:, cuts[i] : cuts[i + 1]] = 0
    return want


@pytest.mark.parametrize(
    ("n_units", "n", "row_group"), [(1, 1, 8), (3, 41, 8), (17, 16384 + 100, 16384), (70, 999, 64)]
)
def test_a_file_written_in_place_reads_as_the_same_table(tmp_path, n_units: int, n: int, row_group: int) -> None:
    rng = np.random.default_rng(n)
    block = ALL_F16[rng.integers(0, 1 << 16, (n_units, n))]
    f = _in_place(tmp_path / "m.parquet", block, row_group, 12, n)
    want = _expected(block, row_group, 12, n)
    pf = pq.ParquetFile(tmp_path / "m.parquet")
    _pyarrow(tmp_path / "ref.parquet", want, [min(row_group, n - r) for r in range(0, n, row_group)])
    ref = pq.ParquetFile(tmp_path / "ref.parquet")
    assert pf.schema_arrow.equals(ref.schema_arrow) and pf.schema.equals(ref.schema)
    got = pf.read()
    values = np.stack([got.column(c).to_numpy() for c in _columns(n_units)])
    np.testing.assert_array_equal(values.view(np.uint16), want.view(np.uint16))
    data = np.fromfile(tmp_path / "m.parquet", np.uint8)
    lay = f.layout
    for g in range(pf.metadata.num_row_groups):
        rg = pf.metadata.row_group(g)
        assert rg.num_rows == lay.rows[g] == min(row_group, n - g * row_group)
        offsets = [rg.column(u).data_page_offset for u in range(n_units)]
        assert np.all(np.diff(offsets) == lay.stride[g]) and lay.stride[g] % ALIGN == 0
        base, stride = plain_chunks(pf.metadata, g, data)
        assert base == lay.values[g] and base % ALIGN == 0 and (n_units == 1 or stride == lay.stride[g])
        runs = np.lib.stride_tricks.as_strided(
            data[base : base + 2 * (len(data[base:]) // 2)].view(np.uint16), (n_units, rg.num_rows), (stride, 2)
        )
        np.testing.assert_array_equal(runs, want[:, g * row_group : g * row_group + rg.num_rows].view(np.uint16))


def test_duckdb_and_polars_read_a_file_written_in_place(tmp_path) -> None:
    block = ALL_F16.reshape(4, -1)
    block = block[:, np.isfinite(block).all(0)]
    _in_place(tmp_path / "m.parquet", block, 9000, 30, 0)
    want = _expected(block, 9000, 30, 0).astype(np.float64)
    sql = "select count(*), sum(u0::double), min(u1::double), max(u3::double) from '{}'"
    [row] = duckdb.sql(sql.format(tmp_path / "m.parquet")).fetchall()
    assert row == pytest.approx((block.shape[1], want[0].sum(), want[1].min(), want[3].max()))
    frame = pl.read_parquet(tmp_path / "m.parquet")
    assert frame.shape == (block.shape[1], 4)
    np.testing.assert_array_equal(frame["u2"].to_numpy().astype(np.float16), want[2].astype(np.float16))


def test_layout_pads_every_column_to_an_aligned_start_and_nothing_overlaps() -> None:
    for n, units, rows in ((1, 1, 16384), (16385, 3, 16384), (100_000, 512, 16384), (7, 5, 2)):
        lay = layout(n, units, rows)
        assert lay.rows.sum() == n and (lay.values % ALIGN == 0).all() and (lay.stride % ALIGN == 0).all()
        spans = sorted(
            (first + u * st, first + u * st + size) for _, first, st, size in lay.groups() for u in range(units)
        )
        assert spans[0][0] >= 4 and all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
        assert spans[-1][1] == lay.data_end


def test_plain_chunks_refuses_pages_it_did_not_lay_out(tmp_path) -> None:
    block = ALL_F16[:3000].reshape(3, 1000)
    pq.write_table(pa.table({f"u{u}": block[u] for u in range(3)}), tmp_path / "z.parquet", compression="zstd")
    pf = pq.ParquetFile(tmp_path / "z.parquet")
    assert plain_chunks(pf.metadata, 0, np.fromfile(tmp_path / "z.parquet", np.uint8)) is None
    _ours(tmp_path / "o.parquet", block, [1000])
    data = np.fromfile(tmp_path / "o.parquet", np.uint8)
    md = pq.ParquetFile(tmp_path / "o.parquet").metadata
    h = len(_page_header(1000))
    assert plain_chunks(md, 0, data) == (md.row_group(0).column(0).data_page_offset + h, h + 2000)
    data[md.row_group(0).column(2).data_page_offset] ^= 1  # one page header that is not ours
    assert plain_chunks(md, 0, data) is None
