"""Runs on pyarrow filesystems (lstmviz/location.py): written and read through ``file://`` URIs and through
filesystems that are not local (fsspec's in-memory one, and a SubTreeFileSystem, which lstmviz must treat as
object storage: no rename, the manifest uploaded last).

Oracles: the same recording into a plain local directory (every activation, the tokens, the stats, the derived
data), and the files that a filesystem lists after a recording that failed or was killed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import duckdb
import fsspec
import numpy as np
import pandas as pd
import polars as pl
import pyarrow.fs as pafs
import pytest
import torch
from tiny_models import DiesOnce, TinyCharModel

import lstmviz
from lstmviz.analysis.match_bits import DEFAULT_THRESHOLDS, on_index
from lstmviz.analysis.overview import overview
from lstmviz.distributed import record_sharded
from lstmviz.location import FsPath, check_remote_target, resolve
from lstmviz.store import write_run

HERE = Path(__file__).resolve().parent
IDS = np.random.default_rng(3).integers(0, 12, 500)
DISPLAY = [chr(ord("a") + i) for i in IDS]
OPTIONS = dict(streams=3, chunk=40, display=DISPLAY, progress=False)


@pytest.fixture(autouse=True)
def _local_cache(tmp_path, monkeypatch):
    """Remote runs keep their derived data in a local cache; keep it (and the staging) inside the test's dir."""
    monkeypatch.setenv("LSTMVIZ_CACHE", str(tmp_path / "lstmviz-cache"))
    (tmp_path / "staging").mkdir()
    monkeypatch.setenv("LSTMVIZ_STAGING", str(tmp_path / "staging"))


def _model() -> TinyCharModel:
    torch.manual_seed(0)
    return TinyCharModel().eval()


def _memory_fs(tmp_path: Path) -> tuple[pafs.FileSystem, str]:
    """fsspec's in-memory filesystem through pyarrow, and a root unique to the test (its store is global)."""
    return pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem("memory"))), f"/{tmp_path.name}"


def _files(fs: pafs.FileSystem, root: str) -> set[str]:
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return {i.path[len(root) + 1 :] for i in infos if i.type == pafs.FileType.File}


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> lstmviz.Run:
    out = tmp_path_factory.mktemp("local") / "run"
    lstmviz.record_corpus(_model(), IDS, out, **OPTIONS)
    return lstmviz.open_run(out)


def assert_same_run(run: lstmviz.Run, want: lstmviz.Run) -> None:
    """Every activation, the tokens table and the stats are equal, and so are the derived data."""
    assert run.names == want.names and run.n_tokens == want.n_tokens
    for name in want.names:
        np.testing.assert_array_equal(run.activations(name), want.activations(name))
    pd.testing.assert_frame_equal(run.tokens, want.tokens)
    pd.testing.assert_frame_equal(run.stats, want.stats)
    name = want.names[-1]
    for th in DEFAULT_THRESHOLDS:
        np.testing.assert_array_equal(on_index(run, name, th).bits, on_index(want, name, th).bits)
    np.testing.assert_array_equal(overview(run, name)[0], overview(want, name)[0])


def test_a_file_uri_is_the_local_directory_and_records_the_same_run(local, tmp_path):
    out = tmp_path / "uri" / "run"
    assert resolve(out.as_uri()) == out  # the local fast path: a Path, renamed into place
    lstmviz.record_corpus(_model(), IDS, out.as_uri(), **OPTIONS)
    assert (out / "manifest.json").is_file() and not (tmp_path / "uri" / "run.partial").exists()
    assert_same_run(lstmviz.open_run(out.as_uri()), local)


def test_a_run_on_a_non_local_filesystem_equals_the_local_one(local, tmp_path):
    fs, root = _memory_fs(tmp_path)
    got = lstmviz.record_corpus(_model(), IDS, FsPath(fs, f"{root}/run"), **OPTIONS)
    assert got == FsPath(fs, f"{root}/run")
    files = _files(fs, f"{root}/run")
    assert {"manifest.json", ".lstmviz", "tokens.parquet", "stats.parquet"} <= files
    assert {f"acts/{n}.parquet" for n in local.names} <= files
    assert not any(f.startswith("spill") or f.endswith((".f16", ".tmp")) for f in files)
    assert {f for f in files if f.startswith("cache/")} == {
        str(p.relative_to(local.path)) for p in (local.path / "cache").rglob("*") if p.is_file()
    }
    assert not any((tmp_path / "staging").iterdir())  # the staging directory is gone
    run = lstmviz.open_run(f"{root}/run", filesystem=fs)
    assert_same_run(run, local)
    assert run.cache_dir.is_relative_to(tmp_path / "lstmviz-cache")

    from lstmviz.cli import describe_run

    stored = sum(len(fs.open_input_stream(f"{root}/run/{f}").read()) for f in files)
    assert describe_run(FsPath(fs, f"{root}/run"))[-1] == f"size        {stored / 1e6:.1f} MB stored"


