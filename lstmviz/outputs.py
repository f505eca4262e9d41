"""Where lstmviz writes: every output is filled beside its target and renamed into place, and an existing
target is replaced only when lstmviz wrote it.

Four kinds of output share this one mechanism (:class:`Output`):

- ``"run"``: a run directory (docs/FORMAT.md), filled as ``<run>.partial/``;
- ``"lstmvis"``: an LSTMVis project folder (docs/LSTMVIS.md), filled as ``<folder>.partial/``;
- ``"checkpoint"``: a native checkpoint file from ``lstmviz train``;
- ``"table"``: a CSV or parquet file.

Files are filled in a uniquely named hidden sibling (``.<name>.XXXX.partial``) and moved over the target with
one ``os.replace``. Directories carry the marker file ``.lstmviz`` (``{"written_by": "lstmviz", "kind": …}``),
written first, so a folder lstmviz made is told apart from one it did not. A target that exists may be replaced
(with ``overwrite``) only when it is:

- a directory of the same kind with that marker, a run directory whose ``manifest.json`` names an lstmviz
  version (runs written before the marker), or an empty directory;
- for ``"checkpoint"``, a file that loads weights-only as a native lstmviz checkpoint; for ``"table"``, a file.

Anything else (a folder of the user's files, a file where a folder goes, a run where an LSTMVis folder goes)
is refused with a :class:`~lstmviz.errors.RunError` before anything is written. A directory is replaced by
moving the old one into a fresh ``tempfile.mkdtemp`` sibling, renaming the new one in, then deleting the old:
no fixed side name (``<out>.old``) can be in the way, and a failure at any step puts the old one back.
``finish`` (the manifest's ``"complete": true``, or lstm.yml) is written only after the rename, so a
``.partial`` never holds a finished output, even if the process is killed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import RunError

MARKER = ".lstmviz"
DIRECTORY_KINDS = ("run", "lstmvis")
FILE_KINDS = ("checkpoint", "table")
_LEGACY_RUN_PARTIAL = {"acts", "spill", "tokens.parquet", "stats.parquet", "manifest.json"}
_WHAT = {
    "run": "an lstmviz run",
    "lstmvis": "an LSTMVis folder written by lstmviz export",
    "checkpoint": "an lstmviz checkpoint",
    "table": "a file",
}


def _marker_kind(path: Path) -> str | None:
    """The kind named by the ``.lstmviz`` marker in directory ``path``, or None without a valid marker."""
    try:
        marker = json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(marker, dict) and marker.get("written_by") == "lstmviz":
        return str(marker.get("kind"))
    return None


def _is_run_manifest(path: Path) -> bool:
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and "lstmviz_version" in manifest and "activations" in manifest


def _is_checkpoint(path: Path) -> bool:
    """Does ``path`` load weights-only (which runs no code) as a native lstmviz checkpoint?"""
    import warnings

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # any failure to load means: not one of ours
        return False
    return isinstance(ckpt, dict) and ckpt.get("format") == "lstmviz"


def replaceable(path: Path, kind: str) -> bool:
    """Whether the existing ``path`` is an output of ``kind`` that lstmviz may replace (see the module doc)."""
    if kind in FILE_KINDS:
        if not path.is_file():
            return False
        return kind == "table" or _is_checkpoint(path)
    if not path.is_dir():
        return False
    found = _marker_kind(path)
    if found is not None:
        return found == kind
    if kind == "run" and _is_run_manifest(path):
        return True
    return not any(path.iterdir())


def check_target(
    path: str | os.PathLike, kind: str, overwrite: bool, *, name: str = "output", flag: str = "overwrite=True"
) -> None:
    """Raise :class:`RunError` (one line) unless an output of ``kind`` may be written at ``path``.

    ``name`` and ``flag`` word the message (the CLI passes ``--out`` and ``--overwrite``). Checks, without
    writing anything: what is at ``path`` (see :func:`replaceable`), the ``.partial`` of a directory output,
    and that the nearest existing directory above ``path`` accepts new files.
    """
    path = Path(path)
    if kind not in DIRECTORY_KINDS + FILE_KINDS:
        raise ValueError(f"unknown output kind {kind!r}")
    if not Path(os.path.abspath(path)).name:
        raise RunError(f"{name} {path} is the root of the file system: name a folder or file inside it")
    if path.exists() or path.is_symlink():
        directory = kind in DIRECTORY_KINDS
        if directory and not path.is_dir():
            folder = "run directory" if kind == "run" else "folder"
            raise RunError(f"{name} {path} is a file, not a {folder}: lstmviz will not replace it")
        if not directory and path.is_dir():
            raise RunError(f"{name} {path} is a directory, not a file: lstmviz will not replace it")
        if not replaceable(path, kind):
            raise RunError(
                f"{name} {path} exists and is not {_WHAT[kind]}: lstmviz replaces only what it wrote; "
                f"choose another path or move it away yourself"
            )
        if not overwrite:
            raise RunError(f"{name} {path} already exists (pass {flag} to replace it)")
        if directory and Path(os.getcwd()).is_relative_to(os.path.abspath(path)):
            raise RunError(f"{name} {path} holds the current directory: run lstmviz from outside it to replace it")
    if kind in DIRECTORY_KINDS:
        partial = _partial_dir(path)
        if (partial.exists() or partial.is_symlink()) and not _own_partial(partial, kind):
            raise RunError(
                f"{partial} is in the way of {name} {path} and is not an interrupted lstmviz output: "
                f"move it away yourself"
            )
    else:
        if not path.parent.is_dir():
            raise RunError(f"{name} {path}: the directory {path.parent} does not exist")
    _check_writable(_existing_ancestor(path.parent), name, path)


def _own_partial(partial: Path, kind: str) -> bool:
    """Is ``partial`` an interrupted output of ``kind``: marked so, or a run partial from before the marker?"""
    if not partial.is_dir() or partial.is_symlink():
        return False
    if _marker_kind(partial) is not None:
        return _marker_kind(partial) == kind
    names = {p.name for p in partial.iterdir()}
    return kind == "run" and "spill" in names and names <= _LEGACY_RUN_PARTIAL


def _partial_dir(path: Path) -> Path:
    path = Path(os.path.abspath(path))  # "." and "runs/.." have a name only once made absolute
    return path.with_name(path.name + ".partial")


def _existing_ancestor(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists():
        path = path.parent
    return path


def _check_writable(directory: Path, name: str, path: Path) -> None:
    """Create and remove a probe file in ``directory``: the one test of writability that does not guess."""
    if not directory.is_dir():
        raise RunError(f"{name} {path}: {directory} is a file, not a directory")
    try:
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".lstmviz-probe-")
    except OSError as e:
        raise RunError(f"{name} {path}: cannot write in {directory} ({e.strerror or type(e).__name__})") from None
    os.close(fd)
    os.unlink(probe)


class Output:
    """One output being written: ``partial`` (a directory or file beside ``target``) until :meth:`publish`.

    Usage::

        out = Output(target, "lstmvis", overwrite)     # checks, then creates the partial
        try:
            ...write into out.partial...
            out.publish(finish=lambda final: write_last_file(final))
        except BaseException:
            out.discard()
            raise

    or ``with Output(...) as out: …; out.publish()`` (an exception, or leaving without publishing, discards).
    """

    def __init__(
        self,
        target: str | os.PathLike,
        kind: str,
        overwrite: bool = False,
        *,
        name: str = "output",
        flag: str = "overwrite=True",
    ):
        self.target = Path(os.path.abspath(target))  # siblings of "." or "runs/.." need the name it stands for
        self.kind = kind
        self.overwrite = overwrite
        self._words = (name, flag)
        check_target(self.target, kind, overwrite, name=name, flag=flag)
        self._made: list[Path] = []  # parent directories created here, removed again by discard()
        parent = self.target.parent
        missing = []
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        for d in reversed(missing):
            d.mkdir()
            self._made.append(d)
        if kind in DIRECTORY_KINDS:
            self.partial = _partial_dir(self.target)
            if self.partial.exists():
                shutil.rmtree(self.partial)  # an interrupted output of this kind (checked above): start over
            self.partial.mkdir()
            (self.partial / MARKER).write_text(json.dumps({"written_by": "lstmviz", "kind": kind}) + "\n")
        else:
            fd, name_ = tempfile.mkstemp(dir=self.target.parent, prefix=f".{self.target.name}.", suffix=".partial")
            os.close(fd)
            self.partial = Path(name_)
        self.published = False

    def publish(self, finish: Callable[[Path], None] | None = None) -> Path:
        """Move ``partial`` to ``target`` (replacing what is there, checked again now), then call
        ``finish(target)``. On any failure the old target is back in place and ``partial`` still exists."""
        target, partial = self.target, self.partial
        if target.exists() or target.is_symlink():
            check_target(target, self.kind, self.overwrite, name=self._words[0], flag=self._words[1])
        if self.kind in FILE_KINDS:
            os.replace(partial, target)  # atomic for a file: the old one is whole until the new one is
            self.published = True
            return target
        aside = None
        if target.exists() or target.is_symlink():
            aside = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.replaced-"))
            os.rename(target, aside / target.name)
        try:
            os.rename(partial, target)
            try:
                if finish is not None:
                    finish(target)
            except BaseException:
                os.rename(target, partial)
                raise
        except BaseException:
            if aside is not None:
                os.rename(aside / target.name, target)
                aside.rmdir()
            raise
        self.published = True
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
        return target

    def discard(self) -> None:
        """Remove ``partial`` and the parent directories this output created (when empty); idempotent."""
        if self.published:
            return
        if self.partial.is_dir() and not self.partial.is_symlink():
            shutil.rmtree(self.partial, ignore_errors=True)
        else:
            self.partial.unlink(missing_ok=True)
        for d in reversed(self._made):
            try:
                d.rmdir()
            except OSError:
                break
        self._made = []

    def __enter__(self) -> Output:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.discard()


def write_json_atomically(path: Path, value: object) -> None:
    """Write ``value`` as JSON to ``path`` through a temporary file in the same directory and ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(value, f, indent=1, default=str)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
