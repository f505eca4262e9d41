"""Float16 columns straight into a parquet file: plain pages, no codec, the footer written here.

An activation file is a wide table of float16 unit columns with no nulls, no dictionary and no statistics, so
each column chunk is one data page whose body is the unit's values as they lie in memory. Encoding it through
pyarrow costs a copy and a per-value pass for every column; here a row group is one ``writev`` of page headers
and the caller's buffers, and the footer (the one part that needs the Thrift compact protocol) is built once
at the end. The file is what ``pq.write_table(..., use_dictionary=False, write_statistics=False,
compression="none")`` writes for the same table, field for field: optional ``FIXED_LEN_BYTE_ARRAY(2)`` columns
with the ``FLOAT16`` logical type, data pages v1 with RLE definition levels, and the Arrow schema in the
key-value metadata, so pyarrow, DuckDB and Polars read it as they read pyarrow's.

A file whose size is fixed in advance can also be written in place (:mod:`lstmviz.store.mapped`): :func:`layout`
says where every column chunk goes, padded so that each column's values start on an :data:`ALIGN`-byte
boundary (column chunks need not be adjacent: each has its own offset in the footer), and :func:`footer` is
the footer of either kind of file. :func:`plain_chunks` is how a reader finds the values of such a file again.

With ``levels`` (float16 ``[256]``) a column is dictionary-encoded instead: each column chunk is a dictionary
page holding the levels (PLAIN) and one data page of ``RLE_DICTIONARY`` indices of bit width 8, written as a
single bit-packed run, whose body is then the caller's uint8 indices as they lie in memory (1 byte per value).
Readers decode it to the level values, float16, as they decode any dictionary column (lstmviz's 8-bit gates).

The Thrift field ids below are those of parquet-format's ``parquet.thrift``.
"""

from __future__ import annotations

import base64
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

MAGIC = b"PAR1"

# parquet.thrift enums
_FIXED_LEN_BYTE_ARRAY = 7
_OPTIONAL = 1
_PLAIN = 0
_RLE = 3
_RLE_DICTIONARY = 8
_UNCOMPRESSED = 0
_DATA_PAGE = 0
_DICTIONARY_PAGE = 2

# Thrift compact protocol field types
_I16, _I32, _I64, _BINARY, _LIST, _STRUCT = 4, 5, 6, 8, 9, 12
_IOV_MAX = 1024  # buffers per writev (Linux's limit)
ALIGN = 64  # bytes: where a file written in place (layout) starts each column's values: a cache line, and even


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _zigzag(n: int) -> bytes:
    return _varint((n << 1) ^ (n >> 63))


