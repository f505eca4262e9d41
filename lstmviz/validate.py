"""Checks that a run directory is what its manifest says, before anything reads it.

:func:`check_run` reads only ``manifest.json`` (already parsed) and the parquet footers of the listed files, never
their values (bench/open_run.py measures what that costs), yet a run that would show wrong data or crash a reader
later (a short activation file, a units count that disagrees with the columns, a path that leaves the run
directory) is refused at once with one :class:`~lstmviz.store.RunError` naming the first problem found.
:func:`unit_ids` does the same for the units a caller asks :meth:`~lstmviz.store.Run.activations` for.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import names as _names
from . import shards as _shards
from .errors import RunError
from .layout import SCHEMA_VERSION, TOKEN_COLUMNS, unit_columns
from .location import AnyPath, read_metadata, read_table

MAPPING_FIELDS = (
    "model",
    "model_source",
    "recording",
    "tokenizer",
    "corpus",
    "annotations",
    "source",
    "stats",
    "tokens",
)
"""Optional top-level manifest fields that readers use as mappings."""

NESTED_FIELDS: dict[tuple[str, str], tuple[type | tuple[type, ...], str]] = {
    ("model", "params"): (int, "an integer"),
    ("model", "modules"): (list, "a list"),
    ("model_source", "params"): (int, "an integer"),  # older runs repeat model.params here; still read
    ("model_source", "metrics"): (Mapping, "a mapping"),
    ("tokenizer", "vocab"): (list, "a list"),
    ("stats", "low"): ((int, float), "a number"),
    ("stats", "high"): ((int, float), "a number"),
    ("stats", "hist_bins"): (int, "an integer"),
}
"""Optional fields inside those mappings that readers format or compute with: (mapping, key) → type."""

MODULE_FIELDS = {"path": str, "cell": str, "num_layers": int, "hidden_size": int}
"""The fields of each ``model.modules`` entry that readers show."""

ENTRY_FIELDS = ("name", "module", "layer", "dir", "kind", "units", "file")
"""The fields every activation entry must have."""

STATS_COLUMNS = ("name", "unit", "count", "mean", "std", "min", "max", "n_low", "n_high")
"""The stats.parquet columns that readers use."""

READ_VERSIONS = (SCHEMA_VERSION, _shards.SHARDED_VERSION)
"""Version 2 is version 1 plus shards (docs/FORMAT.md): an unsharded run reads the same in both."""

Corrupt = Callable[[str], RunError]
"""Builds the RunError "<run> is corrupt: <what>" of the run being checked."""


def check_version(p: AnyPath, manifest: dict) -> None:
    """Refuse a manifest of another format version, naming what it holds."""
    if "schema_version" not in manifest:
        raise RunError(f"{p} is corrupt: its manifest.json has no schema_version")
    version = manifest["schema_version"]
    if not is_index(version):
        raise RunError(
            f"{p} is corrupt: manifest.json field schema_version must be the integer {SCHEMA_VERSION}, "
            f"got {version!r} ({_type(version)})"
        )
    if version not in READ_VERSIONS:
        raise RunError(
            f"{p} has run format version {version}; this lstmviz reads versions {', '.join(map(str, READ_VERSIONS))}"
        )


def check_run(p: AnyPath, manifest: dict) -> None:
    """Validate a complete manifest of the current version against the parquet footers of the files it lists.

    Each footer is dropped once checked, not kept for later reads: held in memory, a footer costs in proportion
    to its row groups × columns (some 30 MB for a 1M-token × 512-unit file).

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
    if not is_index(n):
        raise corrupt(f"manifest.json field n_tokens must be an integer, got {n!r} ({_type(n)})")
    if n < 0:
        raise corrupt(f"manifest.json field n_tokens must not be negative, got {n}")
    if n == 0:
        raise corrupt("the run has no tokens (n_tokens is 0); record or import it again from a non-empty corpus")
    _check_optional_fields(manifest, corrupt)
    acts = manifest["activations"]
    if not isinstance(acts, list):
        raise corrupt(f"manifest.json field activations must be a list, got {_type(acts)}")
    seen: set[str] = set()
    for i, entry in enumerate(acts):
        name = _check_entry(entry, f"activations[{i}]", corrupt)
        if name in seen:
            raise corrupt(f"manifest.json: activation {name} is listed twice")
        seen.add(name)

    bounds = _shards.check_shards(manifest, n, corrupt)

    def footer(file: str, what: str) -> pq.FileMetaData:
        if not _shards.is_glob(file):
            md = _footer(p / file, file, corrupt)
            if md.num_rows != n:
                raise corrupt(f"{file} has {md.num_rows} rows but n_tokens is {n}: {what} must have one row per token")
            return md
        return _part_footers(p, file, what, bounds, corrupt)

    tokens = _shards.tokens_file(manifest)
    _check_path(tokens, "field tokens.file", corrupt)
    schema = footer(tokens, "the tokens table").schema.to_arrow_schema()
    lacking = [c for c in TOKEN_COLUMNS if c not in schema.names]
    if lacking:
        raise corrupt(f"{tokens} lacks columns {lacking}")
    for column in TOKEN_COLUMNS:
        kind = schema.field(column).type
        ok = _is_text(kind) if column == "token" else pa.types.is_integer(kind)
        if not ok:
            want = "strings" if column == "token" else "integers"
            raise corrupt(f"{tokens} column {column} holds {kind} values, not {want}")
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


