"""What the LSTMVis 2.1 server and client do with a project folder: the expectations an export is tested against.

Restated (not copied) from reading LSTMVis's code, github.com/HendrikStrobelt/LSTMVis (BSD-3), at e0628ca:

- ``lstm_server.py`` finds every folder holding ``lstm.yml`` and reads it with ``yaml.load(..., FullLoader)``.
  Its ``/api/v2/info`` answer is the config after ``LSTMDataHandler.__init__`` enriched it, passed through
  ``cleanup_dict``: a value that ``json.dumps`` refuses is dropped, unless it is a dict (cleaned in turn) or
  ``dict.keys()`` (made a list).
- ``__init__`` rewrites each meta's ``vis.range``: ``"dict"`` becomes the keys of that meta's dict file (its
  tokens), and a string ``"a...b"`` becomes ``range(a, b)``, which json refuses, so the info answer has no range.
- The client (``LSTMController.initByUrlAndRun``) registers every ``discrete`` meta's range with
  ``ColorManager.registerCategoricalDim``, whose ``_categoricalScale`` reads ``range.length``: a missing range is
  the ``TypeError`` that leaves the page blank. The range becomes the domain of a d3 ordinal scale, looked up
  with the meta values the server sends (mapped through the dict when the meta has one).
- The client never sends ``transform``, so every ``/context`` and ``/match`` request uses the server's default,
  ``tanh``: ``get_states`` shows ``tanh(x)`` of each states dataset ``x``, and ``query_similar_activations``
  takes a cell as on where ``x ≥ arctanh(θ)``. A type's own ``transform`` is read only to size the dataset.
- Dict files are read line by line: two whitespace-separated fields ``token id``, or a line that starts with a
  space for the space token.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml


def config(folder: Path) -> dict:
    """lstm.yml as the server reads it."""
    return yaml.load((folder / "lstm.yml").read_text(encoding="utf-8"), Loader=yaml.FullLoader)


def read_dict(path: Path) -> dict[str, int]:
    """A dict file as the server reads it: token → id."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        fields = line.split()
        if len(fields) == 2:
            out[fields[0]] = int(fields[1])
        elif line.startswith(" "):
            out[" "] = int(line.strip())
    return out


def _cleanup(d: dict) -> dict:
    out = {}
    for key, value in d.items():
        try:
            json.dumps(value)
            out[key] = value
        except TypeError:
            if isinstance(value, dict):
                out[key] = _cleanup(value)
            elif isinstance(value, type({}.keys())):
                out[key] = list(value)
    return out


def info(folder: Path) -> dict:
    """The project's config as ``/api/v2/info`` sends it to the client."""
    c = config(folder)
    for m in (c.get("meta") or {}).values():
        vis = m["vis"]
        vis["range"] = vis.get("range", "0...100")
        if vis["range"] == "dict":
            vis["range"] = read_dict(folder / c["files"][m["dict"]]).keys()
        elif isinstance(vis["range"], str):
            found = re.search(r"([0-9]+)\.\.\.([0-9]+)", vis["range"])
            if found:
                vis["range"] = range(int(found.group(1)), int(found.group(2)))
    return _cleanup(c)


def categorical_domains(answer: dict) -> dict[str, list]:
    """What the client's ColorManager registers for each discrete meta (a TypeError where the client fails)."""
    out = {}
    for key, m in (answer.get("meta") or {}).items():
        if m["vis"]["type"] == "discrete":
            domain = m["vis"].get("range")
            if not isinstance(domain, list):
                raise TypeError(f"ColorManager._categoricalScale: cannot read 'length' of {domain!r} (meta {key})")
            out[key] = domain
    return out


def meta_values(folder: Path, key: str) -> list[Any]:
    """The values of one meta track as the server sends them: mapped through its dict when it has one."""
    c = config(folder)
    m = c["meta"][key]
    with h5py.File(folder / c["files"][m["file"]]) as f:
        values = f[m["path"]][()].tolist()
    if "dict" in m:
        by_id = {i: t for t, i in read_dict(folder / c["files"][m["dict"]]).items()}
        values = [by_id[v] for v in values]
    return values


