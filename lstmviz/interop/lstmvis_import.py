"""Import an LSTMVis project folder as an lstmviz run (the folder's format: :mod:`lstmviz.interop.lstmvis_format`).

Import maps ``state`` → ``c`` and ``output`` → ``h`` (module ``lstmvis``), applies tanh to every state (so the run
holds what LSTMVis 2.1 shows, whatever ``transform`` says: its client never asks for another transform), and
turns discrete and scalar meta into token columns. LSTMVis numbers layers from 1; lstmviz from 0. Import
subtracts 1 unless some type declares layer 0.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import names as _names
from ..store import TOKEN_COLUMNS, Activation, RunError, RunWriter, tokens_frame
from .lstmvis_format import CHUNK, KIND_OF_TYPE, MODULE, REV, load_h5py, lstmvis_shows, read_dict


@dataclass(frozen=True)
class _Dataset:
    """One HDF5 dataset referenced by lstm.yml: ``field`` says where, for error messages."""

    field: str
    file: Path
    path: str

    def __str__(self) -> str:
        return f"{self.file.name}:{self.path}"


@dataclass(frozen=True)
class _StateType:
    """One ``states.types`` entry resolved to an lstmviz activation name."""

    name: str
    data: _Dataset
    units: int
    type: str
    layer: int
    transform: str
    unsigned: bool


def import_lstmvis(folder: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Turn the LSTMVis project in ``folder`` into the lstmviz run ``out``; returns ``out``.

    Every state type becomes an activation ``lstmvis.l{layer}.{fwd|rev}.{kind}`` of shape ``[T, cells]``,
    with tanh applied, as LSTMVis shows it (an lstmviz export stores atanh, so its values come back). Tokens
    come from the word sequence and its dict, all in one document. Discrete meta become int columns (string
    columns when they have a dict), scalar meta float32 columns. Everything is checked before anything is
    written: a malformed project raises :class:`RunError` naming the field and file, and leaves nothing behind.
    """
    h5py = load_h5py()
    folder = Path(folder)
    config = _read_config(folder)
    files = _files(config, folder)
    words = _word_sequence(config, files, h5py)
    n = len(words.ids)
    if n == 0:
        raise RunError(f"lstm.yml: word_sequence: {words.data} is empty: there are no tokens to import")
    states = _state_types(config, files, h5py, n)
    columns, meta_info, skipped = _meta(config, files, h5py, n)
    tokens = tokens_frame(words.display, words.ids)
    for column, values in columns.items():
        tokens[column] = values
    manifest = _import_manifest(folder, config, words, states, meta_info, skipped)
    activations = [Activation.from_name(s.name, s.units) for s in states]
    with RunWriter(out, tokens, activations, manifest, overwrite=overwrite) as w:
        for s in states:
            for start, block in _blocks(s.data, h5py):
                w.write(s.name, start, lstmvis_shows(block))
    return Path(out)