def test_an_existing_run_or_foreign_files_on_a_store_are_never_replaced(local, tmp_path):
    fs, root = _memory_fs(tmp_path)
    acts = {"rnn.l0.fwd.h": np.ones((4, 3), np.float32)}
    write_run(FsPath(fs, f"{root}/run"), list("abcd"), acts)
    before = {f: fs.open_input_stream(f"{root}/run/{f}").read() for f in _files(fs, f"{root}/run")}
    for overwrite in (False, True):
        with pytest.raises(lstmviz.RunError, match="already holds a run; lstmviz never deletes or replaces one"):
            write_run(FsPath(fs, f"{root}/run"), list("xy"), {"rnn.l0.fwd.h": np.zeros((2, 3))}, overwrite=overwrite)
    assert {f: fs.open_input_stream(f"{root}/run/{f}").read() for f in _files(fs, f"{root}/run")} == before
    np.testing.assert_array_equal(lstmviz.open_run(FsPath(fs, f"{root}/run")).activations("rnn.l0.fwd.h"), 1)

    with fs.open_output_stream(f"{root}/mine/notes.txt") as f:
        f.write(b"the user's own")
    with pytest.raises(lstmviz.RunError, match="exists and is not an lstmviz run"):
        write_run(FsPath(fs, f"{root}/mine"), list("ab"), {"rnn.l0.fwd.h": np.zeros((2, 3))})
    assert _files(fs, f"{root}/mine") == {"notes.txt"}


class FailsLate(TinyCharModel):
    """Raises on its third forward, after the run's writer has opened (it opens after the first chunk)."""

    calls = 0

    def forward(self, ids):
        FailsLate.calls += 1
        if FailsLate.calls == 3:
            raise RuntimeError("out of luck")
        return super().forward(ids)


def test_a_failed_recording_leaves_nothing_on_the_store(tmp_path):
    fs, root = _memory_fs(tmp_path)
    model = FailsLate()
    model.load_state_dict(_model().state_dict())
    with pytest.raises(lstmviz.ModelError, match="out of luck"):
        lstmviz.record_corpus(model, IDS, FsPath(fs, f"{root}/run"), **OPTIONS)
    assert _files(fs, f"{root}/run") == set()
    assert not any((tmp_path / "staging").iterdir())
    with pytest.raises(lstmviz.RunError, match=r"no run at .*: the directory does not exist"):
        lstmviz.open_run(FsPath(fs, f"{root}/run"))


KILLED = """
import sys, os
import numpy as np, pyarrow.fs as pafs
from lstmviz.location import FsPath
from lstmviz.store import write_run

copy = pafs.copy_files
def copy_then_die(*args, **kwargs):  # every part uploaded, then killed before the manifest
    copy(*args, **kwargs)
    os._exit(9)
pafs.copy_files = copy_then_die
fs = pafs.SubTreeFileSystem(sys.argv[1], pafs.LocalFileSystem())
write_run(FsPath(fs, "runs/a"), list("abcd"), {"rnn.l0.fwd.h": np.ones((4, 3), np.float32)})
"""


def test_a_killed_upload_leaves_no_complete_looking_run_and_a_new_one_starts_over(tmp_path):
    """SubTreeFileSystem is not a LocalFileSystem, so lstmviz writes through it as to object storage."""
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    env = {"PYTHONPATH": str(HERE.parent), "LSTMVIZ_STAGING": str(tmp_path / "staging"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLED), str(bucket)], env=env, check=False)
    assert done.returncode == 9
    uploaded = {str(p.relative_to(bucket / "runs" / "a")) for p in (bucket / "runs" / "a").rglob("*") if p.is_file()}
    assert {"tokens.parquet", "stats.parquet", "acts/rnn.l0.fwd.h.parquet", ".lstmviz"} <= uploaded
    assert "manifest.json" not in uploaded
    fs = pafs.SubTreeFileSystem(str(bucket), pafs.LocalFileSystem())
    with pytest.raises(lstmviz.RunError, match=r"is not a run: it has no manifest.json \(an interrupted recording"):
        lstmviz.open_run("runs/a", filesystem=fs)
    staging = tmp_path / "staging"
    (left,) = staging.iterdir()  # the killed process's staging directory, with the files it had staged
    assert (left / "tokens.parquet").is_file()
    owner, dead_pid, _ = left.name.rsplit("-", 2)  # ".lstmviz-stage-<host>", the killed process's pid, random
    assert int(dead_pid) != os.getpid()
    alive = Path(tempfile.mkdtemp(prefix=f"{owner}-{os.getpid()}-", dir=staging))  # a recording of a live process
    (staging / "users-own-dir").mkdir()
    write_run(FsPath(fs, "runs/a"), list("xyz"), {"rnn.l0.fwd.h": np.full((3, 2), 2, np.float32)})
    run = lstmviz.open_run(FsPath(fs, "runs/a"))
    assert run.n_tokens == 3 and run.units("rnn.l0.fwd.h") == 2
    np.testing.assert_array_equal(run.activations("rnn.l0.fwd.h"), 2)
    assert sorted(staging.iterdir()) == sorted([alive, staging / "users-own-dir"])  # the dead process's is gone