class _Struct:
    """A Thrift compact-protocol struct, written field by field in increasing id order."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.last = 0

    def _header(self, fid: int, ftype: int) -> None:
        delta = fid - self.last
        if 0 < delta <= 15:
            self.out.append((delta << 4) | ftype)
        else:
            self.out.append(ftype)
            self.out += _zigzag(fid)
        self.last = fid

    def int(self, fid: int, value: int, ftype: int = _I32) -> _Struct:
        self._header(fid, ftype)
        self.out += _zigzag(value)
        return self

    def binary(self, fid: int, value: bytes) -> _Struct:
        self._header(fid, _BINARY)
        self.out += _varint(len(value)) + value
        return self

    def struct(self, fid: int, value: bytes) -> _Struct:
        """``value``: an encoded struct, stop byte included."""
        self._header(fid, _STRUCT)
        self.out += value
        return self

    def list(self, fid: int, etype: int, items: Sequence[bytes]) -> _Struct:
        """``items``: encoded elements (varints for ints, length-prefixed bytes for binaries, structs)."""
        self._header(fid, _LIST)
        n = len(items)
        self.out += bytes([(n << 4) | etype]) if n < 15 else bytes([0xF0 | etype]) + _varint(n)
        for item in items:
            self.out += item
        return self

    def end(self) -> bytes:
        return bytes(self.out) + b"\x00"


def _page_header(rows: int, dictionary: bool = False) -> bytes:
    """The header of one data page of ``rows`` values with no nulls, and the start of its body: the definition
    levels (every level 1: one RLE run), then for ``dictionary`` the indices' bit width (8) and the header of
    one bit-packed run of ⌈rows / 8⌉ groups. The values follow: float16 (2 bytes each) or uint8 indices padded
    to a multiple of 8."""
    levels = _varint(rows << 1) + b"\x01"
    body = struct.pack("<i", len(levels)) + levels
    if dictionary:
        body += b"\x08" + _varint((-(-rows // 8) << 1) | 1)
    size = len(body) + _values_size(rows, dictionary)
    data_page = (
        _Struct().int(1, rows).int(2, _RLE_DICTIONARY if dictionary else _PLAIN).int(3, _RLE).int(4, _RLE).end()
    )  # num_values, encoding, definition_level_encoding, repetition_level_encoding
    header = _Struct().int(1, _DATA_PAGE).int(2, size).int(3, size).struct(5, data_page).end()
    return header + body


def _values_size(rows: int, dictionary: bool) -> int:
    return 8 * -(-rows // 8) if dictionary else 2 * rows


def _dictionary_page(levels: np.ndarray) -> bytes:
    """A whole dictionary page: its header and the levels, PLAIN (float16 as 2-byte fixed-length values)."""
    body = np.ascontiguousarray(levels, np.float16).tobytes()
    dict_header = _Struct().int(1, len(levels)).int(2, _PLAIN).end()  # num_values, encoding
    header = _Struct().int(1, _DICTIONARY_PAGE).int(2, len(body)).int(3, len(body)).struct(7, dict_header).end()
    return header + body


class F16ParquetWriter:
    """Writes a parquet file of float16 columns ``names``, one row group per :meth:`write_group` call.

    ``levels``, if given (float16 ``[256]``), makes every column dictionary-encoded with these values, and the
    blocks are then uint8 indices into them.

    Usage::

        with F16ParquetWriter(path, names) as w:
            w.write_group(block)   # block: float16 [len(names), rows], C-contiguous, one row per column
    """

    def __init__(self, path: str | os.PathLike, names: Sequence[str], levels: np.ndarray | None = None):
        self.path = Path(path)
        self.names = list(names)
        if levels is not None and len(levels) != 256:
            raise ValueError(f"levels: expected 256 float16 values, got {len(levels)}")
        self.dictionary = b"" if levels is None else _dictionary_page(levels)
        self.dtype = np.float16 if levels is None else np.uint8
        self.fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        _write_all(self.fd, [MAGIC])
        self.offset = len(MAGIC)
        self.groups: list[tuple[int, int, int]] = []  # (rows, first page offset, column chunk size)

    def write_group(self, block: np.ndarray) -> None:
        """One row group: block ``[columns, rows]``, C-contiguous (row u is column u's values), float16 (uint8
        indices into ``levels`` for a dictionary-encoded file)."""
        if block.dtype != self.dtype or block.ndim != 2 or block.shape[0] != len(self.names):
            want = np.dtype(self.dtype).name
            raise ValueError(f"expected {want} [{len(self.names)}, rows], got {block.dtype} {list(block.shape)}")
        block = np.ascontiguousarray(block)
        rows = block.shape[1]
        dictionary = bool(self.dictionary)
        header = self.dictionary + _page_header(rows, dictionary)
        pad = bytes(_values_size(rows, dictionary) - block[0].nbytes) if len(block) else b""
        pieces = [piece for u in range(len(self.names)) for piece in (header, block[u].data, pad) if len(piece)]
        for i in range(0, len(pieces), _IOV_MAX):
            _write_all(self.fd, pieces[i : i + _IOV_MAX])
        size = len(header) + _values_size(rows, dictionary)
        self.groups.append((rows, self.offset, size))
        self.offset += size * len(self.names)

    def close(self) -> None:
        """Write the footer and close the file."""
        if self.fd is None:
            return
        try:
            footer = self._footer()
            _write_all(self.fd, [footer, struct.pack("<i", len(footer)), MAGIC])
        finally:
            self.abort()

    def abort(self) -> None:
        """Close the file as it is (the caller removes it)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> F16ParquetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _footer(self) -> bytes:
        return footer(self.names, [(r, first, size, size) for r, first, size in self.groups], len(self.dictionary))


def footer(names: Sequence[str], groups: Sequence[tuple[int, int, int, int]], dictionary_size: int = 0) -> bytes:
    """The file's metadata (Thrift FileMetaData), for row groups (rows, first page offset, bytes from one column
    chunk to the next, column chunk size): column chunk u of a group starts at ``first + u·stride``. The chunks
    of a group need not be adjacent (readers seek to each chunk's own offset), which lets a file written in place
    pad between them (:func:`layout`). ``dictionary_size``: the bytes of each chunk's dictionary page, first."""
    float16 = _Struct().struct(15, b"\x00").end()  # LogicalType union: FLOAT16 (an empty struct)
    schema = [_Struct().binary(4, b"schema").int(5, len(names)).end()]
    schema += [
        _Struct()
        .int(1, _FIXED_LEN_BYTE_ARRAY)
        .int(2, 2)
        .int(3, _OPTIONAL)
        .binary(4, name.encode())
        .struct(10, float16)
        .end()
        for name in names
    ]
    encodings = [_zigzag(_RLE), _zigzag(_PLAIN)] + ([_zigzag(_RLE_DICTIONARY)] if dictionary_size else [])
    paths = [_varint(len(n.encode())) + n.encode() for n in names]
    row_groups = []
    for ordinal, (rows, first, stride, size) in enumerate(groups):
        chunks = []
        for u, path in enumerate(paths):
            page = first + u * stride
            meta = (
                _Struct()
                .int(1, _FIXED_LEN_BYTE_ARRAY)
                .list(2, _I32, encodings)
                .list(3, _BINARY, [path])
                .int(4, _UNCOMPRESSED)
                .int(5, rows, _I64)
                .int(6, size, _I64)
                .int(7, size, _I64)
                .int(9, page + dictionary_size, _I64)
            )
            if dictionary_size:
                meta.int(11, page, _I64)  # dictionary_page_offset: the chunk's dictionary page comes first
            meta = meta.end()
            chunks.append(_Struct().int(2, 0, _I64).struct(3, meta).end())
        total = size * len(paths)
        row_groups.append(
            _Struct()
            .list(1, _STRUCT, chunks)
            .int(2, total, _I64)
            .int(3, rows, _I64)
            .int(5, first, _I64)
            .int(6, total, _I64)
            .int(7, ordinal, _I16)
            .end()
        )
    arrow = pa.schema([(n, pa.float16()) for n in names]).serialize().to_pybytes()
    kv = _Struct().binary(1, b"ARROW:schema").binary(2, base64.b64encode(arrow)).end()
    return (
        _Struct()
        .int(1, 2)
        .list(2, _STRUCT, schema)
        .int(3, sum(g[0] for g in groups), _I64)
        .list(4, _STRUCT, row_groups)
        .list(5, _STRUCT, [kv])
        .binary(6, b"lstmviz parquet_f16")
        .end()
    )


