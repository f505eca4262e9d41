"""The LSTMVis project format, shared by import and export (see docs/LSTMVIS.md).

An LSTMVis project (Strobelt et al., lstm.seas.harvard.edu) is a folder::

    lstm.yml      name, description, files (alias → filename), word_sequence {file, path, dict_file},
                  states {file, types: [{type, layer, path, file?, unsigned?, transform?}]}, meta (optional)
    states.h5     2-D float datasets [T, cells], the whole corpus concatenated on one time axis
    train.h5      1-D int dataset [T] of word ids
    words.dict    lines ``token id``; a line that starts with a space (`` 7``) is the space token

LSTMVis 2.1 shows the tanh of every state dataset, whatever its ``transform`` says (:func:`lstmvis_shows`).

This module holds what both directions agree on: the names of state types, what a state dataset holds, the
words.dict lines, and how h5py is imported. :mod:`~lstmviz.interop.lstmvis_import` reads a project,
:mod:`~lstmviz.interop.lstmvis_export` writes one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..store import ROW_GROUP, RunError

MODULE = "lstmvis"
CHUNK = 4 * ROW_GROUP
"""Timesteps copied per read/write, so memory stays flat however long the corpus is."""

TYPE_OF_KIND = {
    "c": "state",
    "h": "output",
    "i": "input_gate",
    "f": "forget_gate",
    "g": "cell_candidate",
    "o": "output_gate",
    "hp": "pre_projection",
    "r": "reset_gate",
    "z": "update_gate",
    "n": "new_gate",
}
"""lstmviz kind → LSTMVis state ``type``. ``state``/``output`` are LSTMVis's own; the rest are ours."""
KIND_OF_TYPE = {t: k for k, t in TYPE_OF_KIND.items()}
REV = "_rev"
"""Suffix of the ``type`` of a reverse-direction activation (LSTMVis has no notion of direction)."""

VALUES = "lstmviz_values"
"""The key of a ``states.types`` entry (LSTMVis ignores it) saying what its dataset holds: ``atanh`` (the atanh
of lstmviz's values, which LSTMVis's tanh shows exactly) or ``raw`` (lstmviz's values; LSTMVis shows their tanh)."""
_INSIDE = np.nextafter(np.float32(1), np.float32(0))  # the float32 closest to 1 from below


def lstmvis_shows(stored: np.ndarray) -> np.ndarray:
    """What LSTMVis 2.1 shows for a states.h5 block ``[T, cells]``: its tanh, whatever ``transform`` says (its
    client never sends a transform, so the server's default tanh applies, and match thresholds arctanh(θ))."""
    return np.tanh(np.asarray(stored, np.float32))


def shown_as(values: np.ndarray) -> np.ndarray:
    """float32 ``x [T, cells]`` with ``tanh(x) == values`` to float32 rounding, for values in [-1, 1]: what to
    store so that LSTMVis shows ``values``. ±1 (a saturated float16 gate) become the atanh of the float32 just
    inside, about ±9, whose tanh rounds to ±1: the file holds finite numbers. NaN stays NaN."""
    v = np.clip(np.asarray(values, np.float64), -_INSIDE, _INSIDE)
    return np.arctanh(v).astype(np.float32)


WHITESPACE_SIGNS = {"\n": "↵", "\t": "⇥", "\r": "␍", " ": "␣"}
"""words.dict lines are split on whitespace, so tokens other than " " that hold whitespace are written so."""
EMPTY_SIGN = "∅"


def load_h5py() -> Any:
    """The h5py module, or an ImportError that says how to install it (it is an optional dependency)."""
    try:
        import h5py
    except ImportError:
        raise ImportError("LSTMVis interop needs h5py: pip install 'lstmviz[lstmvis]'") from None
    return h5py


def read_dict(path: Path) -> dict[int, str]:
    """An LSTMVis dict file → id → token. Lines are ``token id``; a line `` id`` is the space token."""
    vocab: dict[int, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise RunError(f"{path.name} is not UTF-8 text: {e}") from None
    for number, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) == 1 and line.startswith(" "):
            parts = [" ", parts[0]]
        if len(parts) != 2 or not re.fullmatch(r"-?\d+", parts[1]):
            raise RunError(f"{path.name}:{number}: expected 'token id' (or ' id' for the space token), got {line!r}")
        vocab[int(parts[1])] = parts[0]
    return vocab


def dict_token(token: str) -> str:
    """How ``token`` is written in a words.dict line: itself, unless it holds whitespace or is empty."""
    if token == "":
        return EMPTY_SIGN
    return "".join(WHITESPACE_SIGNS.get(ch, "␣" if ch.isspace() else ch) for ch in token)


def write_dict(path: Path, vocab: Mapping[int, str]) -> None:
    """id → token as ``token id`` lines sorted by id; the single space token as `` id``."""
    lines = [f" {i}" if tok == " " else f"{dict_token(tok)} {i}" for i, tok in sorted(vocab.items())]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
