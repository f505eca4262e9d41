"""A run as users meet it: :func:`open_run` checks a run directory and returns a :class:`Run`."""

from __future__ import annotations

import contextlib
import json
import os

import pandas as pd
import pyarrow.fs as pafs

from ..errors import RunError
from ..location import MARKER, AnyPath, FsPath, resolve, storage_errors
from ..validate import check_run, check_version
from .reader import RunReader


class Run(RunReader):
    """A recorded run, opened lazily. Use :func:`open_run`, which checks it first.

    Its files are read as :class:`RunReader` reads them; the unit cards' reads are here, delegated to
    :mod:`lstmviz.cards` (which builds on :class:`RunReader` alone, so it never imports this module).
    """

    def top_contexts(self, name: str, unit: int, k: int = 20, sign: int = 1, window: int = 10) -> pd.DataFrame:
        """The unit's greedy de-duplicated top-k contexts: ``rank, idx, value, token, context`` (see
        :func:`lstmviz.cards.top_contexts`)."""
        from ..cards.read import top_contexts  # the cards sit above the store; a reader loads them when asked

        return top_contexts(self, name, unit, k=k, sign=sign, window=window)

    def correlated_units(self, name: str, unit: int, k: int = 10) -> pd.DataFrame:
        """The k units of ``name`` most correlated with ``unit``: ``unit, r`` by |r| (see
        :func:`lstmviz.cards.correlated_units`)."""
        from ..cards.read import correlated_units

        return correlated_units(self, name, unit, k=k)


def open_run(path: str | os.PathLike | FsPath, filesystem: pafs.FileSystem | None = None) -> Run:
    """Open a run directory. Raises :class:`RunError` (one line) for a missing, incomplete or corrupt run.

    ``path``: a local directory, a URI (``s3://bucket/runs/x``, ``gs://…``, ``file:///…``), or a path on the
    pyarrow ``filesystem`` given (see :func:`lstmviz.location.resolve`). Reads the manifest and the parquet
    footers of the files it lists (not their data) and checks that they agree: see
    :func:`lstmviz.validate.check_run`.
    """
    if not isinstance(path, FsPath):
        if not isinstance(path, str | os.PathLike) or isinstance(os.fspath(path), bytes):
            raise RunError(f"a run is opened by its path (a str or os.PathLike), got {path!r}")
        if not os.fspath(path):
            raise RunError("no run path given: pass the run's directory")
        if "\x00" in os.fspath(path):
            raise RunError(f"{os.fspath(path)!r} is not a usable path: it holds a NUL byte")
    p = resolve(path, filesystem)
    remote = storage_errors(p, "read the run at") if isinstance(p, FsPath) else contextlib.nullcontext()
    with remote:
        return _open(p)


def _open(p: AnyPath) -> Run:
    """:func:`open_run` on a resolved path."""
    if not p.exists():
        raise RunError(f"no run at {p}: the directory does not exist")
    if not p.is_dir():
        raise RunError(f"{p} is a file, not a run directory")
    mf = p / "manifest.json"
    if not mf.exists():
        interrupted = p.name.endswith(".partial") or (p / MARKER).exists()
        hint = " (an interrupted recording: record it again)" if interrupted else ""
        raise RunError(f"{p} is not a run: it has no manifest.json{hint}")
    try:
        manifest = json.loads(mf.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{mf} is corrupt: {e}") from None
    except OSError as e:
        raise RunError(f"{mf} is unreadable: {e.strerror or e}") from None
    if not isinstance(manifest, dict):
        raise RunError(f"{mf} is corrupt: it must hold a JSON object, not a {type(manifest).__name__}")
    if not manifest.get("complete"):
        raise RunError(f"{p} is an incomplete run (its manifest is not marked complete): record it again")
    if manifest["complete"] is not True:
        raise RunError(f"{p} is corrupt: manifest.json field complete must be true, got {manifest['complete']!r}")
    check_version(p, manifest)
    check_run(p, manifest)
    return Run(p, manifest)
