"""The parquet encoding step of a run's close: pyarrow's writer against lstmviz.parquet_f16, side by side.

    python bench/parquet_writer.py                    # 512 units × 8 row groups of 16,384 rows, 5 rounds
    python bench/parquet_writer.py --units 256 --groups 4 --rounds 3

Each round writes the same float16 blocks ``[units, 16384]`` into a fresh uncompressed file both ways, in
alternating order (pyarrow as the run writer used it: no dictionary, no statistics), and the same number of
8-bit gate indices as lstmviz's dictionary-encoded levels (``levels``). Prints ``metric: value`` lines, the ratio
(median over rounds of pyarrow's time ÷ ours in the same round) first; values/s are medians.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lstmviz.store.levels import LEVELS
from lstmviz.store.parquet_f16 import F16ParquetWriter

ROWS = 16384


def with_pyarrow(path: Path, blocks: list[np.ndarray]) -> None:
    names = [f"u{i}" for i in range(len(blocks[0]))]
    schema = pa.schema([(n, pa.float16()) for n in names])
    with pq.ParquetWriter(path, schema, use_dictionary=False, write_statistics=False, compression="none") as w:
        for block in blocks:
            cols = [
                pa.Array.from_buffers(pa.float16(), ROWS, [None, pa.py_buffer(block[u])]) for u in range(len(names))
            ]
            w.write_table(pa.Table.from_arrays(cols, schema=schema), row_group_size=ROWS)


def with_pages(path: Path, blocks: list[np.ndarray]) -> None:
    with F16ParquetWriter(path, [f"u{i}" for i in range(len(blocks[0]))]) as w:
        for block in blocks:
            w.write_group(block)


def with_levels(path: Path, blocks: list[np.ndarray]) -> None:
    """blocks: uint8 level indices ``[units, rows]``."""
    with F16ParquetWriter(path, [f"u{i}" for i in range(len(blocks[0]))], LEVELS) as w:
        for block in blocks:
            w.write_group(block)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--units", type=int, default=512)
    p.add_argument("--groups", type=int, default=8)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    blocks = [rng.normal(size=(args.units, ROWS)).astype(np.float16) for _ in range(args.groups)]
    values = args.units * ROWS * args.groups
    indices = [rng.integers(0, 256, (args.units, ROWS)).astype(np.uint8) for _ in range(args.groups)]
    times: dict[str, list[float]] = {"pyarrow": [], "pages": [], "levels": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = [("pyarrow", with_pyarrow, blocks), ("pages", with_pages, blocks), ("levels", with_levels, indices)]
            for name, write, data in order if r % 2 == 0 else order[::-1]:
                path = Path(tmp) / f"{name}.parquet"
                t = time.perf_counter()
                write(path, data)
                times[name].append(time.perf_counter() - t)
                path.unlink()
    ratio = statistics.median(a / b for a, b in zip(times["pyarrow"], times["pages"], strict=True))
    print(f"pyarrow_over_pages_time: {ratio:.2f}")
    for name, ts in times.items():
        print(f"{name}_values_per_second: {values / statistics.median(ts):.3g}")
    print(f"values_per_file: {values}")


if __name__ == "__main__":
    main()
