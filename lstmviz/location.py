"""Where a run lives: a local directory, or a prefix on a pyarrow filesystem (``s3://``, ``gs://``, ``hdfs://`` …).

:func:`resolve` turns what the user gave (a path, a URI that ``pyarrow.fs.FileSystem.from_uri`` understands, or a
path with a ``pyarrow.fs.FileSystem`` object) into a :class:`pathlib.Path` for a local directory, ``file://``
included, or an :class:`FsPath` for any other filesystem. Local runs keep every local shortcut (the direct float16
writer, ``<run>.partial`` and one rename, memory maps); an :class:`FsPath` offers the few pathlib operations that
reading and checking a run use (``/``, ``exists``, ``is_file``, ``stat``, ``read_text``, ``iterdir``, ``glob``), so
the readers take either. :func:`parquet_file`, :func:`read_metadata` and :func:`read_table` open parquet from
both.

Object storage has no rename, so a run written there (:class:`RemoteOutput`) is staged in a local directory, as a
local run is, then uploaded under its final names, its ``manifest.json`` last: a run is complete when its manifest
is there, and a recording that stops early leaves a prefix without one, which ``open_run`` refuses. A prefix is
written only when it is new, empty, or an interrupted lstmviz recording (its ``.lstmviz`` marker and no
manifest); an existing run there is never deleted or replaced, since no step could swap it atomically.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import posixpath
import re
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .errors import RunError
from .outputs import write_json_atomically

MARKER = ".lstmviz"  # the same marker file as lstmviz.outputs writes into its directories
_SCHEMES = {"s3": "s3", "gcs": "gs", "hdfs": "hdfs", "abfs": "abfs"}
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


class FsPath:
    """A path on a non-local pyarrow filesystem, with the pathlib operations a run's reads and writes use.

    ``fs``: a ``pyarrow.fs.FileSystem``; ``path``: the path inside it (``bucket/prefix`` for S3 and GCS). Picklable
    (Ray ships one to each worker) when ``fs`` is. ``str()`` gives the URI for the filesystems that have one.
    """

    __slots__ = ("fs", "path")

    def __init__(self, fs: pafs.FileSystem, path: str):
        self.fs = fs
        self.path = path.rstrip("/") if path not in ("", "/") else path

    def __reduce__(self):
        return FsPath, (self.fs, self.path)

    def __str__(self) -> str:
        scheme = _SCHEMES.get(self.fs.type_name)
        return f"{scheme}://{self.path}" if scheme else self.path

    def __repr__(self) -> str:
        return f"FsPath({self.fs.type_name}, {self.path!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FsPath) and other.path == self.path and other.fs.equals(self.fs)

    def __hash__(self) -> int:
        return hash((self.fs.type_name, self.path))

    def __truediv__(self, other: str | os.PathLike) -> FsPath:
        return FsPath(self.fs, posixpath.join(self.path, os.fspath(other)) if self.path else os.fspath(other))

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def parent(self) -> FsPath:
        return FsPath(self.fs, posixpath.dirname(self.path))

    def _info(self) -> pafs.FileInfo:
        return self.fs.get_file_info(self.path)

    def exists(self) -> bool:
        return self._info().type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        return self._info().type == pafs.FileType.Directory

    def is_file(self) -> bool:
        return self._info().type == pafs.FileType.File

    def is_symlink(self) -> bool:
        return False

    def stat(self) -> SimpleNamespace:
        """``st_size`` and ``st_mtime_ns`` (0 where the filesystem keeps no time)."""
        info = self._info()
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(str(self))
        return SimpleNamespace(st_size=info.size or 0, st_mtime_ns=info.mtime_ns or 0)

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as f:
            return f.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> None:
        """One upload: on object storage the object appears whole or not at all."""
        with self.fs.open_output_stream(self.path) as f:
            f.write(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(text.encode(encoding))

    def mkdir(self, parents: bool = True, exist_ok: bool = True) -> None:
        self.fs.create_dir(self.path, recursive=True)

    def iterdir(self) -> Iterator[FsPath]:
        for info in self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True)):
            yield FsPath(self.fs, info.path)

    def glob(self, pattern: str) -> list[FsPath]:
        """The files below this path that match ``pattern`` (``*`` within one path segment, as glob's), sorted."""
        parts = pattern.split("/")
        literal = next((i for i, p in enumerate(parts) if any(c in p for c in "*?[")), len(parts))
        base = self / "/".join(parts[:literal]) if literal else self
        infos = self.fs.get_file_info(pafs.FileSelector(base.path, recursive=True, allow_not_found=True))
        found = []
        for info in infos:
            rel = posixpath.relpath(info.path, self.path).split("/")
            if len(rel) == len(parts) and all(
                fnmatch.fnmatchcase(r, p) and not (r.startswith(".") and not p.startswith("."))
                for r, p in zip(rel, parts, strict=True)
            ):
                found.append(FsPath(self.fs, info.path))
        return sorted(found, key=lambda f: f.path)

    def relative_to(self, other: FsPath) -> str:
        return posixpath.relpath(self.path, other.path)

    def open_input(self) -> pa.NativeFile:
        """A random-access file (what a parquet reader needs: the footer, then only the row groups asked for)."""
        return self.fs.open_input_file(self.path)

    def rmtree(self) -> None:
        """Delete everything at or below this path."""
        info = self._info()
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(self.path)
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(self.path)


AnyPath = Path | FsPath


def tree_size(path: FsPath) -> int:
    """Bytes of every file at or below ``path``."""
    infos = path.fs.get_file_info(pafs.FileSelector(path.path, recursive=True, allow_not_found=True))
    return sum(i.size or 0 for i in infos if i.type == pafs.FileType.File)


def resolve(where: str | os.PathLike | FsPath, filesystem: pafs.FileSystem | None = None) -> AnyPath:
    """A local :class:`~pathlib.Path`, or an :class:`FsPath` on another filesystem.

    ``where``: a path; a URI (``s3://bucket/prefix``, ``gs://…``, ``file:///abs/path``), resolved by
    ``pyarrow.fs.FileSystem.from_uri`` with credentials from the environment as pyarrow finds them; or an
    :class:`FsPath`. ``filesystem``: a pyarrow filesystem that ``where`` is a path on. A local filesystem, however
    named, gives a Path. Raises :class:`RunError` (one line) for a URI pyarrow cannot resolve.
    """
    if isinstance(where, FsPath):
        if filesystem is not None and not filesystem.equals(where.fs):
            raise RunError(f"{where} is on another filesystem than the filesystem= given")
        return where
    if filesystem is not None:
        if not isinstance(filesystem, pafs.FileSystem):
            raise RunError(f"filesystem= must be a pyarrow.fs.FileSystem, got {type(filesystem).__name__}")
        if isinstance(filesystem, pafs.LocalFileSystem):
            return Path(where)
        return FsPath(filesystem, os.fspath(where))
    if isinstance(where, str) and _URI.match(where):
        try:
            fs, path = pafs.FileSystem.from_uri(where)
        except (OSError, pa.ArrowException, ValueError) as e:
            raise RunError(f"{where} is not a location lstmviz can use: {_line(e)}") from None
        if isinstance(fs, pafs.LocalFileSystem):
            return Path(path)
        if not path.strip("/"):
            raise RunError(f"{where} names no bucket or folder: give one, e.g. s3://bucket/runs/mine")
        return FsPath(fs, path)
    return Path(where)


def _line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


@contextlib.contextmanager
def storage_errors(where: AnyPath, doing: str) -> Iterator[None]:
    """Turn a filesystem's OSError or ArrowException (no credentials, no bucket, no network) into one RunError."""
    try:
        yield
    except (OSError, pa.ArrowException) as e:
        raise RunError(f"cannot {doing} {where}: {_line(e)}") from None


def parquet_file(path: AnyPath) -> pq.ParquetFile:
    return pq.ParquetFile(path.open_input() if isinstance(path, FsPath) else path)


def read_metadata(path: AnyPath) -> pq.FileMetaData:
    if isinstance(path, FsPath):
        with path.open_input() as f:
            return pq.read_metadata(f)
    return pq.read_metadata(path)


def read_table(path: AnyPath, columns: list[str] | None = None) -> pa.Table:
    if isinstance(path, FsPath):
        with path.open_input() as f:
            return pq.read_table(f, columns=columns)
    return pq.read_table(path, columns=columns)


def write_table(table: pa.Table, path: AnyPath) -> None:
    """Write a parquet file whole: locally through a temporary sibling and a rename, remotely as one upload."""
    if isinstance(path, FsPath):
        with path.fs.open_output_stream(path.path) as f:
            pq.write_table(table, f)
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # sessions are threads
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_manifest(run: AnyPath, manifest: dict) -> None:
    """The run's ``manifest.json``: the last file of a run, whose presence (and ``"complete": true``) makes it one."""
    if isinstance(run, FsPath):
        (run / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
        return
    write_json_atomically(run / "manifest.json", manifest)


def staging_dir(prefix: str) -> Path:
    """A fresh local directory for what is uploaded later: under ``$LSTMVIZ_STAGING`` if set (a disk with room
    for the run, not a RAM-backed /tmp), else the system's temporary directory. Its name holds this host and
    process (``<prefix><host>-<pid>-…``), so that the directories of ``prefix`` which processes of this host
    left behind when killed before cleaning up are known, and removed first."""
    root = Path(os.environ.get("LSTMVIZ_STAGING") or tempfile.gettempdir())
    host = _host()
    for old in root.glob(f"{prefix}{host}-*"):
        pid = old.name[len(prefix) + len(host) + 1 :].split("-")[0]
        if pid.isdigit() and not process_running(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{host}-{os.getpid()}-", dir=root))


def _host() -> str:
    """This host, as a short name-safe tag (staging directories may sit on a disk several hosts share)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def process_running(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (a temporary file named after a process that is gone is left
    over from a crash) (a process of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def scratch_dir(out: AnyPath) -> Path:
    """Where a recording into ``out`` keeps its temporary files: beside a local run (its own disk), else the
    staging root of :func:`staging_dir`."""
    if isinstance(out, FsPath):
        return Path(os.environ.get("LSTMVIZ_STAGING") or tempfile.gettempdir())
    return out.expanduser().parent


def local_cache(run: FsPath, manifest: dict) -> Path:
    """The local directory that stands in for a remote run's ``cache/`` (memory maps need local files): under
    ``$LSTMVIZ_CACHE`` (default ``~/.cache/lstmviz``), one per run and recording (keyed by its location and
    manifest), filled on first use with the derived data the run was recorded with."""
    root = Path(os.environ.get("LSTMVIZ_CACHE") or Path.home() / ".cache" / "lstmviz") / "remote"
    recording = json.dumps(manifest, sort_keys=True, default=str)
    key = hashlib.sha256(f"{run.fs.type_name}\0{run.path}\0{recording}".encode()).hexdigest()[:16]
    home = root / f"{run.name or 'run'}-{key}"
    cache = home / "cache"
    if not cache.is_dir():
        tmp = Path(tempfile.mkdtemp(dir=_mkdirs(root), prefix=f".{home.name}."))
        if (run / "cache").is_dir():
            with storage_errors(run, "download the derived data of"):
                pafs.copy_files((run / "cache").path, str(tmp / "cache"), run.fs, pafs.LocalFileSystem())
        (tmp / "cache").mkdir(exist_ok=True)
        try:
            os.rename(tmp, home)
        except OSError:  # another process filled it first
            shutil.rmtree(tmp, ignore_errors=True)
    return cache


def _mkdirs(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _own_marker(path: FsPath) -> bool:
    try:
        marker = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("written_by") == "lstmviz" and marker.get("kind") == "run"


def check_remote_target(target: FsPath, name: str = "output") -> None:
    """Raise :class:`RunError` unless a run may be written at ``target``: new, empty, or an interrupted lstmviz
    recording (marker, no manifest). An existing run is refused even to be overwritten (see the module doc)."""
    bucket = FsPath(target.fs, target.path.strip("/").split("/")[0])
    buckets = target.fs.type_name in ("s3", "gcs")
    if buckets and bucket.path == target.path.strip("/"):  # a run's files, deleted as one, never the bucket's
        raise RunError(f"{name} {target} is a whole bucket: give a prefix inside it, e.g. {bucket}/runs/mine")
    with storage_errors(target, "write to"):
        if target.is_file():
            raise RunError(f"{name} {target} is a file, not a run directory: lstmviz will not replace it")
        if buckets and not bucket.is_dir():
            raise RunError(f"{name} {target}: there is no bucket {bucket} (or these credentials cannot see it)")
        if not target.is_dir():
            return
        if (target / "manifest.json").exists():
            raise RunError(
                f"{name} {target} already holds a run; lstmviz never deletes or replaces one on object storage "
                f"(it cannot swap it atomically): delete it yourself or choose another path"
            )
        if not _own_marker(target) and next(target.iterdir(), None) is not None:
            raise RunError(
                f"{name} {target} exists and is not an lstmviz run: lstmviz writes only into a new or empty "
                f"location; choose another path or move it away yourself"
            )


class RemoteOutput:
    """A run being written to an :class:`FsPath` (see the module doc), with the interface of
    :class:`lstmviz.outputs.Output`: fill ``partial`` (a local staging directory), then :meth:`publish`.

    Created, it checks ``target`` and claims it with the ``.lstmviz`` marker (an interrupted recording there is
    cleared first). :meth:`publish` uploads everything but ``manifest.json`` and then calls ``finish(target)``,
    which writes the manifest; :meth:`discard` deletes what was uploaded and the staging directory.
    """

    def __init__(self, target: FsPath, *, name: str = "output"):
        self.target = target
        self._name = name
        self.published = False
        self._ours = False  # whether what is at target is ours to delete again
        check_remote_target(target, name)
        self.partial = staging_dir(".lstmviz-stage-")
        try:
            with storage_errors(target, "write to"):
                if target.exists():
                    target.rmtree()  # empty, or an interrupted recording of ours (checked above): start over
                self._ours = True
                target.mkdir()
                (target / MARKER).write_text(json.dumps({"written_by": "lstmviz", "kind": "run"}) + "\n")
        except BaseException:
            self.discard()
            raise

    def publish(self, finish: Callable[[FsPath], None] | None = None) -> FsPath:
        """Upload the staged files under their final names (in parallel), then ``finish(target)`` last."""
        with storage_errors(self.target, "write to"):
            if (self.target / "manifest.json").exists():  # another writer finished a run here meanwhile
                self._ours = False
                check_remote_target(self.target, self._name)
            (self.partial / "manifest.json").unlink(missing_ok=True)
            (self.partial / MARKER).unlink(missing_ok=True)
            if any(self.partial.iterdir()):
                pafs.copy_files(str(self.partial), self.target.path, pafs.LocalFileSystem(), self.target.fs)
            if finish is not None:
                finish(self.target)
        self.published = True
        shutil.rmtree(self.partial, ignore_errors=True)
        return self.target

    def discard(self) -> None:
        """Delete the staging directory and whatever reached ``target``; idempotent, and a no-op once published."""
        shutil.rmtree(self.partial, ignore_errors=True)
        if self.published or not self._ours:
            return
        self._ours = False
        with contextlib.suppress(OSError, pa.ArrowException):
            self.target.rmtree()

    def __enter__(self) -> RemoteOutput:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.discard()