def stored(folder: Path, path: str) -> np.ndarray:
    """The states dataset at ``path``, as the file holds it."""
    c = config(folder)
    [entry] = [t for t in c["states"]["types"] if t["path"] == path]
    with h5py.File(folder / c["files"][entry.get("file", c["states"]["file"])]) as f:
        return f[path][()]


def shown(folder: Path, path: str) -> np.ndarray:
    """float32 ``[T, cells]``: what LSTMVis shows for the states dataset at ``path`` (tanh, in float32 as it does)."""
    x = stored(folder, path)
    return np.tanh(x, x)


def on(folder: Path, path: str, theta: float) -> np.ndarray:
    """bool ``[T, cells]``: where LSTMVis's match takes a cell as on at threshold ``theta``."""
    return stored(folder, path) >= np.arctanh(theta)


def match(
    folder: Path, path: str, cells: list[int], theta: float, constraints: tuple[int, int] = (1, 0), mode: str = "fast"
) -> tuple[list, int]:
    """What ``/api/v2/match`` ranks for ``cells``: ``(start, length, n_selected, n_union)`` per result, best first,
    and how many candidates it found before cutting them to its limit.

    Restates ``LSTMDataHandler.query_similar_activations`` as the client calls it: ``mode`` ``"fast"`` (the
    client's, which looks at the first 500,000 steps and keeps 1,000 candidates) or ``"precise"`` (every step,
    10,000 candidates), ``phrase_length=0``, ``constraints`` from the brush (``[1, 0]``, the default: the step
    before a span must be off; or ``[0, 0]``), ``transform="tanh"`` (a cell is on where the stored value is
    ≥ arctanh(θ)). Checked once against the real handler on code_lstm's c: equal result for result, ties in
    order, for 60 selections in both modes. Its steps:

    - count, at each step looked at, the selected cells that are on;
    - for k = all selected cells down to 1, until the limit of candidates is known: every maximal run where at least k
      are on, at least 2 steps long, is a candidate ``(length, start)``, first found wins; each carries the
      number of selected cells on in the constrained neighbour (before, after or both) subtracted from k;
    - the candidates are stably sorted by that number, largest first, and cut to the limit;
    - a candidate that starts at step 0 or ends at the last step or the one before is dropped;
    - the cells on at every step of a candidate (and off at a constrained neighbour) form its on-set, compared
      with the selection: results are ranked by the largest intersection, then the smallest union, then the
      longest span. Python's sort is stable, so ties keep the candidates' order, which is that of iterating a
      ``set`` of int tuples per level: an order of hashes, not of positions.
    """
    x = stored(folder, path)
    on_all = x >= np.arctanh(theta)
    steps, limit = (500_000, 1000) if mode == "fast" else (len(x), 10_000)
    count = on_all[:steps, cells].sum(1).astype(np.int64)
    assert constraints in ((1, 0), (0, 0)), "the client's brush constrains the left neighbour or nothing"
    left = constraints[0] > 0
    found: dict[tuple[int, int], tuple[int, int, int]] = {}
    k = len(cells)
    level = count.copy()
    while k > 0 and len(found) < limit:
        level = np.minimum(level, k)
        ends = np.append(np.flatnonzero(level[1:] != level[:-1]), len(level) - 1)
        lengths = np.diff(np.append(-1, ends))
        starts = np.cumsum(np.append(0, lengths))[:-1]
        values = level[ends]
        idx = np.flatnonzero((values == k) & (lengths >= 2))
        off = k - values[idx - 1] if left else np.zeros(len(idx), np.int64)  # idx - 1 = -1 wraps, as there
        rows = {(int(lengths[i]), int(starts[i]), int(off[j])) for j, i in enumerate(idx)}
        for row in rows:
            found.setdefault(row[:2], row)
        k -= 1
    candidates = sorted(found.values(), key=lambda r: r[2], reverse=True)[:limit]
    results = []
    T = len(x)
    for length, start, _ in candidates:
        if start < 1 or start + length + 1 > T:
            continue
        on_set = on_all[start : start + length].all(0)
        if left:
            on_set &= ~on_all[start - 1]
        active = np.flatnonzero(on_set)
        results.append((start, length, len(np.intersect1d(active, cells)), len(np.union1d(active, cells))))
    results.sort(key=lambda r: (-r[2], r[3], -r[1]))
    return results, len(found)
