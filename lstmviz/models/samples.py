"""The bundled sample models (sample_models/) and how ``lstmviz samples`` records them.

Each sample is a native checkpoint plus the corpus it was trained on. It is recorded on a held-out excerpt from
the end of that corpus (the last ``--val-frac`` that training never saw), with the annotation tracks that
suit the text: Python tokenize tracks for code, nesting depth for the parentheses language.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import UserError

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "sample_models"


@dataclass(frozen=True)
class Sample:
    """A bundled checkpoint, its corpus, and its annotation (``"code"`` or ``"parens"``)."""

    name: str
    checkpoint: str
    corpus: str
    annotate: str

    def excerpt(self, text: str, chars: int) -> str:
        """About the last ``chars`` characters of ``text``, starting at a line (for code: a file) boundary."""
        if len(text) <= chars:
            return text
        cut = len(text) - chars
        start = text.find("\n# ==== ", cut) + 1 if self.annotate == "code" else 0
        if start <= 0:
            start = text.find("\n", cut) + 1
        return text[start:] if 0 < start < len(text) else text[cut:]


SAMPLES = (
    Sample("code_lstm", "code_lstm.pt", "corpora/python_stdlib.txt", "code"),
    Sample("code_gru", "code_gru.pt", "corpora/python_stdlib.txt", "code"),
    Sample("code_rnn", "code_rnn.pt", "corpora/python_stdlib.txt", "code"),
    Sample("parens_lstm", "parens_lstm.pt", "corpora/parens.txt", "parens"),
)


def annotations(kind: str, text: str) -> pd.DataFrame | None:
    """Annotation tracks of ``text`` for a char model: ``"code"``, ``"parens"`` or ``"none"``."""
    if kind == "code":
        from ..annotate.code import python_tracks

        return python_tracks(text)
    if kind == "parens":
        from ..annotate.parens import paren_depth

        return paren_depth(text)
    return None


def pick(only: Sequence[str] | None) -> list[Sample]:
    """The samples named in ``only`` (all when empty), or a :class:`UserError` naming the unknown ones."""
    if not only:
        return list(SAMPLES)
    known = {s.name: s for s in SAMPLES}
    unknown = [n for n in only if n not in known]
    if unknown:
        raise UserError(f"no sample model named {', '.join(unknown)}; there are {', '.join(known)}")
    return [known[n] for n in only]
