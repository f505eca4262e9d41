"""Export an lstmviz run as an LSTMVis project folder (the folder's format: :mod:`lstmviz.interop.lstmvis_format`).

Export writes h, c and every gate of a run as state types (LSTMVis layer = lstmviz layer + 1), and the token
columns as meta tracks. LSTMVis 2.1 shows the tanh of every state dataset, so an activation whose values all lie
in [-1, 1] (h, gates) is written as its atanh, and LSTMVis shows exactly lstmviz's values; an unbounded one (c)
is written as it is, and LSTMVis shows its tanh, as for its own projects. No file LSTMVis reads can make it show
a value beyond ±1.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import names as _names
from ..outputs import Output
from ..store import TOKEN_COLUMNS, Run, RunError, open_run
from .lstmvis_format import CHUNK, REV, TYPE_OF_KIND, VALUES, load_h5py, shown_as, write_dict
from .tables import flat_columns

MAX_CATEGORIES = 64
"""A non-negative int column with more distinct values than this is a scalar meta track, not a discrete one
(LSTMVis colours 20 categories, then shades of grey)."""


def export_lstmvis(
    run_or_path: Run | str | os.PathLike,
    folder: str | os.PathLike,
    *,
    names: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``run_or_path`` as an LSTMVis project: lstm.yml, states.h5, train.h5, words.dict (meta.h5).

    ``names`` defaults to every activation except gradients. Each becomes a float32 ``[T, units]`` dataset in
    states.h5 named like the activation, with type ``state`` (c), ``output`` (h) or the gate's name, LSTMVis
    layer = lstmviz layer + 1, and ``_rev`` appended for reverse directions. An activation within [-1, 1] is
    stored as its atanh (``lstmviz_values: atanh``), so LSTMVis, which shows tanh of every state, shows it
    exactly; others, like c, are stored as they are (``lstmviz_values: raw``) and LSTMVis shows their tanh.
    Extra token columns become meta tracks: floats scalar, everything else discrete, with the categories
    listed. The folder is written
    as ``FOLDER.partial`` and renamed, and lstm.yml is written after the rename, so an interrupted export never
    looks finished. The folder holds the marker ``.lstmviz``, by which ``overwrite`` knows it may replace it
    (see :mod:`lstmviz.outputs`); it refuses any other folder.
    """
    h5py = load_h5py()
    run = run_or_path if isinstance(run_or_path, Run) else open_run(run_or_path)
    folder = Path(folder)
    chosen = [n for n in run.names if not _names.parse(n).grad] if names is None else list(names)
    if not chosen:
        raise RunError(f"run {run.path} has no activations to export")
    for name in chosen:
        run.info(name)
    with Output(folder, "lstmvis", overwrite, name="output folder") as out:
        vocab = _export_words(run, out.partial, h5py)
        types = _export_states(run, chosen, out.partial, h5py)
        meta = _export_meta(run.tokens, out.partial, h5py)
        out.publish(finish=lambda final: _write_config(final, run, types, meta, vocab))
    return folder


def _export_words(run: Run, folder: Path, h5py: Any) -> dict[int, str]:
    """Writes train.h5 ``word_ids`` int64 ``[T]`` and words.dict; returns the vocabulary id → token.

    Keeps the run's token ids when each id has one display string; otherwise numbers the distinct display
    strings in order of appearance."""
    tokens = run.tokens
    display = tokens["token"].astype(str).to_numpy()
    ids = tokens["token_id"].to_numpy(np.int64)
    if len(tokens) and tokens.groupby("token_id")["token"].nunique().max() > 1:
        ids, uniques = pd.factorize(display)
        ids = ids.astype(np.int64)
        vocab = dict(enumerate(map(str, uniques)))
    else:
        first = pd.Series(display).groupby(ids).first()
        vocab = {int(i): str(t) for i, t in first.items()}
    with h5py.File(folder / "train.h5", "w") as f:
        f.create_dataset("word_ids", data=ids)
    write_dict(folder / "words.dict", vocab)
    return vocab


def _export_states(run: Run, chosen: Sequence[str], folder: Path, h5py: Any) -> list[dict]:
    """One float32 ``[T, units]`` dataset per activation in states.h5; returns ``states.types`` entries."""
    types = []
    with h5py.File(folder / "states.h5", "w") as f:
        for name in chosen:
            lo, hi = _bounds(run, name)
            bounded = lo >= -1.0 and hi <= 1.0
            d = f.create_dataset(name, shape=(run.n_tokens, run.units(name)), dtype=np.float32)
            for start in range(0, run.n_tokens, CHUNK):
                block = run.activations(name, start=start, stop=start + CHUNK)  # [≤CHUNK, units]
                d[start : start + len(block)] = shown_as(block) if bounded else block
            types.append(_state_entry(name, lo, hi))
    return types