@dataclass(frozen=True)
class Layout:
    """Where a float16 file of fixed size puts its values (:func:`layout`): row group g holds rows
    ``[first[g], first[g] + rows[g])``, and unit u's values of it, float16 ``[rows[g]]``, start at byte
    ``values[g] + u·stride[g]``, each column chunk's page header just before them. Values and strides are
    multiples of :data:`ALIGN`; the data ends at ``data_end``, where the footer goes."""

    first: np.ndarray  # int64 [G]
    rows: np.ndarray  # int64 [G]
    values: np.ndarray  # int64 [G] byte offset of unit 0's values
    stride: np.ndarray  # int64 [G] bytes from one unit's values to the next
    data_end: int

    def groups(self) -> list[tuple[int, int, int, int]]:
        """The row groups as :func:`footer` takes them: (rows, first page offset, stride, column chunk size)."""
        out = []
        for r, v, st in zip(self.rows.tolist(), self.values.tolist(), self.stride.tolist(), strict=True):
            h = len(_page_header(r))
            out.append((r, v - h, st, h + 2 * r))
        return out


def layout(n: int, units: int, row_group: int) -> Layout:
    """The layout of an uncompressed float16 file of n rows × ``units`` columns in groups of ``row_group`` rows
    that is written in place (:class:`lstmviz.store.mapped.MappedF16File`): ``PAR1``, then each group's column
    chunks, each one plain page (:func:`_page_header`, then the values), padded with zeros so that every
    column's values start on an :data:`ALIGN`-byte boundary (so a uint16 view of the mapped file sees them all,
    a cache line apart)."""
    first = np.arange(0, n, row_group, dtype=np.int64)
    rows = np.minimum(first + row_group, n) - first
    values = np.zeros(len(first), np.int64)
    stride = np.zeros(len(first), np.int64)
    end = len(MAGIC)
    for g, r in enumerate(rows.tolist()):
        h = len(_page_header(r))
        stride[g] = _aligned(h + 2 * r)
        values[g] = _aligned(end + h)
        end = int(values[g] + (units - 1) * stride[g] + 2 * r) if units else int(values[g])
    return Layout(first, rows, values, stride, end)


def _aligned(offset: int) -> int:
    return -(-offset // ALIGN) * ALIGN


def plain_chunks(md: pq.FileMetaData, g: int, data: np.ndarray) -> tuple[int, int] | None:
    """(byte offset of unit 0's values, bytes from one unit's values to the next) of row group g of a file read
    as bytes uint8 ``[size]`` (e.g. memory-mapped), when every column chunk of the group is one uncompressed
    float16 page at a fixed stride, as this module writes it (:class:`F16ParquetWriter`: adjacent chunks;
    :func:`layout`: padded); None for any other group (a codec, a dictionary, pyarrow's own pages). Checked:
    codec, sizes, the offsets of the first, second and last chunk, and every chunk's page header."""
    rg = md.row_group(g)
    U, R = rg.num_columns, rg.num_rows
    if U == 0 or R == 0:
        return None
    header = np.frombuffer(_page_header(R), np.uint8)
    size = len(header) + 2 * R
    c0, last = rg.column(0), rg.column(U - 1)
    base = c0.data_page_offset
    stride = rg.column(1).data_page_offset - base if U > 1 else size
    if (
        c0.compression != "UNCOMPRESSED"
        or c0.has_dictionary_page
        or stride < size
        or any(c.total_compressed_size != size for c in (c0, last))
        or last.data_page_offset != base + (U - 1) * stride
        or base + (U - 1) * stride + size > len(data)
    ):
        return None
    heads = np.lib.stride_tricks.as_strided(data[base:], (U, len(header)), (stride, 1), writeable=False)
    if not (heads == header).all():
        return None
    return base + len(header), stride


def _write_all(fd: int, pieces: Sequence) -> None:
    """``writev`` that goes on after a short write until every byte of ``pieces`` is written."""
    views = [memoryview(p).cast("B") for p in pieces]
    while views:
        n = os.writev(fd, views)
        while views and n >= views[0].nbytes:
            n -= views[0].nbytes
            views.pop(0)
        if views:
            views[0] = views[0][n:]