def _part_footers(
    p: AnyPath, file: str, what: str, bounds: list[tuple[int, int]] | None, corrupt: Corrupt
) -> pq.FileMetaData:
    """The footers of a glob's parts: one per shard, each with its shard's rows and the first part's schema;
    returns the first."""
    if bounds is None:
        raise corrupt(f"{file} is a glob, but the manifest lists no recording.shards")
    parts = _shards.expand(p, file)
    if len(parts) != len(bounds):
        raise corrupt(f"{file} matches {len(parts)} parts but the run has {len(bounds)} shards")
    first = None
    for part, (a, b) in zip(parts, bounds, strict=True):
        md = _footer(p / part, part, corrupt)
        if md.num_rows != b - a:
            raise corrupt(f"{part} has {md.num_rows} rows but its shard is tokens [{a}, {b}): {what} is short")
        if first is None:
            first = md
        elif not md.schema.to_arrow_schema().equals(first.schema.to_arrow_schema()):
            raise corrupt(f"{part} has other columns than {parts[0]}: the parts of {what} must share one schema")
    return first


def _check_optional_fields(manifest: Mapping, corrupt: Corrupt) -> None:
    """The optional mappings, and the typed fields inside them, when present."""
    for key in MAPPING_FIELDS:
        if key in manifest and not isinstance(manifest[key], Mapping):
            raise corrupt(f"manifest.json field {key} must be a mapping, got {_short(manifest[key])}")
    for (outer, key), (kind, words) in NESTED_FIELDS.items():
        value = (manifest.get(outer) or {}).get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise corrupt(f"manifest.json field {outer}.{key} must be {words}, got {_short(value)}")
    for i, module in enumerate((manifest.get("model") or {}).get("modules") or []):
        where = f"model.modules[{i}]"
        if not isinstance(module, Mapping):
            raise corrupt(f"manifest.json {where} must be a mapping, got {_short(module)}")
        for key, kind in MODULE_FIELDS.items():
            if key not in module:
                raise corrupt(f"manifest.json {where} lacks {key!r}")
            if not isinstance(module[key], kind) or isinstance(module[key], bool):
                raise corrupt(
                    f"manifest.json {where} field {key} must be {_type_name(kind)}, got {_short(module[key])}"
                )


def stats_file(manifest: Mapping) -> str:
    """The stats file named by a checked manifest, relative to the run."""
    return (manifest.get("stats") or {}).get("file", "stats.parquet")


def _check_entry(entry: object, where: str, corrupt: Corrupt) -> str:
    """Check one activation entry; returns its name."""
    if not isinstance(entry, Mapping):
        raise corrupt(f"manifest.json {where} must be a mapping of name, units, file…, got {_short(entry)}")
    if "name" not in entry:
        raise corrupt(f"manifest.json {where} lacks 'name'")
    name = entry["name"]
    if not isinstance(name, str):
        raise corrupt(f"manifest.json {where} field name must be a string, got {_short(name)}")
    if any(c in name for c in "/\\\x00") or any(not c.isprintable() for c in name):
        # names become file names under acts/ and cache/: they must not reach outside them
        raise corrupt(f"manifest.json {where} field name {name!r} must not hold '/', '\\' or control characters")
    where = f"{where} ({name})"
    for key in ENTRY_FIELDS:
        if key not in entry:
            raise corrupt(f"manifest.json {where} lacks {key!r}")
    units = entry["units"]
    if not is_index(units) or units < 1:
        raise corrupt(f"manifest.json {where} field units must be a positive integer, got {_short(units)}")
    if not is_index(entry["layer"]):
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


