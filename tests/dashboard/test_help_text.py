"""The pages' "How it is computed" help: prose and typeset math, never a code block of raw docstring.

The oracle is a CommonMark parser (markdown-it-py, as Streamlit's renderer follows CommonMark): an indented
docstring is an indented code block to it, exactly as it was drawn in the browser, cut off in monospace.
"""

from __future__ import annotations

import pytest
from markdown_it import MarkdownIt
from test_pages import app, assert_clean, visit

from lstmviz.analysis import gradients, select_match
from lstmviz.dashboard import helptext, widgets

PARSER = MarkdownIt("commonmark")


def blocks(markdown: str) -> set[str]:
    """The kinds of block CommonMark makes of ``markdown`` (``paragraph_open``, ``code_block``, ``fence``, …)."""
    return {t.type for t in PARSER.parse(markdown)}


def outside_math(markdown: str) -> str:
    """``markdown`` without its ``$…$`` spans and code spans."""
    return "".join(part for k, part in enumerate(markdown.split("$")) if k % 2 == 0)


@pytest.mark.parametrize(
    ("page", "label"),
    [
        ("gradients", "How it is computed"),
        ("select", "How select and match work"),
        ("saturation", "How saturation is counted"),
        ("neurons", "How units are scored"),
        ("projection", "How the map is made"),
        ("units", "How units are labelled"),
    ],
)
def test_help_is_markdown_prose_with_math_not_code(runs_root, monkeypatch, page, label):
    """The failure this fixes: the gradient and select pages passed ``f.__doc__`` as it is, indented, so all but
    its first line was a code block: cut-off monospace with ``h_{t−k}`` written out."""
    at = visit(app(runs_root, monkeypatch), page)
    assert_clean(at)
    (expander,) = [e for e in at.expander if e.label == label]
    assert not expander.code and expander.markdown
    for element in expander.markdown:
        kinds = blocks(element.value)
        assert "paragraph_open" in kinds and not kinds & {"code_block", "fence"}, element.value
        assert "_{" not in outside_math(element.value) and "‖" not in outside_math(element.value)


def test_gradient_help_typesets_the_norms_it_describes(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch), "gradients")
    (expander,) = [e for e in at.expander if e.label == "How it is computed"]
    text = " ".join(m.value for m in expander.markdown)
    assert r"$\lVert \partial \ell _t/\partial h_{t-k}\rVert$" in text
    assert "How it is computed." in text  # the module's account of the method, not only what it measures


def test_math_words_become_latex_and_the_rest_is_left_alone():
    assert helptext.math_markdown("(‖h_t‖), and h₋₁ ⊙ c.") == r"($\lVert h_t\rVert$), and $h_{-1}$ $\odot$ c."
    assert helptext.math_markdown("see ``low_t`` and `x_{i}`") == "see `low_t` and `x_{i}`"  # code stays code
    assert helptext.math_markdown("the loss at step t (every layer)") == "the loss at step t (every layer)"
    assert helptext.math_markdown("f(x_t)") == "$f(x_t)$"  # a balanced closing bracket belongs to the formula


@pytest.mark.parametrize("obj", [gradients, gradients.gradient_flow, select_match.select, select_match.match])
def test_help_text_cuts_args_and_roles(obj):
    text = widgets.help_text(obj)
    assert "Args:" not in text and ":func:" not in text and ":mod:" not in text
    assert not blocks(text) & {"code_block", "fence"}
