"""Checks that a run directory is what its manifest says, before anything reads it.

:func:`check_run` reads only ``manifest.json`` (already parsed) and the parquet footers of the listed files, so
opening a run stays cheap however many tokens it holds, yet a run that would show wrong data or crash a reader
later (a short activation file, a units count that disagrees with the columns, a path that leaves the run
directory) is refused at once with one :class:`~lstmviz.store.RunError` naming the first problem found.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from . import names as _names
from .store import SCHEMA_VERSION, TOKEN_COLUMNS, RunError, unit_columns

MAPPING_FIELDS = ("model", "model_source", "recording", "tokenizer", "corpus", "annotations", "source", "stats")
"""Optional top-level manifest fields that readers use as mappings."""

ENTRY_FIELDS = ("name", "module", "layer", "dir", "kind", "units", "file")
"""The fields every activation entry must have."""


def check_version(p: Path, manifest: dict) -> None:
    """Refuse a manifest of another format version, naming what it holds."""
    if "schema_version" not in manifest:
        raise RunError(f"{p} is corrupt: its manifest.json has no schema_version")
    version = manifest["schema_version"]
    if not _is_int(version):
        raise RunError(
            f"{p} is corrupt: manifest.json field schema_version must be the integer {SCHEMA_VERSION}, "
            f"got {version!r} ({_type(version)})"
        )
    if version != SCHEMA_VERSION:
        raise RunError(f"{p} has run format version {version}; this lstmviz reads version {SCHEMA_VERSION}")


def check_run(p: Path, manifest: dict) -> dict[str, pq.FileMetaData]:
    """Validate a complete manifest of the current version against the files; returns file → parquet footer.

    Raises :class:`RunError` (one line) for the first problem: a missing or ill-typed field, an activation entry
    whose parts disagree with its name, a listed path outside the run, a missing, empty or non-parquet file, a
    file whose row count is not ``n_tokens``, activation columns other than ``u0000…`` for its ``units``, or
    stats rows that do not match the listed activations.
    """

    def corrupt(what: str) -> RunError:
        return RunError(f"{p} is corrupt: {' '.join(what.split())}")

    for key in ("n_tokens", "activations"):
        if key not in manifest:
            raise corrupt(f"manifest.json lacks {key!r}")
    n = manifest["n_tokens"]
    if not _is_int(n):
        raise corrupt(f"manifest.json field n_tokens must be an integer, got {n!r} ({_type(n)})")
    if n < 0:
        raise corrupt(f"manifest.json field n_tokens must not be negative, got {n}")
    if n == 0:
        raise corrupt("the run has no tokens (n_tokens is 0); record or import it again from a non-empty corpus")
    for key in MAPPING_FIELDS:
        if key in manifest and not isinstance(manifest[key], Mapping):
            raise corrupt(f"manifest.json field {key} must be a mapping, got {_short(manifest[key])}")
    acts = manifest["activations"]
    if not isinstance(acts, list):
        raise corrupt(f"manifest.json field activations must be a list, got {_type(acts)}")
    seen: set[str] = set()
    for i, entry in enumerate(acts):
        name = _check_entry(entry, f"activations[{i}]", corrupt)
        if name in seen:
            raise corrupt(f"manifest.json: activation {name} is listed twice")
        seen.add(name)

    footers: dict[str, pq.FileMetaData] = {}

    def footer(file: str, what: str) -> pq.FileMetaData:
        path = p / file
        md = _footer(path, file, corrupt)
        if md.num_rows != n:
            raise corrupt(f"{file} has {md.num_rows} rows but n_tokens is {n}: {what} must have one row per token")
        footers[file] = md
        return md

    schema = footer("tokens.parquet", "the tokens table").schema.to_arrow_schema()
    lacking = [c for c in TOKEN_COLUMNS if c not in schema.names]
    if lacking:
        raise corrupt(f"tokens.parquet lacks columns {lacking}")
    for entry in acts:
        file, units = entry["file"], entry["units"]
        schema = footer(file, f"activation {entry['name']}").schema.to_arrow_schema()
        have, want = schema.names, unit_columns(units)
        if len(have) != units:
            raise corrupt(f"{file} has {len(have)} columns ({_span(have)}) but units is {units}")
        wrong = next((i for i, (a, b) in enumerate(zip(have, want, strict=True)) if a != b), None)
        if wrong is not None:
            raise corrupt(f"{file} column {wrong} is {have[wrong]!r}; the columns must be {_span(want)}")
        for field in schema:
            if not pa.types.is_floating(field.type):
                raise corrupt(f"{file} column {field.name} holds {field.type} values, not floats")
    _check_stats(p, manifest, acts, corrupt)
    return footers


def stats_file(manifest: Mapping) -> str:
    """The stats file named by a checked manifest, relative to the run."""
    return (manifest.get("stats") or {}).get("file", "stats.parquet")


def _check_entry(entry: object, where: str, corrupt) -> str:
    """Check one activation entry; returns its name."""
    if not isinstance(entry, Mapping):
        raise corrupt(f"manifest.json {where} must be a mapping of name, units, file…, got {_short(entry)}")
    if "name" not in entry:
        raise corrupt(f"manifest.json {where} lacks 'name'")
    name = entry["name"]
    if not isinstance(name, str):
        raise corrupt(f"manifest.json {where} field name must be a string, got {_short(name)}")
    where = f"{where} ({name})"
    for key in ENTRY_FIELDS:
        if key not in entry:
            raise corrupt(f"manifest.json {where} lacks {key!r}")
    units = entry["units"]
    if not _is_int(units) or units < 1:
        raise corrupt(f"manifest.json {where} field units must be a positive integer, got {_short(units)}")
    if not _is_int(entry["layer"]):
        raise corrupt(f"manifest.json {where} field layer must be an integer, got {_short(entry['layer'])}")
    for key in ("module", "dir", "kind", "dtype"):
        if key in entry and not isinstance(entry[key], str):
            raise corrupt(f"manifest.json {where} field {key} must be a string, got {_short(entry[key])}")
    try:
        parsed = _names.parse(name)
    except ValueError as e:
        raise corrupt(f"manifest.json {where}: {e}") from None
    said = {
        "module": parsed.module,
        "layer": parsed.layer,
        "dir": parsed.dir,
        "kind": parsed.kind + (_names.GRAD_SUFFIX if parsed.grad else ""),
    }
    for key, value in said.items():
        if entry[key] != value:
            raise corrupt(f"manifest.json {where}: {key} is {entry[key]!r} but the name says {value!r}")
    _check_path(entry["file"], f"{where} field file", corrupt)
    return name


def _check_stats(p: Path, manifest: Mapping, acts: list, corrupt) -> None:
    """stats.parquet, when there are activations, must hold one row per unit of each (row count from the footer)."""
    if "stats" in manifest:
        if "file" not in manifest["stats"]:
            raise corrupt("manifest.json field stats lacks 'file'")
        _check_path(manifest["stats"]["file"], "field stats.file", corrupt)
    file = stats_file(manifest)
    path = p / file
    if not acts and not path.exists():
        return  # a run without activations has no stats to write
    md = _footer(path, file, corrupt)
    lacking = [c for c in ("name", "unit") if c not in md.schema.to_arrow_schema().names]
    if lacking:
        raise corrupt(f"{file} lacks columns {lacking}")
    expected = sum(a["units"] for a in acts)
    if md.num_rows == expected:
        return
    # Only on this error path are the names read, to say which activation's rows are missing.
    have = set(pq.read_table(path, columns=["name"]).column("name").to_pylist())
    missing = [a["name"] for a in acts if a["name"] not in have]
    if missing:
        raise corrupt(f"{file} has no rows for {', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}")
    raise corrupt(f"{file} has {md.num_rows} rows for the {expected} units of the listed activations")


def _footer(path: Path, file: str, corrupt) -> pq.FileMetaData:
    """The parquet footer of a listed file, or the RunError that says why there is none."""
    if not path.exists():
        raise corrupt(f"missing {file}")
    if not path.is_file():
        raise corrupt(f"{file} is not a file")
    if path.stat().st_size == 0:
        raise corrupt(f"{file} is empty (0 bytes)")
    try:
        return pq.read_metadata(path)
    except (OSError, pa.ArrowException) as e:
        raise corrupt(f"{file} is not a readable parquet file ({e})") from None


def _check_path(file: object, where: str, corrupt) -> None:
    """A listed file must be a relative path that stays inside the run directory (symlinks inside are fine)."""
    if not isinstance(file, str) or not file:
        raise corrupt(f"manifest.json {where} must be a relative path inside the run, got {_short(file)}")
    if "\x00" in file:
        raise corrupt(f"manifest.json {where} {file!r} is not a usable path (it holds a NUL byte)")
    norm = os.path.normpath(file)
    if os.path.isabs(file) or norm == ".." or norm.startswith(".." + os.sep):
        raise corrupt(f"manifest.json {where} {file!r} points outside the run directory")


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _type(x: object) -> str:
    return {str: "a string", float: "a float", bool: "a boolean", list: "a list", dict: "a mapping"}.get(
        type(x), type(x).__name__
    )


def _short(x: object, limit: int = 60) -> str:
    r = repr(x)
    return r if len(r) <= limit else r[: limit - 1] + "…"


def _span(columns: list[str]) -> str:
    """``"u0000…u0007"``: a column list, briefly."""
    if not columns:
        return "none"
    if len(columns) <= 2:
        return ", ".join(columns)
    return f"{columns[0]}…{columns[-1]}"