def _check_stats(p: AnyPath, manifest: Mapping, acts: list, corrupt: Corrupt) -> None:
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
    lacking = [c for c in STATS_COLUMNS if c not in md.schema.to_arrow_schema().names]
    if lacking:
        raise corrupt(f"{file} lacks columns {lacking}")
    expected = sum(a["units"] for a in acts)
    if md.num_rows == expected:
        return
    # Only on this error path are the names read, to say which activation's rows are missing.
    have = set(read_table(path, columns=["name"]).column("name").to_pylist())
    missing = [a["name"] for a in acts if a["name"] not in have]
    if missing:
        raise corrupt(f"{file} has no rows for {', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}")
    raise corrupt(f"{file} has {md.num_rows} rows for the {expected} units of the listed activations")


def is_index(x: object) -> bool:
    """An integer (Python or numpy) that is not a bool."""
    return isinstance(x, int | np.integer) and not isinstance(x, bool | np.bool_)


def unit_ids(units: object, n_units: int, name: str) -> np.ndarray:
    """``units`` as given to :meth:`~lstmviz.store.Run.activations` → int64 ids ``[k]``.

    Refuses, with a RunError, anything but integer ids in ``[0, n_units)`` or a boolean mask of ``n_units``.
    """
    if is_index(units):
        array = np.asarray([units], np.int64)
    elif isinstance(units, np.ndarray) or hasattr(units, "__array__"):  # numpy, pandas, torch
        array = np.asarray(units)
    elif isinstance(units, Sequence) and not isinstance(units, str | bytes):
        items = list(units)
        if items and all(isinstance(u, bool | np.bool_) for u in items):
            array = np.asarray(items, bool)
        else:
            bad = [u for u in items if not is_index(u)]  # a bool among ids is not an id
            if bad:
                raise RunError(f"units of {name} must be integer unit ids, got {_brief(bad[0])}")
            array = np.asarray(items, np.int64)
    else:
        raise RunError(f"units of {name} must be unit ids or a boolean mask, got {_brief(units)}")
    if array.ndim == 0:  # a numpy or torch scalar: one id, if it is an integer
        if array.dtype.kind not in "iu":
            raise RunError(f"units of {name} must be unit ids or a boolean mask, got {_brief(units)}")
        array = array.reshape(1)
    if array.ndim != 1:
        raise RunError(f"units of {name} must be 1-D, got an array of shape {list(array.shape)}")
    if array.dtype == bool:
        if len(array) != n_units:
            raise RunError(f"a boolean mask over the units of {name} needs {n_units} entries, got {len(array)}")
        return np.flatnonzero(array)
    if array.dtype.kind not in "iu" and array.size:
        raise RunError(f"units of {name} must be integer unit ids, got an array of {array.dtype}")
    ids = array.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= n_units):
        bad = ids[(ids < 0) | (ids >= n_units)]
        raise RunError(f"{name} has units 0…{n_units - 1}; asked for {', '.join(map(str, bad[:3]))}")
    return ids


def _brief(x: object) -> str:
    return f"{_short(x, 40)} ({type(x).__name__})"


def _footer(path: AnyPath, file: str, corrupt: Corrupt) -> pq.FileMetaData:
    """The parquet footer of a listed file, or the RunError that says why there is none."""
    if not path.exists():
        raise corrupt(f"missing {file}")
    if not path.is_file():
        raise corrupt(f"{file} is not a file")
    if path.stat().st_size == 0:
        raise corrupt(f"{file} is empty (0 bytes)")
    try:
        return read_metadata(path)
    except (OSError, pa.ArrowException) as e:
        raise corrupt(f"{file} is not a readable parquet file ({e})") from None


def _check_path(file: object, where: str, corrupt: Corrupt) -> None:
    """A listed file must be a relative path that stays inside the run directory (symlinks inside are fine)."""
    if not isinstance(file, str) or not file:
        raise corrupt(f"manifest.json {where} must be a relative path inside the run, got {_short(file)}")
    if "\x00" in file:
        raise corrupt(f"manifest.json {where} {file!r} is not a usable path (it holds a NUL byte)")
    norm = os.path.normpath(file)
    if os.path.isabs(file) or norm == ".." or norm.startswith(".." + os.sep):
        raise corrupt(f"manifest.json {where} {file!r} points outside the run directory")


def _is_text(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _type_name(kind: type) -> str:
    return {str: "a string", int: "an integer"}[kind]


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