def test_paths_and_uris_resolve_to_one_place(tmp_path):
    fs, _ = _memory_fs(tmp_path)
    assert resolve("runs/x") == Path("runs/x")
    assert resolve(f"file://{tmp_path}/r") == tmp_path / "r"
    assert resolve(str(tmp_path / "r"), filesystem=pafs.LocalFileSystem()) == tmp_path / "r"
    assert resolve("/a/b", filesystem=fs) == FsPath(fs, "/a/b")
    assert resolve("gs://bucket/runs/x").path == "bucket/runs/x"
    assert str(resolve("gs://bucket/runs/x") / "acts") == "gs://bucket/runs/x/acts"
    for bad, why in (("nope://x/y", "Unrecognized filesystem type"), ("gs://", "names no bucket")):
        with pytest.raises(lstmviz.RunError, match=why):
            resolve(bad)
    with pytest.raises(lstmviz.RunError, match="is a whole bucket: give a prefix inside it"):
        check_remote_target(resolve("gs://bucket"))  # refused before any request: a run is never a bucket


def test_cli_refuses_a_bad_or_unreachable_uri_in_one_line(tmp_path, capsys, monkeypatch):
    from cli_checks import refused

    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.chdir(tmp_path)
    text = tmp_path / "t.txt"
    text.write_text("abc")
    base = ["record", "--checkpoint", tmp_path / "none.pt", "--text", text, "--out"]
    line = refused([*base, "nope://bucket/run"], tmp_path, capsys)
    assert "nope://bucket/run is not a location lstmviz can use" in line
    line = refused([*base, "s3://"], tmp_path, capsys)
    assert "names no bucket" in line
    # nothing listens on port 9: the first request fails as one without credentials or network does
    line = refused([*base, "s3://bucket/run?endpoint_override=127.0.0.1:9&scheme=http"], tmp_path, capsys)
    assert line.startswith("lstmviz: error: cannot write to s3://bucket/run")


def test_a_sharded_recording_to_a_file_uri_and_to_a_store_equals_the_local_one(ray_cluster, tmp_path):
    local = tmp_path / "local"
    record_sharded(_model(), IDS, local, shards=2, **OPTIONS)
    want = lstmviz.open_run(local)
    uri = (tmp_path / "uri").as_uri()
    record_sharded(_model(), IDS, uri, shards=2, **OPTIONS)
    assert_same_run(lstmviz.open_run(uri), want)

    bucket = tmp_path / "bucket"
    bucket.mkdir()
    fs = pafs.SubTreeFileSystem(str(bucket), pafs.LocalFileSystem())  # a store to lstmviz: the remote path
    record_sharded(_model(), IDS, FsPath(fs, "runs/big"), shards=2, **OPTIONS)
    run = lstmviz.open_run("runs/big", filesystem=fs)
    assert run.manifest["recording"]["shards"] == want.manifest["recording"]["shards"]
    assert_same_run(run, want)
    on_disk = bucket / "runs" / "big"
    assert not any((on_disk / "shards").glob("*/cache"))  # the parts' caches are merged into the run's
    assert not any((tmp_path / "staging").iterdir())

    name = run.names[0]
    for root in (tmp_path / "uri", on_disk):
        table = duckdb.sql(f"select * from read_parquet('{root}/shards/*/acts/{name}.parquet')").fetchnumpy()
        values = np.stack([table[c] for c in sorted(table)], axis=1).astype(np.float32)
        np.testing.assert_array_equal(values, want.activations(name))
        frame = pl.read_parquet(f"{root}/shards/*/acts/{name}.parquet")
        np.testing.assert_array_equal(frame.to_numpy().astype(np.float32), want.activations(name))


def test_a_killed_worker_on_a_store_is_retried_and_the_run_equals_the_local_one(ray_cluster, tmp_path):
    local = tmp_path / "local"
    record_sharded(_model(), IDS, local, shards=2, **OPTIONS)
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    fs = pafs.SubTreeFileSystem(str(bucket), pafs.LocalFileSystem())
    # the probe makes forward 0, each of two shards three more: a shard dies after its writer may have
    # claimed its part on the store
    model = DiesOnce(str(tmp_path / "died"), 4)
    model.load_state_dict(_model().state_dict())
    record_sharded(model.eval(), IDS, FsPath(fs, "run"), shards=2, max_retries=2, **OPTIONS)
    assert (tmp_path / "died.4").exists()  # the forward that died
    assert_same_run(lstmviz.open_run(FsPath(fs, "run")), lstmviz.open_run(local))
