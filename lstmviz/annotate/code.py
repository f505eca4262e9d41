"""Per-character tracks of Python source from the ``tokenize`` module, for char-level code models.

Columns of :func:`python_tracks`, one row per character of the text:

=================  ======  =================================================================================
column             dtype   meaning
=================  ======  =================================================================================
``token_type``     string  the tokenize type of the token covering the char (``NAME``, ``OP``, ``STRING``,
                           ``COMMENT``, ``NUMBER``, ``NEWLINE``, ``NL``, ``INDENT``…), ``WS`` between tokens
``in_string``      bool    inside a string literal, quotes and prefix included
``in_comment``     bool    inside a ``#`` comment
``bracket_depth``  int32   open ``( [ {`` enclosing the char; a bracket counts as inside its own pair
``indent_level``   int32   indentation blocks open on the char's line (INDENT minus DEDENT tokens so far)
``col``            int32   position in the line, 0 at the first character
=================  ======  =================================================================================

Text that does not tokenize never raises: where tokenize stops (a stray dedent, an unterminated string or
bracket at the end of a snippet), the tracks keep what was read so far and tokenizing restarts on the next line,
with fresh indentation. An unterminated string runs to the end of its restart segment.
"""

from __future__ import annotations

import io
import tokenize

import numpy as np
import pandas as pd

from .parens import bracket_depth, floored_sum

_OPEN, _CLOSE = "([{", ")]}"
_STRING_TYPES = {tokenize.STRING} | {
    getattr(tokenize, n) for n in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END") if hasattr(tokenize, n)
}


def _line_starts(text: str) -> np.ndarray:
    """Offset of the first char of every line (1-based rows index it as ``starts[row - 1]``)."""
    chars = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)  # (n,) code points
    return np.r_[0, np.flatnonzero(chars == ord("\n")) + 1].astype(np.int64)


class _Tracks:
    """Accumulates per-char arrays while tokenizing segments of the text."""

    def __init__(self, text: str):
        n = len(text)
        self.text = text
        self.type = np.full(n, "WS", dtype=object)
        self.string = np.zeros(n, bool)
        self.comment = np.zeros(n, bool)
        self.opens = np.zeros(n, bool)
        self.closes = np.zeros(n, bool)
        self.indent = np.zeros(n + 1, np.int64)  # deltas at line starts
        self.segment_starts: list[int] = []

    def segment(self, start: int, starts: np.ndarray) -> int:
        """Tokenize ``text[start:]`` (start is a line start); returns where the next segment starts."""
        self.segment_starts.append(start)
        base_row = int(np.searchsorted(starts, start, side="right"))  # 1-based row of `start`
        stream = io.StringIO(self.text[start:])
        level = 0

        def offset(row: int, col: int) -> int:
            return int(min(starts[min(base_row + row - 2, len(starts) - 1)] + col, len(self.text)))

        last_row = 1
        open_quotes: list[tuple[int, int]] = []  # unterminated one-line strings, marked after the loop
        try:
            for tok in tokenize.generate_tokens(stream.readline):
                a, b = offset(*tok.start), offset(*tok.end)
                last_row = tok.end[0]
                if tok.type == tokenize.ENDMARKER:
                    break
                if tok.type == tokenize.DEDENT:
                    line0 = offset(tok.start[0], 0)
                    self.indent[line0] -= 1
                    level -= 1
                    continue
                if tok.type == tokenize.INDENT:
                    self.indent[offset(tok.start[0], 0)] += 1
                    level += 1
                self.type[a:b] = tokenize.tok_name[tok.type]
                if tok.type == tokenize.ERRORTOKEN and tok.string[:1] in "'\"":
                    open_quotes.append((a, offset(tok.start[0] + 1, 0) - 1))  # to the end of its line
                if tok.type in _STRING_TYPES:
                    self.string[a:b] = True
                elif tok.type == tokenize.COMMENT:
                    self.comment[a:b] = True
                elif tok.type == tokenize.OP and tok.string in _OPEN:
                    self.opens[a] = True
                elif tok.type == tokenize.OP and tok.string in _CLOSE:
                    self.closes[a] = True
            return len(self.text)
        except (tokenize.TokenError, SyntaxError, ValueError) as e:
            return self._recover(e, base_row, starts, offset, last_row, level)
        finally:
            for a, b in open_quotes:
                self.string[a:b] = True
                self.type[a:b] = "STRING"

    def _recover(self, e: Exception, base_row: int, starts: np.ndarray, offset, last_row: int, level: int) -> int:
        """Close this segment after a tokenize error and say where the next one starts."""
        pos = e.args[1] if isinstance(e, tokenize.TokenError) and len(e.args) > 1 else None
        row = int(pos[0]) if pos else (getattr(e, "lineno", None) or last_row)
        if pos and "string" in str(e.args[0]):
            a = offset(row, pos[1])
            self.string[a:] = True  # an unterminated (multi-line) string runs to the end
            self.type[a:] = "STRING"
            return len(self.text)
        if isinstance(e, tokenize.TokenError):
            return len(self.text)  # EOF inside brackets: everything before was tokenized
        end = offset(max(row, 1), 0)  # retry from the offending line, as a fresh module
        if end <= self.segment_starts[-1]:
            end = offset(max(row, 1) + 1, 0)  # it fails on its own: skip it
        if end <= self.segment_starts[-1]:
            return len(self.text)
        self.indent[end] -= level  # the new segment starts with fresh indentation
        return end


def python_tracks(text: str) -> pd.DataFrame:
    """Tokenize tracks of Python source ``text``, one row per character (columns in the module docstring)."""
    n = len(text)
    tracks = _Tracks(text)
    starts = _line_starts(text)
    pos = 0
    while pos < n:
        pos = tracks.segment(pos, starts)
    chars = np.arange(n)
    line_of = np.searchsorted(starts, chars, side="right") - 1  # (n,)
    col = chars - starts[line_of] if n else chars
    return pd.DataFrame(
        {
            "token_type": pd.array(tracks.type.tolist(), dtype="string"),
            "in_string": tracks.string,
            "in_comment": tracks.comment,
            "bracket_depth": bracket_depth(tracks.opens, tracks.closes),
            "indent_level": floored_sum(tracks.indent[:n]),
            "col": col.astype(np.int32),
        }
    )