def _bounds(run: Run, name: str) -> tuple[float, float]:
    """(min, max) of an activation's finite values: from stats.parquet, else read once; (0, 0) when none."""
    stats = run.stats
    rows = stats[stats["name"] == name] if not stats.empty else stats
    if len(rows) == run.units(name) and rows[["min", "max"]].notna().all().all():
        lo, hi = float(rows["min"].min()), float(rows["max"].max())
    else:
        lo, hi = np.inf, -np.inf
        for start in range(0, run.n_tokens, CHUNK):
            block = run.activations(name, start=start, stop=start + CHUNK)
            finite = block[np.isfinite(block)]
            if finite.size:
                lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    return (lo, hi) if lo <= hi else (0.0, 0.0)


def _state_entry(name: str, lo: float, hi: float) -> dict:
    """The ``states.types`` entry of activation ``name`` whose values span ``[lo, hi]``."""
    n = _names.parse(name)
    kind = n.kind + (_names.GRAD_SUFFIX if n.grad else "")
    entry: dict[str, Any] = {
        "type": TYPE_OF_KIND.get(kind, kind) + (REV if n.dir == "rev" else ""),
        "layer": n.layer + 1,
        "path": name,
        VALUES: "atanh" if lo >= -1.0 and hi <= 1.0 else "raw",
    }
    if lo >= 0.0:
        entry["unsigned"] = True
    return entry


def _export_meta(tokens: pd.DataFrame, folder: Path, h5py: Any) -> dict[str, dict]:
    """Token columns beyond the base ones → datasets of meta.h5 (+ a dict file each for text values).

    Returns lstm.yml's ``meta`` section. Float columns are scalar; others discrete, written as their
    integer values when those are ≥ 0 and else as codes of a dict. List-valued columns are left out."""
    meta: dict[str, dict] = {}
    extra = [c for c in flat_columns(tokens) if c not in TOKEN_COLUMNS]
    if not extra:
        return meta
    with h5py.File(folder / "meta.h5", "w") as f:
        for column in extra:
            key = _safe(column, meta)
            values, settings = _meta_track(tokens[column], key, folder)
            f.create_dataset(key, data=values)
            meta[key] = {"file": "meta", "path": key, **settings}
    return meta


def _safe(column: str, taken: Mapping) -> str:
    """A meta key, HDF5 path and file stem made of ``[A-Za-z0-9_]``, unique among ``taken``."""
    key = re.sub(r"\W", "_", str(column), flags=re.ASCII) or "meta"
    while key in taken or key in ("meta", "states", "train", "words"):
        key += "_"
    return key


def _meta_track(series: pd.Series, key: str, folder: Path) -> tuple[np.ndarray, dict]:
    """One token column → (values ``[T]``, the meta entry's ``vis`` and ``dict`` settings)."""
    if pd.api.types.is_float_dtype(series.dtype):
        values = series.to_numpy(np.float32, na_value=np.nan)
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        return values, {"vis": {"type": "scalar", "range": [lo, hi]}}
    if (
        pd.api.types.is_integer_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype)
    ) and not series.isna().any():
        values = series.to_numpy(np.int64)
        if not values.size or values.min() >= 0:
            categories = np.unique(values)
            if len(categories) > MAX_CATEGORIES:
                lo, hi = (float(categories[0]), float(categories[-1])) if values.size else (0.0, 1.0)
                return values, {"vis": {"type": "scalar", "range": [lo, hi]}}
            # the categories themselves: LSTMVis turns a "0...N" string into a Python range, which its JSON
            # cleanup then drops, and its client fails on the missing range (a blank page)
            return values, {"vis": {"type": "discrete", "range": categories.tolist()}}
    codes, uniques = pd.factorize(series.astype("string").fillna("<NA>"), sort=True)
    write_dict(folder / f"{key}.dict", dict(enumerate(map(str, uniques))))
    return codes.astype(np.int64), {"dict": f"{key}_dict", "vis": {"type": "discrete", "range": "dict"}}


def _write_config(folder: Path, run: Run, types: list[dict], meta: dict[str, dict], vocab: Mapping) -> None:
    """lstm.yml, written last: LSTMVis lists a project only once its config exists."""
    import yaml

    files = {"states": "states.h5", "train": "train.h5", "words": "words.dict"}
    if meta:
        files["meta"] = "meta.h5"
    files.update({m["dict"]: f"{key}.dict" for key, m in meta.items() if "dict" in m})
    model = run.manifest.get("model")
    model = model if isinstance(model, dict) else {}
    name = str(model.get("name") or model.get("class") or run.path.name)
    config = {
        "name": name,
        "description": f"exported by lstmviz from {run.path.name}: {run.n_tokens} tokens, {len(vocab)} types",
        "files": files,
        "word_sequence": {"file": "train", "path": "word_ids", "dict_file": "words"},
        "states": {"file": "states", "types": types},
    }
    if meta:
        config["meta"] = meta
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True, default_flow_style=None)
    (folder / "lstm.yml").write_text(text, encoding="utf-8")
