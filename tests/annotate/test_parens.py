"""Nesting depth against a direct counter."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lstmviz.annotate.parens import paren_depth


def _counted(text: str) -> list[int]:
    out, depth = [], 0
    for ch in text:
        if ch == "(":
            depth += 1
            out.append(depth)
        elif ch == ")":
            out.append(depth)
            depth = max(depth - 1, 0)
        else:
            out.append(depth)
    return out


def test_hand_example():
    assert paren_depth("a(b(c))").depth.tolist() == [0, 1, 1, 2, 2, 2, 1]
    assert paren_depth("))(").depth.tolist() == [0, 0, 1]  # extra closers are ignored
    assert paren_depth("[{x}]", open="[{", close="]}").depth.tolist() == [1, 2, 2, 2, 1]
    assert paren_depth("").depth.tolist() == []


@given(st.text(alphabet="()ab", max_size=80))
def test_matches_a_direct_count(text):
    assert paren_depth(text).depth.tolist() == _counted(text)
