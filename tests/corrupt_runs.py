"""Broken copies of a good run, one per kind of corruption, for the suites that must refuse them.

Usage (any test, including the dashboard's)::

    from corrupt_runs import CASES, make_corrupt_runs

    @pytest.fixture(scope="session")
    def corrupt(tiny_run, tmp_path_factory):
        return make_corrupt_runs(tiny_run.path, tmp_path_factory.mktemp("corrupt"))

    @pytest.mark.parametrize("case", CASES)
    def test_refused(corrupt, case):
        path, fragment = corrupt[case]
        with pytest.raises(RunError, match=re.escape(fragment)):
            open_run(path)

``good`` must be a run as ``record_corpus`` writes it (``model.modules`` and stats included), with at least two
activations: the ``tiny_run`` fixture of tests/conftest.py (600 tokens, 12 activations of 8 units) is one. Each
case is a folder ``dest/<case>`` that differs from ``good`` by exactly one defect, and ``fragment`` is a piece of
the one-line :class:`~lstmviz.store.RunError` that ``open_run`` raises for it. Only ``dest`` is written (besides the
case folders, two plain files there are the targets that the path-escape cases point at); ``good`` is left as it
was. :data:`CASES` names every case without building any.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


class CorruptRun(NamedTuple):
    """A broken run folder and a fragment of the RunError message that ``open_run`` must raise for it."""

    path: Path
    message: str


Mutation = Callable[[Path, dict], None]
"""Breaks one thing in a copied run folder, given its manifest as loaded; manifest edits are written back."""


def make_corrupt_runs(good: Path, dest: Path) -> dict[str, CorruptRun]:
    """Build ``dest/<case>`` for every name in :data:`CASES`; returns case name → :class:`CorruptRun`."""
    good, dest = Path(good), Path(dest)
    manifest = json.loads((good / "manifest.json").read_text())
    if len(manifest["activations"]) < 2:
        raise ValueError(f"{good} has {len(manifest['activations'])} activations; the cases need at least 2")
    dest.mkdir(parents=True, exist_ok=True)
    out = {}
    for case, (mutate, message) in _cases(good, manifest).items():
        run = dest / case
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(good, run, ignore=shutil.ignore_patterns("cache"))
        mutate(run, json.loads((run / "manifest.json").read_text()))
        out[case] = CorruptRun(run, message)
    return out


def _cases(good: Path, manifest: dict) -> dict[str, tuple[Mutation, str]]:
    """case name → (mutation, message fragment), the fragments filled in from the good run's manifest."""
    acts = manifest["activations"]
    n, first, second = manifest["n_tokens"], acts[0], acts[1]
    a0 = first["file"]
    cases: dict[str, tuple[Mutation, str]] = {
        # top-level manifest fields
        "manifest_not_json": (lambda r, m: _text(r / "manifest.json", "{not json"), "manifest.json is corrupt"),
        "manifest_not_utf8": (lambda r, m: (r / "manifest.json").write_bytes(b"\xff\xfe{}"), "is corrupt"),
        "manifest_empty": (lambda r, m: _text(r / "manifest.json", ""), "manifest.json is corrupt"),
        "manifest_is_a_list": (lambda r, m: _text(r / "manifest.json", "[1, 2]"), "must hold a JSON object"),
        "manifest_is_a_directory": (_manifest_dir, "manifest.json is unreadable"),
        "not_complete": (_set(complete=False), "incomplete run"),
        "complete_is_a_string": (_set(complete="yes"), "field complete must be true, got 'yes'"),
        "schema_version_string": (_set(schema_version="1"), "schema_version must be the integer 1, got '1'"),
        "schema_version_3": (_set(schema_version=3), "run format version 3; this lstmviz reads versions 1, 2"),
        "schema_version_missing": (_drop("schema_version"), "has no schema_version"),
        "n_tokens_missing": (_drop("n_tokens"), "lacks 'n_tokens'"),
        "n_tokens_string": (_set(n_tokens=str(n)), f"field n_tokens must be an integer, got '{n}'"),
        "n_tokens_float": (_set(n_tokens=float(n)), f"field n_tokens must be an integer, got {float(n)}"),
        "n_tokens_bool": (_set(n_tokens=True), "field n_tokens must be an integer, got True"),
        "n_tokens_nan": (_set(n_tokens=float("nan")), "field n_tokens must be an integer, got nan"),
        "n_tokens_huge": (_set(n_tokens=10**20), f"tokens.parquet has {n} rows but n_tokens is {10**20}"),
        "n_tokens_negative": (_set(n_tokens=-1), "field n_tokens must not be negative, got -1"),
        "n_tokens_larger": (_set(n_tokens=n + 1), f"tokens.parquet has {n} rows but n_tokens is {n + 1}"),
        "n_tokens_smaller": (_set(n_tokens=n - 1), f"tokens.parquet has {n} rows but n_tokens is {n - 1}"),
        "zero_tokens": (_zero_tokens, "the run has no tokens"),
        "activations_missing": (_drop("activations"), "lacks 'activations'"),
        "activations_not_a_list": (_set(activations={"a": 1}), "field activations must be a list"),
        "model_not_a_mapping": (_set(model="LSTM"), "field model must be a mapping, got 'LSTM'"),
        "activations_emptied": (_set(activations=[]), "stats.parquet has"),
        "model_params_string": (_set_in("model", params="1,268"), "field model.params must be an integer, got '1,268'"),
        "model_modules_not_a_list": (_set_in("model", modules={"rnn": 1}), "field model.modules must be a list"),
        "model_module_lacks_a_field": (_module_without("hidden_size"), "model.modules[0] lacks 'hidden_size'"),
        "model_module_wrong_type": (_module_with(num_layers="2"), "modules[0] field num_layers must be an integer"),
        "metrics_not_a_mapping": (_set_in("model_source", metrics=[1]), "field model_source.metrics must be a mapping"),
        "vocab_not_a_list": (_set_in("tokenizer", vocab="abc"), "field tokenizer.vocab must be a list, got 'abc'"),
        "stats_low_string": (_set_in("stats", low="0.1"), "field stats.low must be a number, got '0.1'"),
        "stats_hist_bins_float": (_set_in("stats", hist_bins=32.5), "field stats.hist_bins must be an integer"),
        "tokenizer_not_a_mapping": (_set(tokenizer=[1]), "field tokenizer must be a mapping"),
        "recording_not_a_mapping": (_set(recording=3), "field recording must be a mapping"),
        "stats_entry_not_a_mapping": (_set(stats="stats.parquet"), "field stats must be a mapping"),
        "stats_file_escapes": (_stats_file("../stats.parquet"), "points outside the run directory"),
        # one activation entry
        "entry_not_a_mapping": (_entry(0, lambda e: "rnn"), "activations[0] must be a mapping"),
        "entry_without_units": (_entry(0, _without("units")), "activations[0] (" + first["name"] + ") lacks 'units'"),
        "entry_without_name": (_entry(0, _without("name")), "activations[0] lacks 'name'"),
        "entry_without_file": (_entry(0, _without("file")), "lacks 'file'"),
        "entry_without_kind": (_entry(0, _without("kind")), "lacks 'kind'"),
        "units_string": (_entry(0, _with(units="8")), "field units must be a positive integer, got '8'"),
        "units_float": (_entry(0, _with(units=8.0)), "field units must be a positive integer, got 8.0"),
        "units_bool": (_entry(0, _with(units=True)), "field units must be a positive integer, got True"),
        "units_zero": (_entry(0, _with(units=0)), "field units must be a positive integer, got 0"),
        "units_negative": (_entry(0, _with(units=-8)), "field units must be a positive integer, got -8"),
        "units_fewer_than_columns": (_entry(0, _with(units=first["units"] - 1)), f"but units is {first['units'] - 1}"),
        "units_more_than_columns": (_entry(0, _with(units=first["units"] + 1)), f"but units is {first['units'] + 1}"),
        "name_not_a_string": (_entry(0, _with(name=7)), "field name must be a string, got 7"),
        "name_malformed": (_entry(0, _with(name="bogus")), "is not of the form module.l<layer>"),
        "name_with_slash": (_entry(0, _with(name="a/b.l0.fwd.i", module="a/b")), "must not hold '/'"),
        "name_with_newline": (_entry(0, _with(name="rnn\n.l0.fwd.i", module="rnn\n")), "must not hold '/'"),
        "name_duplicated": (_entry(1, lambda e: dict(first)), f"{first['name']} is listed twice"),
        "module_disagrees": (_entry(0, _with(module="other")), "module is 'other' but the name says"),
        "layer_disagrees": (_entry(0, _with(layer=first["layer"] + 5)), "layer is"),
        "layer_string": (_entry(0, _with(layer=str(first["layer"]))), "field layer must be an integer"),
        "dir_disagrees": (_entry(0, _with(dir="rev" if first["dir"] == "fwd" else "fwd")), "but the name says"),
        "kind_disagrees": (_entry(0, _with(kind="zz")), "kind is 'zz' but the name says"),
        "dtype_not_a_string": (_entry(0, _with(dtype=16)), "field dtype must be a string, got 16"),
        "file_not_a_string": (_entry(0, _with(file=["acts"])), "field file must be a relative path"),
        "file_escapes": (_escape, "points outside the run directory"),
        "file_absolute": (_entry(0, lambda e: {**e, "file": str((good / a0).resolve())}), "points outside the run"),
        "file_nul_byte": (_entry(0, _with(file="acts/x\x00.parquet")), "is not a usable path"),
        # the files themselves
        "act_file_absent": (lambda r, m: (r / a0).unlink(), f"missing {a0}"),
        "act_file_empty": (lambda r, m: _text(r / a0, ""), f"{a0} is empty (0 bytes)"),
        "act_file_not_parquet": (lambda r, m: _text(r / a0, "u0000\n0.5\n"), f"{a0} is not a readable parquet"),
        "act_file_a_directory": (_act_dir, f"{a0} is not a file"),
        "act_file_short": (_rows(a0, n - 1), f"{a0} has {n - 1} rows but n_tokens is {n}"),
        "act_file_long": (_rows(a0, n + 1), f"{a0} has {n + 1} rows but n_tokens is {n}"),
        "act_second_file_short": (_rows(second["file"], n // 2), f"{second['file']} has {n // 2} rows"),
        "act_column_renamed": (_rename_column(a0), "column 0 is 'x0000'; the columns must be u0000…"),
        "file_is_the_tokens_table": (_entry(0, _with(file="tokens.parquet")), "tokens.parquet column"),
        "act_column_not_float": (_string_column(a0), "column u0000 holds string values, not floats"),
        "tokens_absent": (lambda r, m: (r / "tokens.parquet").unlink(), "missing tokens.parquet"),
        "tokens_empty": (lambda r, m: _text(r / "tokens.parquet", ""), "tokens.parquet is empty (0 bytes)"),
        "tokens_not_parquet": (lambda r, m: _text(r / "tokens.parquet", "idx,token\n"), "not a readable parquet"),
        "tokens_short": (_rows("tokens.parquet", n - 3), f"tokens.parquet has {n - 3} rows but n_tokens is {n}"),
        "tokens_lack_a_column": (_drop_column("tokens.parquet", "token"), "tokens.parquet lacks columns ['token']"),
        "tokens_column_not_text": (_cast("tokens.parquet", "token", pa.int64()), "column token holds int64 values"),
        "tokens_doc_not_integer": (_cast("tokens.parquet", "doc", pa.string()), "column doc holds string values"),
        "stats_absent": (lambda r, m: (r / "stats.parquet").unlink(), "missing stats.parquet"),
        "stats_empty": (lambda r, m: _text(r / "stats.parquet", ""), "stats.parquet is empty (0 bytes)"),
        "stats_not_parquet": (lambda r, m: _text(r / "stats.parquet", "name,unit\n"), "not a readable parquet"),
        "stats_rows_missing": (_drop_stats(second["name"]), f"stats.parquet has no rows for {second['name']}"),
        "stats_rows_extra": (_double_stats, "stats.parquet has"),
        "stats_lack_a_column": (_drop_column("stats.parquet", "mean"), "stats.parquet lacks columns ['mean']"),
    }
    return cases


# ---------------------------------------------------------------------------------------------- mutations


def _text(path: Path, text: str) -> None:
    path.write_text(text)


def _save(run: Path, m: dict) -> None:
    (run / "manifest.json").write_text(json.dumps(m, indent=1))


def _set(**fields) -> Mutation:
    return lambda run, m: _save(run, {**m, **fields})


def _set_in(outer: str, **fields) -> Mutation:
    return lambda run, m: _save(run, {**m, outer: {**m.get(outer, {}), **fields}})


def _module_with(**fields) -> Mutation:
    def mutate(run: Path, m: dict) -> None:
        m["model"]["modules"][0].update(fields)
        _save(run, m)

    return mutate


def _module_without(key: str) -> Mutation:
    def mutate(run: Path, m: dict) -> None:
        del m["model"]["modules"][0][key]
        _save(run, m)

    return mutate


def _drop(key: str) -> Mutation:
    return lambda run, m: _save(run, {k: v for k, v in m.items() if k != key})


def _entry(i: int, change: Callable[[dict], object]) -> Mutation:
    def mutate(run: Path, m: dict) -> None:
        m["activations"][i] = change(m["activations"][i])
        _save(run, m)

    return mutate


def _with(**fields) -> Callable[[dict], dict]:
    return lambda e: {**e, **fields}


def _without(key: str) -> Callable[[dict], dict]:
    return lambda e: {k: v for k, v in e.items() if k != key}


def _stats_file(file: str) -> Mutation:
    def mutate(run: Path, m: dict) -> None:
        shutil.copy(run / "stats.parquet", run.parent / Path(file).name)  # the target exists: only the path is wrong
        _save(run, {**m, "stats": {**m["stats"], "file": file}})

    return mutate


def _escape(run: Path, m: dict) -> None:
    """Point the first activation at a valid copy of its file one level above the run."""
    entry = m["activations"][0]
    shutil.copy(run / entry["file"], run.parent / "outside.parquet")
    entry["file"] = "../outside.parquet"
    _save(run, m)


def _manifest_dir(run: Path, m: dict) -> None:
    (run / "manifest.json").unlink()
    (run / "manifest.json").mkdir()


def _act_dir(run: Path, m: dict) -> None:
    file = run / m["activations"][0]["file"]
    file.unlink()
    file.mkdir()


def _rewrite(file: str, change: Callable[[pa.Table], pa.Table]) -> Mutation:
    def mutate(run: Path, m: dict) -> None:
        pq.write_table(change(pq.read_table(run / file)), run / file)

    return mutate


def _rows(file: str, rows: int) -> Mutation:
    """Keep the first ``rows`` rows, or repeat the last row to reach ``rows``."""

    def change(t: pa.Table) -> pa.Table:
        return t.slice(0, rows) if rows <= len(t) else pa.concat_tables([t] + [t.slice(len(t) - 1)] * (rows - len(t)))

    return _rewrite(file, change)


def _rename_column(file: str) -> Mutation:
    return _rewrite(file, lambda t: t.rename_columns(["x" + c[1:] for c in t.column_names]))


def _string_column(file: str) -> Mutation:
    return _rewrite(file, lambda t: t.set_column(0, t.column_names[0], pc.cast(t.column(0), pa.string())))


def _cast(file: str, column: str, kind: pa.DataType) -> Mutation:
    def change(t: pa.Table) -> pa.Table:
        i = t.column_names.index(column)
        values = pc.cast(pc.utf8_length(t.column(i)), kind) if kind == pa.int64() else pc.cast(t.column(i), kind)
        return t.set_column(i, column, values)

    return _rewrite(file, change)


def _drop_column(file: str, column: str) -> Mutation:
    return _rewrite(file, lambda t: t.drop_columns([column]))


def _drop_stats(name: str) -> Mutation:
    return _rewrite("stats.parquet", lambda t: t.filter(pc.not_equal(t["name"], name)))


def _double_stats(run: Path, m: dict) -> None:
    _rewrite("stats.parquet", lambda t: pa.concat_tables([t, t.slice(0, 1)]))(run, m)


def _zero_tokens(run: Path, m: dict) -> None:
    """A run of 0 tokens, consistent in itself: every file has 0 rows and n_tokens says 0."""
    for file in ["tokens.parquet"] + [a["file"] for a in m["activations"]]:
        _rows(file, 0)(run, m)
    _save(run, {**m, "n_tokens": 0})


_SHAPE = {"n_tokens": 2, "activations": [{"name": "m.l0.fwd.h", "layer": 0, "dir": "fwd", "units": 1, "file": "f"}] * 2}
CASES: tuple[str, ...] = tuple(_cases(Path("good"), _SHAPE))
"""Every case name, known without a run (for ``pytest.mark.parametrize``)."""
