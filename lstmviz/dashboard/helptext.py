"""Docstrings as the pages' help text: Markdown that Streamlit renders as prose, with the math typeset.

The analyses' docstrings are the help the pages show (as in LIT). Shown raw they go wrong in two ways: an
indented docstring (``f.__doc__``) is a Markdown code block, so it renders as cut-off monospace; and the math
written in them, ``∂ℓ_t/∂h_{t−k}``, shows its braces and underscores. :func:`doc_markdown` dedents, cuts off
``Args:``, turns Sphinx roles and reST literals into code spans, and wraps each mathematical word in ``$…$`` as
LaTeX, which ``st.markdown`` typesets with KaTeX. No streamlit here, so it is testable on its own.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

LATEX = {
    "∂": r"\partial ",
    "ℓ": r"\ell ",
    "−": "-",
    "⊙": r"\odot ",
    "…": r"\ldots ",
    "·": r"\cdot ",
    "×": r"\times ",
    "θ": r"\theta ",
    "σ": r"\sigma ",
    "Σ": r"\Sigma ",
    "≥": r"\geq ",
    "≤": r"\leq ",
    "∈": r"\in ",
    "₋₁": "_{-1}",
    "ᵀ": "^T",
}
"""The symbols the docstrings write in Unicode, as LaTeX (``‖`` is handled apart: it opens and closes a norm)."""
_MATH = re.compile(r"_(?:\{|[A-Za-z0-9])|[∂‖⊙₋ᵀ]")
"""What makes a word mathematical: a subscript (``h_t``, ``h_{t−k}``), a partial, a norm, ⊙, ₋₁ or ᵀ."""
_CODE = re.compile(r"(``?)(.+?)\1")
_ROLE = re.compile(r":(?:func|class|data|mod|meth|attr|obj):`~?([^`]+)`")


def doc_markdown(obj: Any) -> str:
    """The description part of ``obj``'s docstring (before ``Args:``) as Markdown: dedented, Sphinx roles and
    reST literals as code spans, each word holding math (see :data:`_MATH`) as inline LaTeX, ``$…$``."""
    doc = (inspect.getdoc(obj) or "").split("\nArgs:")[0].strip()
    return math_markdown(_ROLE.sub(r"`\1`", doc))


def math_markdown(text: str) -> str:
    """``text`` with every mathematical word outside code spans written as ``$LaTeX$`` (its leading ``(`` and
    trailing punctuation left outside), and reST's double-backtick literals as single-backtick code spans."""
    out, at = [], 0
    for m in _CODE.finditer(text):
        out += [_words(text[at : m.start()]), f"`{m.group(2)}`"]
        at = m.end()
    return "".join([*out, _words(text[at:])])


def _words(prose: str) -> str:
    return re.sub(r"\S+", lambda m: _word(m.group(0)), prose)


def _word(word: str) -> str:
    if not _MATH.search(word):
        return word
    core = word.lstrip("(")
    lead = word[: len(word) - len(core)]
    body = core.rstrip(",.;:")
    while body.endswith(")") and body.count(")") > body.count("("):
        body = body[:-1]
    return f"{lead}${latex(body)}${core[len(body) :]}"


def latex(math: str) -> str:
    """A formula written in the docstrings' Unicode (``‖∂ℓ_t/∂h_{t−k}‖``) as LaTeX."""
    for sym, tex in LATEX.items():
        math = math.replace(sym, tex)
    norms = iter([r"\lVert ", r"\rVert "] * (math.count("‖") // 2 + 1))
    math = re.sub("‖", lambda _: next(norms), math)
    return math.replace("$", r"\$").strip()


def equation(line: str) -> str:
    """One of :func:`lstmviz.names.equations`' lines (``"i = σ(W_ii x + b_ii + W_hi h₋₁ + b_hi)"``) as LaTeX,
    each weight's and bias's two-letter subscript kept together (``W_{ii}``)."""
    line = re.sub(r"\b([Wb])_([a-z]{2})\b", r"\1_{\2}", line)
    line = re.sub(r"\b(tanh|relu)\(", r"\\\1(", line)
    return latex(line).replace(r"\relu", r"\operatorname{relu}")
