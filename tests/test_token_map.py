"""The memory-mapped tokens table (``Run.token_table`` and the reads over it) against ``Run.tokens``, the whole
table read into pandas: every window, column and kind of column the same; the map's pages leave the process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lstmviz.analysis.select_match import span_text, token_joiner
from lstmviz.errors import RunError
from lstmviz.store import RunReader, open_run, tokens_frame, write_run
from lstmviz.store.reader import drop_mapped_pages

N = 103


def table(n: int = N) -> pd.DataFrame:
    """Tokens of three documents with annotation columns of every kind a run holds: bool, float with NaN, int,
    strings with missing values, lists."""
    rng = np.random.default_rng(0)
    t = tokens_frame([chr(97 + i % 26) for i in range(n)])
    t["doc"] = np.repeat([0, 1, 2], [40, 35, n - 75]).astype(t["doc"].dtype)
    t["in_string"] = rng.random(n) > 0.5
    t["loss"] = np.where(rng.random(n) > 0.8, np.nan, rng.random(n))
    t["depth"] = rng.integers(-3, 3, n)
    t["kind"] = pd.Series(["x", None, "yy", "z", "é"] * (n // 5) + ["x"] * (n % 5), dtype=object)
    t["top_ids"] = [list(rng.integers(0, 9, 3)) for _ in range(n)]
    return t


@pytest.fixture
def run(tmp_path):
    """A run whose tokens file has many small row groups, so the map holds many chunks and windows cross them."""
    path = write_run(tmp_path / "run", table(), {"rnn.l0.fwd.h": np.zeros((N, 2))})
    tokens = pq.read_table(path / "tokens.parquet")
    pq.write_table(tokens, path / "tokens.parquet", row_group_size=7)
    return open_run(path)


def test_windows_and_columns_are_the_whole_tables(run):
    whole = run.tokens
    assert run.token_columns == list(whole.columns)
    rng = np.random.default_rng(1)
    windows = [(0, N), (0, 0), (N - 1, N), (6, 8), (13, 14), *(sorted(rng.integers(0, N + 1, 2)) for _ in range(20))]
    for a, b in windows:
        expect = whole.iloc[a:b].reset_index(drop=True)
        pd.testing.assert_frame_equal(run.tokens_window(int(a), int(b)), expect)
        pd.testing.assert_frame_equal(run.tokens_window(int(a), int(b), ["token", "loss"]), expect[["token", "loss"]])
    for column in whole.columns:
        pd.testing.assert_series_equal(run.token_column(column), whole[column])
    assert run.token_table.column("token").num_chunks > 1


def test_taken_rows_are_the_whole_tables_rows_in_their_order(run):
    rng = np.random.default_rng(3)
    for rows in (rng.integers(0, N, 40), np.array([N - 1, 0, 0, 7, 6, 13]), np.zeros(0, np.int64)):
        expect = run.tokens.iloc[rows].reset_index(drop=True)
        pd.testing.assert_frame_equal(run.token_rows(rows).to_pandas(), expect)
        got = run.token_rows(rows, ["doc", "token"]).to_pandas()
        pd.testing.assert_frame_equal(got, expect[["doc", "token"]])
    for bad in ([N], [-1]):
        with pytest.raises(RunError, match="token rows must lie in"):
            run.token_rows(np.array(bad))


def test_the_copy_is_kept_once_per_recording(run, tmp_path):
    maps = lambda: sorted(p.name for p in run.cache_dir.glob("tokens.*.arrow"))  # noqa: E731
    first = run.token_table
    path = run.path / "tokens.parquet"
    assert len(maps()) == 1
    (copy,) = run.cache_dir.glob("tokens.*.arrow")
    stamp = (copy.stat().st_ino, copy.stat().st_mtime_ns)
    again = open_run(run.path)
    assert again.token_table.equals(first) and len(maps()) == 1
    assert (copy.stat().st_ino, copy.stat().st_mtime_ns) == stamp  # mapped, not written again
    # recorded again under the same path: its own copy, and the old one is gone
    write_run(run.path, table().assign(token=list("z" * N)), {"rnn.l0.fwd.h": np.ones((N, 2))}, overwrite=True)
    fresh = open_run(run.path)
    assert fresh.tokens_window(0, 3)["token"].tolist() == ["z"] * 3
    (old,) = maps()
    # its tokens file rewritten in place, under the same manifest and cache: the map follows the file
    pq.write_table(pa.Table.from_pandas(table().assign(token=list("y" * N)), preserve_index=False), path)
    fresh = open_run(run.path)
    assert fresh.tokens_window(0, 3)["token"].tolist() == ["y"] * 3
    assert len(maps()) == 1 and maps() != [old]
    assert not [p for p in fresh.cache_dir.iterdir() if p.name.endswith(".tmp")]


def test_an_unwritable_cache_reads_the_table_into_memory(run, monkeypatch):
    def refuse(self):
        raise PermissionError("read-only")

    monkeypatch.setattr(RunReader, "_token_map", refuse)
    pd.testing.assert_frame_equal(run.tokens_window(5, 60), run.tokens.iloc[5:60].reset_index(drop=True))
    assert not list(run.cache_dir.glob("tokens.*.arrow"))


@pytest.mark.parametrize("damage", ["cut", "empty"])
def test_a_damaged_copy_is_read_from_the_tokens_file_and_written_again(run, damage):
    """A copy cut short, or left empty (a rename that reached the disk before the data did), is derived data: the
    table is read from the tokens file, whole and right, and the next opening maps a new copy."""
    want = run.tokens.reset_index(drop=True)
    run.token_table  # noqa: B018  (writes the copy)
    (copy,) = run.cache_dir.glob("tokens.*.arrow")
    copy.write_bytes(copy.read_bytes()[:200] if damage == "cut" else b"")
    damaged = open_run(run.path)
    pd.testing.assert_frame_equal(damaged.tokens_window(0, N), want)
    again = open_run(run.path)
    pd.testing.assert_frame_equal(again.tokens_window(0, N), want)
    assert copy.is_file() and copy.stat().st_size > 1000


def test_a_killed_processes_half_written_copy_is_removed(run, tmp_path):
    """The temporary copy of a process killed while writing it (named after its pid) goes when a copy is next
    written; one of a live process stays."""
    import subprocess

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    run.cache_dir.mkdir(parents=True, exist_ok=True)
    left = run.cache_dir / f".tokens.0123.arrow.{int(dead.stdout)}.1.tmp"
    live = run.cache_dir / f".tokens.0123.arrow.{os.getpid()}.1.tmp"
    left.write_bytes(b"x" * 100)
    live.write_bytes(b"x" * 100)
    run.token_table  # noqa: B018
    assert not left.exists() and live.exists()


def old_span_text(run, starts, stops, width=20, max_text=200):
    """span_text as it was over the whole pandas table: the brute-force oracle of the mapped one."""
    tok, doc = run.tokens["token"], run.tokens["doc"].to_numpy()
    join = token_joiner(run)
    before, text, after = [], [], []
    for a, b in zip(starts, stops, strict=True):
        lo, hi = max(a - width, 0), min(b + width, len(tok))
        lo += int(np.count_nonzero(doc[lo:a] != doc[a]))
        hi -= int(np.count_nonzero(doc[b:hi] != doc[b - 1]))
        window = [str(t) for t in tok.iloc[lo:hi]]
        inner = window[a - lo : b - lo]
        if len(inner) > max_text:
            inner = [*inner[: max_text // 2], " … ", *inner[-max_text // 2 :]]
        before.append(join.join(window[: a - lo]))
        text.append(join.join(inner))
        after.append(join.join(window[b - lo :]))
    return before, text, after


def test_span_text_stops_at_document_borders_as_before(run):
    rng = np.random.default_rng(2)
    starts = np.array([0, 38, 40, 74, 75, N - 2, *rng.integers(0, N - 1, 30)])
    stops = np.minimum(starts + np.array([1, 4, 2, 3, 30, 2, *rng.integers(1, 9, 30)]), N)
    for width, max_text in ((20, 200), (3, 2), (0, 200)):
        got = span_text(run, starts, stops, width, max_text)
        assert got == old_span_text(run, starts.tolist(), stops.tolist(), width, max_text)
    assert span_text(run, np.zeros(0, np.int64), np.zeros(0, np.int64)) == ([], [], [])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_dropped_pages_leave_the_resident_set_and_read_back_the_same(tmp_path):
    n = 1 << 20  # 8 MB of int64 ids: enough pages to see
    t = tokens_frame(["a"] * n)
    run = open_run(write_run(tmp_path / "big", t, {"rnn.l0.fwd.h": np.zeros((n, 1))}))
    ids = run.token_column("idx").to_numpy()
    (path,) = run.cache_dir.glob("tokens.*.arrow")

    def resident_kb() -> int:
        """Resident kB of the tokens map in this process."""
        total, inside = 0, False
        for line in Path("/proc/self/smaps").read_text().splitlines():
            if line[0] in "0123456789abcdef" and "-" in line.split()[0]:
                inside = line.endswith(str(path))
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
        return total

    assert resident_kb() > 4096
    drop_mapped_pages()
    assert resident_kb() < 1024
    np.testing.assert_array_equal(ids, np.arange(n))
    np.testing.assert_array_equal(run.token_column("idx").to_numpy(), np.arange(n))
    assert isinstance(run.token_table.column("idx").chunk(0), pa.Array)


def test_a_columns_kind_is_its_arrow_type(tmp_path):
    """Booleans with missing steps are boolean (pandas holds them as objects), ints and floats numeric, strings
    and lists other."""
    t = table()
    t["maybe"] = pd.Series([True, None, False] * (N // 3) + [True] * (N % 3), dtype=object)
    run = open_run(write_run(tmp_path / "kinds", t, {"rnn.l0.fwd.h": np.zeros((N, 2))}))
    assert {c: run.token_kind(c) for c in ("in_string", "maybe", "loss", "depth", "kind", "top_ids")} == {
        "in_string": "boolean",
        "maybe": "boolean",
        "loss": "numeric",
        "depth": "numeric",
        "kind": "other",
        "top_ids": "other",
    }
    assert run.tokens["maybe"].dtype == object