def _read_config(folder: Path) -> dict:
    import yaml

    if not folder.is_dir():
        raise RunError(f"no LSTMVis project at {folder}: it is not a directory (a project is a folder with lstm.yml)")
    path = folder / "lstm.yml"
    if not path.is_file():
        raise RunError(f"{folder} is not an LSTMVis project: it has no lstm.yml")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise RunError(f"{path} is not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(config, dict):
        raise RunError(f"{path} must be a mapping of fields (name, files, word_sequence, states)")
    return config


_TYPE_WORDS = {str: "a string", int: "an integer", dict: "a mapping", list: "a list"}


def _field(section: Any, key: str, where: str, kind: type | tuple[type, ...] = str) -> Any:
    """``section[key]``, checked to be present and of ``kind``; ``where``: the dotted path of ``section``."""
    full = f"{where}.{key}" if where else key
    if not isinstance(section, Mapping):
        raise RunError(f"lstm.yml: field {where} must be a mapping with {key}, got {section!r}")
    if key not in section:
        raise RunError(f"lstm.yml: field {full} is missing")
    value = section[key]
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        words = " or ".join(_TYPE_WORDS.get(k, k.__name__) for k in kinds)
        raise RunError(f"lstm.yml: field {full} must be {words}, got {value!r}")
    return value


def _files(config: Mapping, folder: Path) -> dict[str, Path]:
    """``files``: alias → path, as written; existence is checked where a file is used."""
    files = _field(config, "files", "", dict)
    return {str(alias): folder / str(name) for alias, name in files.items()}


def _file(files: Mapping[str, Path], alias: Any, where: str) -> Path:
    if str(alias) not in files:
        raise RunError(
            f"lstm.yml: {where} names file alias {alias!r}, which is not in files (it has {', '.join(files) or 'none'})"
        )
    path = files[str(alias)]
    if not path.is_file():
        raise RunError(f"lstm.yml: {where}: file {path.name} (files.{alias}) does not exist in {path.parent}")
    return path


def _dataset(files: Mapping[str, Path], section: Mapping, where: str, h5py: Any, default_file: Any = None) -> _Dataset:
    """The ``{file, path}`` of ``section``, checked to exist in the HDF5 file."""
    alias = section.get("file", default_file) if isinstance(section, Mapping) else None
    if alias is None:
        _field(section, "file", where)
    path = str(_field(section, "path", where, (str, int)))
    ds = _Dataset(where, _file(files, alias, f"{where}.file"), path)
    try:
        with h5py.File(ds.file, "r") as f:
            node = f.get(path)
            if not isinstance(node, h5py.Dataset):
                have = ", ".join(sorted(f.keys())[:6]) or "nothing"
                raise RunError(f"lstm.yml: {where}.path: {ds.file.name} has no dataset {path!r} (it has {have})")
    except OSError as e:
        raise RunError(f"lstm.yml: {where}.file: {ds.file.name} is not a readable HDF5 file ({e})") from None
    return ds


def _shape(ds: _Dataset, h5py: Any) -> tuple[int, ...]:
    with h5py.File(ds.file, "r") as f:
        return tuple(f[ds.path].shape)


def _read(ds: _Dataset, h5py: Any) -> np.ndarray:
    with h5py.File(ds.file, "r") as f:
        return f[ds.path][()]


def _blocks(ds: _Dataset, h5py: Any) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, float32 [≤CHUNK, cells])`` blocks of a states dataset, in time order."""
    with h5py.File(ds.file, "r") as f:
        d = f[ds.path]
        for start in range(0, d.shape[0], CHUNK):
            yield start, np.asarray(d[start : start + CHUNK], dtype=np.float32)


@dataclass(frozen=True)
class _Words:
    ids: np.ndarray  # <int64>[T]
    display: list[str]  # [T]
    data: _Dataset
    dict_file: Path
    vocab: int


def _word_sequence(config: Mapping, files: Mapping[str, Path], h5py: Any) -> _Words:
    ws = _field(config, "word_sequence", "", dict)
    data = _dataset(files, ws, "word_sequence", h5py)
    dict_file = _file(files, _field(ws, "dict_file", "word_sequence", (str, int)), "word_sequence.dict_file")
    ids = _int_ids(_read(data, h5py), data)
    vocab = read_dict(dict_file)
    return _Words(ids, _lookup(ids, vocab, f"{data} (word_sequence)", dict_file), data, dict_file, len(vocab))


def _int_ids(raw: np.ndarray, ds: _Dataset) -> np.ndarray:
    """A 1-D dataset of integer ids (stored as int or as integral floats) → int64 ``[T]``."""
    if raw.ndim != 1:
        raise RunError(f"lstm.yml: {ds.field}: {ds} must be 1-D (one id per timestep), it is {list(raw.shape)}")
    if raw.dtype.kind == "f" and np.all(np.isfinite(raw)) and np.all(raw == np.round(raw)):
        raw = raw.astype(np.int64)
    if raw.dtype.kind not in "iu":
        raise RunError(f"lstm.yml: {ds.field}: {ds} must hold integer ids, it holds {raw.dtype}")
    return raw.astype(np.int64)


def _lookup(ids: np.ndarray, vocab: Mapping[int, str], what: str, dict_file: Path) -> list[str]:
    """Tokens of ``ids`` ``[T]``; every id must be in ``vocab``."""
    known = np.fromiter(vocab, np.int64, len(vocab))
    unknown = np.setdiff1d(np.unique(ids), known)
    if unknown.size:
        raise RunError(f"{what} has ids missing from {dict_file.name}, e.g. {', '.join(map(str, unknown[:5]))}")
    return [vocab[i] for i in ids.tolist()]


def _state_types(config: Mapping, files: Mapping[str, Path], h5py: Any, n: int) -> list[_StateType]:
    """Every ``states.types`` entry, checked: a 2-D dataset with ``n`` rows, a layer, a known transform."""
    states = _field(config, "states", "", dict)
    types = _field(states, "types", "states", list)
    if not types:
        raise RunError("lstm.yml: field states.types is empty: it must list at least one state type")
    layers = [_field(t, "layer", f"states.types[{j}]", int) for j, t in enumerate(types)]
    if min(layers) < 0:
        raise RunError(f"lstm.yml: field states.types[{layers.index(min(layers))}].layer must be ≥ 0")
    base = 0 if min(layers) == 0 else 1
    keys = [(str(t.get("type")), layer) for t, layer in zip(types, layers, strict=True)]
    out = []
    for j, (t, layer) in enumerate(zip(types, layers, strict=True)):
        where = f"states.types[{j}]"
        state_type = _field(t, "type", where, str)
        data = _dataset(files, t, where, h5py, default_file=states.get("file"))
        shape = _shape(data, h5py)
        if len(shape) != 2:
            raise RunError(f"lstm.yml: {where}: {data} must be 2-D [timesteps, cells], it is {list(shape)}")
        if shape[0] != n:
            raise RunError(f"lstm.yml: {where}: {data} has {shape[0]} timesteps but the word sequence has {n}")
        transform = str(t.get("transform", "tanh"))
        if transform not in ("tanh", "none"):
            raise RunError(f"lstm.yml: field {where}.transform must be tanh or none, got {transform!r}")
        name = _state_name(state_type, layer - base, j if keys.count(keys[j]) > 1 else None)
        out.append(
            _StateType(name, data, shape[1], state_type, layer - base, transform, bool(t.get("unsigned", False)))
        )
    return out


def _state_name(state_type: str, layer: int, index: int | None) -> str:
    """``output``, layer 0 → ``lstmvis.l0.fwd.h``. A (type, layer) given twice gets module ``lstmvis.<j>``."""
    rev = state_type.endswith(REV)
    base = state_type[: -len(REV)] if rev else state_type
    kind = KIND_OF_TYPE.get(base) or re.sub(r"\W", "_", base)
    module = MODULE if index is None else f"{MODULE}.{index}"
    return _names.build(module, layer, "rev" if rev else "fwd", kind)


def _meta(config: Mapping, files: Mapping[str, Path], h5py: Any, n: int) -> tuple[dict, dict, dict]:
    """Discrete and scalar meta → (column → values ``[n]``, column → {type, range}, name → why skipped)."""
    meta = config.get("meta") or {}
    if not isinstance(meta, dict):
        raise RunError(f"lstm.yml: field meta must be a mapping of annotation name → settings, got {meta!r}")
    columns: dict[str, Any] = {}
    info: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    for name, m in meta.items():
        where = f"meta.{name}"
        vis = _field(m, "vis", where, dict)
        vis_type = _field(vis, "type", f"{where}.vis", str)
        if m.get("type", "general") == "wordvec" or vis_type == "wordvec":
            skipped[str(name)] = "wordvec meta has several words per timestep"
            continue
        if vis_type not in ("discrete", "scalar"):
            raise RunError(f"lstm.yml: {where}.vis.type must be discrete, scalar or wordvec, got {vis_type!r}")
        data, values = _meta_values(config, files, m, where, h5py, n)
        if values.ndim != 1:
            skipped[str(name)] = f"{values.ndim}-D values; only one value per timestep is imported"
            continue
        column = str(name) if str(name) not in TOKEN_COLUMNS else f"meta_{name}"
        columns[column] = _meta_column(files, m, data, values, vis_type)
        info[column] = {"type": vis_type, "range": vis.get("range"), "lstmvis_meta": str(name)}
    return columns, info, skipped


def _meta_values(
    config: Mapping, files: Mapping[str, Path], m: Mapping, where: str, h5py: Any, n: int
) -> tuple[_Dataset, np.ndarray]:
    """The meta dataset and its per-timestep values ``[n, ...]``; ``index: <section>`` looks them up
    through the ids of that section (e.g. ``word_sequence``: one value per word id)."""
    data = _dataset(files, m, where, h5py)
    values = _read(data, h5py)
    index = m.get("index", "self") or "self"
    if index != "self":
        section = _field(config, str(index), "", dict)
        positions = _int_ids(_read(_dataset(files, section, str(index), h5py), h5py), data)
        if positions.size and (positions.min() < 0 or positions.max() >= len(values)):
            raise RunError(f"lstm.yml: field {where}.index: ids of {index} fall outside {data} ({len(values)} rows)")
        values = values[positions]
    if len(values) != n:
        raise RunError(f"lstm.yml: {where}: {data} has {len(values)} timesteps but the word sequence has {n}")
    return data, values


def _meta_column(files: Mapping[str, Path], m: Mapping, data: _Dataset, values: np.ndarray, vis_type: str) -> Any:
    """``[n]`` values → a token column: float32 (scalar), int64 (discrete) or strings (discrete with dict)."""
    if vis_type == "scalar":
        return values.astype(np.float32)
    ids = _int_ids(values, data)
    if "dict" not in m:
        return ids
    dict_file = _file(files, m["dict"], f"{data.field}.dict")
    return pd.array(_lookup(ids, read_dict(dict_file), f"lstm.yml: {data.field}", dict_file), dtype="string")


def _import_manifest(
    folder: Path,
    config: Mapping,
    words: _Words,
    states: Sequence[_StateType],
    meta_info: Mapping,
    skipped: Mapping,
) -> dict:
    name = str(config.get("name") or folder.name)
    return {
        "model": {"class": "LSTMVis import", "name": name},
        "tokenizer": {"type": "lstmvis dict", "file": words.dict_file.name, "size": words.vocab},
        "corpus": {"source": str(words.data), "tokens": len(words.ids)},
        "annotations": dict(meta_info),
        "source": {
            "format": "lstmvis",
            "folder": str(folder.resolve()),
            "name": name,
            "description": str(config.get("description") or name),
            "states": [
                {
                    "name": s.name,
                    "type": s.type,
                    "layer": s.layer,
                    "file": s.data.file.name,
                    "path": s.data.path,
                    "transform": s.transform,
                    "unsigned": s.unsigned,
                    "stored": "tanh(x)",
                }
                for s in states
            ],
            "skipped_meta": dict(skipped),
        },
    }
