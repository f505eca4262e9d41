"""Python tokenize tracks against hand-built expectations, and graceful behaviour on broken code."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lstmviz.annotate.code import python_tracks

SNIPPET = 'def f(a):\n    s = "x#"  # c\n    return g(a[1], {2: s})\n'


def _marks(text: str, flags) -> str:
    return "".join("^" if f else " " for f in flags)


def test_hand_built_snippet():
    df = python_tracks(SNIPPET)
    assert len(df) == len(SNIPPET)
    lines = SNIPPET.split("\n")
    starts = [0, len(lines[0]) + 1, len(lines[0]) + len(lines[1]) + 2]
    line2 = slice(starts[1], starts[2] - 1)
    #                                   '    s = "x#"  # c'
    assert _marks(lines[1], df.in_string[line2]) == "        ^^^^     "
    assert _marks(lines[1], df.in_comment[line2]) == "              ^^^"
    line3 = slice(starts[2], starts[2] + len(lines[2]))
    #   '    return g(a[1], {2: s})'
    assert "".join(str(d) for d in df.bracket_depth[line3]) == "00000000000011222112222221"
    assert "".join(str(d) for d in df.bracket_depth[: len(lines[0])]) == "000001110"
    assert df.indent_level[: starts[1]].eq(0).all() and df.indent_level[starts[1] :].eq(1).all()
    assert df.col[starts[2] : starts[2] + 5].tolist() == [0, 1, 2, 3, 4]
    assert df.token_type[0] == "NAME" and df.token_type[5] == "OP" and df.token_type[starts[1] - 1] == "NEWLINE"
    assert df.token_type[starts[1] + 8] == "STRING" and df.token_type[starts[1] + 3] == "INDENT"
    assert df.token_type[starts[1] + 5] == "WS"


def test_dedent_and_nested_blocks():
    text = "if a:\n    if b:\n        x\n    y\nz\n"
    df = python_tracks(text)
    level_of_line = [df.indent_level[text.index(ch)] for ch in "axyz"]
    assert level_of_line == [0, 2, 1, 0]


def test_multiline_string_and_brackets_span_lines():
    text = 'x = ("""a\nb""",\n     2)\n'
    df = python_tracks(text)
    assert df.in_string[text.index("b")] and not df.in_string[text.index("2")]
    assert df.bracket_depth[text.index("2")] == 1 and df.bracket_depth[text.rindex("\n")] == 0


@pytest.mark.parametrize(
    "text",
    [
        's = "unterminated\nx = 1\n',  # a one-line string that never closes
        "s = '''never closed\nstill string\n",  # EOF in a multi-line string
        "f(1,\n  2\n",  # EOF in brackets
        "if x:\n    a\n  b\nc = (1)\n",  # an unindent that matches no level
        "x = $ ? `\n\0\n",  # characters that are not Python
        "",
    ],
)
def test_broken_code_never_raises(text):
    df = python_tracks(text)
    assert len(df) == len(text)
    assert (df.bracket_depth >= 0).all() and (df.indent_level >= 0).all()


def test_unterminated_strings_are_marked():
    text = 's = "open\nx = 1\n'
    df = python_tracks(text)
    assert df.in_string[text.index("open")] and not df.in_string[text.index("x")]
    text = "s = '''never\nclosed"
    assert python_tracks(text).in_string[text.index("closed") :].all()


def test_restart_after_bad_dedent_keeps_later_lines():
    text = "if x:\n    a\n  b\nc = (1)\n"
    df = python_tracks(text)
    assert df.token_type[text.index("b")] == "NAME"
    assert df.bracket_depth[text.index("1")] == 1 and df.indent_level[text.index("c")] == 0


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab ()[]{}'\"#:\n\t\\=1")), max_size=60))
def test_any_text_gives_aligned_tracks(text):
    df = python_tracks(text)
    assert len(df) == len(text)
    assert list(df.columns) == ["token_type", "in_string", "in_comment", "bracket_depth", "indent_level", "col"]
