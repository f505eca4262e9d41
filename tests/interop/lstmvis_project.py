"""A small LSTMVis project built by hand with h5py, following the format LSTMVis documents.

Corpus: the 12 chars ``ab ba ca bca``, ids from words.dict (1-based, as LSTMVis's preprocess writes them).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

TEXT = "ab ba ca bca"
VOCAB = {"a": 1, "b": 2, " ": 3, "c": 4}
IDS = np.array([VOCAB[ch] for ch in TEXT], np.int64)  # [12]
T = len(TEXT)

LSTM_YML = """\
name: tiny chars  # project name
description: hand-built fixture

files:
  states: states.h5
  states_b: more_states.hdf5
  train: train.h5
  words: words.dict
  pos: pos.h5
  pos_dict: pos.dict

word_sequence:
  file: train
  path: word_ids
  dict_file: words

states:
  file: states
  types: [
    {type: state, layer: 1, path: states1},
    {type: output, layer: 1, path: output1, transform: none},
    {file: states_b, type: state, layer: 2, path: states2, unsigned: true}
  ]

meta:
  pos:
    file: pos
    path: pos
    dict: pos_dict
    vis:
      type: discrete
      range: dict
  depth:
    file: pos
    path: depth
    vis:
      type: discrete
  surprise:
    file: pos
    path: surprise
    vis:
      type: scalar
      range: [0, 1]
"""


def states(seed: int, units: int, scale: float) -> np.ndarray:
    """Known float32 values ``[T, units]``; scale > 1 gives raw cell states beyond [-1, 1]."""
    return (np.random.default_rng(seed).uniform(-1, 1, (T, units)) * scale).astype(np.float32)


STATES1 = states(1, 3, 3.0)
OUTPUT1 = states(2, 3, 1.0)
STATES2 = states(3, 4, 2.0)
POS = np.array([0 if ch in "ab" else 1 if ch == " " else 2 for ch in TEXT], np.int64)  # letter/space/c
DEPTH = np.arange(T, dtype=np.int64) % 3
SURPRISE = np.linspace(0, 1, T).astype(np.float32)


def write_project(folder: Path) -> Path:
    """Write the fixture project into ``folder``; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lstm.yml").write_text(LSTM_YML)
    (folder / "words.dict").write_text("a 1\nb 2\n 3\nc 4\n")
    (folder / "pos.dict").write_text("letter 0\nspace 1\nc 2\n")
    with h5py.File(folder / "train.h5", "w") as f:
        f["word_ids"] = IDS
    with h5py.File(folder / "states.h5", "w") as f:
        f["states1"] = STATES1
        f["output1"] = OUTPUT1
    with h5py.File(folder / "more_states.hdf5", "w") as f:
        f["states2"] = STATES2
    with h5py.File(folder / "pos.h5", "w") as f:
        f["pos"] = POS
        f["depth"] = DEPTH
        f["surprise"] = SURPRISE
    return folder


def edit_config(folder: Path, old: str, new: str) -> None:
    """Replace ``old`` (which must occur) by ``new`` in the project's lstm.yml."""
    text = (folder / "lstm.yml").read_text()
    assert old in text, old
    (folder / "lstm.yml").write_text(text.replace(old, new))
