"""Tokenizers: text ↔ ids, as char, word (whitespace or regex split) or a given vocabulary file.

One :class:`Tokenizer` class covers all three; they differ only in how text is split into symbols:

- ``char``: every character is a symbol (the char-rnn setting);
- ``word``: ``str.split()`` on whitespace, or ``re.findall(pattern, text)`` for a regex ``pattern``;
- a vocabulary file (JSON list, or one token per line) fixes the symbols; it splits by char when every entry
  but the special symbols (``<pad>``, ``<unk>``, ``[CLS]``…: see :func:`is_special`) is one character, else by
  word (on whitespace).

A word vocabulary with an end-of-line symbol (``eos``; ``<eos>`` in a vocabulary file) reads text as PyTorch's
``word_language_model`` data.py does: every line is ``line.split() + ["<eos>"]``, so the token stream (and the
loss) is the model's own. Special symbols never come out of splitting a text; a char vocabulary with ``<pad>``
still splits by character.

Unknown symbols map to the UNK id when the vocabulary has one (``unk``; detected as one of :data:`UNK_NAMES` in a
vocabulary file), otherwise encoding fails with a :class:`~lstmviz.errors.UserError` naming them.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError

UNK_NAMES = ("<unk>", "<UNK>", "[UNK]", "<oov>", "UNK")
PAD_NAMES = ("<pad>", "<PAD>", "[PAD]")
EOS_NAMES = ("<eos>",)
_LINE_END = re.compile(r"\r\n|\r|\n")  # what Python's text files split lines on


def is_special(symbol: str) -> bool:
    """A special symbol of a vocabulary (``<pad>``, ``<unk>``, ``<eos>``, ``[CLS]``, ``UNK``…): one of
    :data:`UNK_NAMES`, or longer than one character and wrapped in ``<…>`` or ``[…]``."""
    if symbol in UNK_NAMES:
        return True
    return len(symbol) > 2 and (symbol[0], symbol[-1]) in (("<", ">"), ("[", "]"))


def text_lines(text: str) -> list[str]:
    r"""The lines of ``text`` without their line ends, as iterating over a text file gives them (``\n``, ``\r\n``
    or ``\r``); a line end at the very end of the text starts no further line."""
    lines = _LINE_END.split(text)
    return lines[:-1] if lines and lines[-1] == "" else lines


_SHOWN = 8  # unknown symbols named in an error message


def read_text(path: str | os.PathLike) -> str:
    """The UTF-8 text of ``path``; a :class:`UserError` names a missing file, bad bytes, or an empty text."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"no such file: {p}")
    if p.is_dir():
        raise UserError(f"{p} is a directory, not a text file")
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{p} is not UTF-8 text: byte {data[e.start]:#04x} at offset {e.start} ({e.reason})") from None
    if not text.strip():
        raise UserError(f"{p} is empty: there is no text to use")
    return text


@dataclass
class Tokenizer:
    """``encode(text) -> int64 [n]`` and ``display(ids) -> list[str]``; serialisable with ``to_json``."""

    kind: str  # "char" | "word"
    vocab: list[str]
    unk: str | None = None
    pattern: str | None = None  # word only: re.findall pattern; None splits on whitespace
    eos: str | None = None  # word only: the symbol that ends every line (word_language_model's "<eos>")
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in ("char", "word"):
            raise UserError(f"tokenizer kind must be 'char' or 'word', got {self.kind!r}")
        if not self.vocab:
            raise UserError("the vocabulary is empty")
        self.index = {}
        for i, s in enumerate(self.vocab):
            if s in self.index:
                raise UserError(f"the vocabulary lists {s!r} twice (entries {self.index[s]} and {i})")
            self.index[s] = i
        if self.unk is not None and self.unk not in self.index:
            raise UserError(f"the UNK token {self.unk!r} is not in the vocabulary")
        if self.eos is not None and (self.kind != "word" or self.eos not in self.index):
            raise UserError(f"the end-of-line token {self.eos!r} needs a word vocabulary that lists it")
        long = [s for s in self.vocab if len(s) != 1 and not is_special(s)] if self.kind == "char" else []
        if long:
            raise UserError(
                f"a char vocabulary has only single characters and special symbols like <pad>, but it lists {long[0]!r}"
            )
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as e:
                raise UserError(f"bad word pattern {self.pattern!r}: {e}") from None

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def unk_id(self) -> int | None:
        return None if self.unk is None else self.index[self.unk]

    # --- construction ---------------------------------------------------------------------------------

    @classmethod
    def char(cls, text: str, *, unk: str | None = None) -> Tokenizer:
        """A char tokenizer whose vocabulary is the sorted set of characters in ``text``, plus ``unk``."""
        vocab = sorted(set(text))
        if unk is not None and unk not in vocab:
            vocab.append(unk)
        return cls("char", vocab, unk)

    @classmethod
    def word(cls, text: str, *, pattern: str | None = None, unk: str | None = "<unk>", min_count: int = 1) -> Tokenizer:
        """A word tokenizer over the words of ``text`` seen at least ``min_count`` times, most frequent first."""
        probe = cls("word", ["\0"], None, pattern)
        counts = Counter(probe.split(text))
        vocab = [w for w, c in sorted(counts.items(), key=lambda wc: (-wc[1], wc[0])) if c >= min_count]
        if unk is not None and unk not in vocab:
            vocab.append(unk)
        return cls("word", vocab, unk, pattern)

    @classmethod
    def from_vocab_file(
        cls, path: str | os.PathLike, *, kind: str | None = None, pattern: str | None = None
    ) -> Tokenizer:
        """A JSON list of tokens, or one token per line. ``kind`` defaults to char when all entries but the
        special symbols (:func:`is_special`) are single characters, else word; a word vocabulary that lists
        ``<eos>`` ends every line of a text with it."""
        text = read_text(path)
        vocab: list[str]
        if text.lstrip().startswith("["):
            try:
                vocab = json.loads(text)
            except json.JSONDecodeError as e:
                raise UserError(f"{path} looks like JSON but does not parse: {e}") from None
            if not all(isinstance(s, str) for s in vocab):
                raise UserError(f"{path}: a JSON vocabulary must be a list of strings")
        else:
            vocab = [line for line in text.split("\n") if line != ""]
        unk = next((u for u in UNK_NAMES if u in vocab), None)
        if kind is None:
            plain = [s for s in vocab if not is_special(s)]
            kind = "char" if plain and all(len(s) == 1 for s in plain) else "word"
        eos = next((e for e in EOS_NAMES if e in vocab), None) if kind == "word" else None
        return cls(kind, vocab, unk, pattern, eos)

    def to_json(self) -> dict:
        return {"kind": self.kind, "vocab": list(self.vocab), "unk": self.unk, "pattern": self.pattern, "eos": self.eos}

    @classmethod
    def from_json(cls, d: dict) -> Tokenizer:
        try:
            return cls(d["kind"], list(d["vocab"]), d.get("unk"), d.get("pattern"), d.get("eos"))
        except (KeyError, TypeError) as e:
            raise UserError(f"malformed tokenizer description (needs kind and vocab): {e}") from None

    # --- use ------------------------------------------------------------------------------------------

    def split(self, text: str) -> list[str]:
        """The symbols of ``text``: characters, or words (each line's words then ``eos``, when there is one)."""
        if self.kind == "char":
            return list(text)
        words = (lambda t: re.findall(self.pattern, t)) if self.pattern else str.split
        if self.eos is None:
            return words(text)
        return [w for line in text_lines(text) for w in [*words(line), self.eos]]

    def encode(self, text: str) -> np.ndarray:
        """int64 ``[n_symbols]``. Unknown symbols become the UNK id, or raise a :class:`UserError` naming them."""
        symbols = self.split(text)
        get, unk_id = self.index.get, self.unk_id
        ids = [get(s, -1) for s in symbols]
        out = np.fromiter(ids, np.int64, len(ids))
        missing = out < 0
        if missing.any():
            if unk_id is None:
                raise UserError(self._unknown_message(s for s, m in zip(symbols, missing, strict=True) if m))
            out[missing] = unk_id
        return out

    def _unknown_message(self, unknown: Iterable[str]) -> str:
        counts = Counter(unknown)
        shown = ", ".join(f"{s!r} ({c}×)" for s, c in counts.most_common(_SHOWN))
        more = f" and {len(counts) - _SHOWN} more" if len(counts) > _SHOWN else ""
        return (
            f"{len(counts)} symbol(s) not in the {self.kind} vocabulary of {len(self)} and no UNK token: {shown}{more}"
        )

    def display(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        """The display string of each id (the symbol itself); raises :class:`UserError` for out-of-range ids."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise UserError(
                f"token id {int(ids.max() if ids.max() >= len(self) else ids.min())} is outside "
                f"the vocabulary of {len(self)}"
            )
        return [self.vocab[i] for i in ids]

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Text of ``ids``: joined directly for char, with single spaces for word."""
        return ("" if self.kind == "char" else " ").join(self.display(ids))
