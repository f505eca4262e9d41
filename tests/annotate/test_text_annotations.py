"""User annotation CSVs aligned to tokens."""

from __future__ import annotations

import pytest

from lstmviz.annotate.text import read_annotations
from lstmviz.errors import UserError


def test_columns_are_read_and_token_column_checked(tmp_path):
    (tmp_path / "a.csv").write_text("token,noun,score\nthe,0,0.5\ncat,1,1.5\n")
    df = read_annotations(tmp_path / "a.csv", ["the", "cat"])
    assert list(df.columns) == ["noun", "score"]
    assert df.noun.tolist() == [0, 1] and df.score.tolist() == [0.5, 1.5]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("x\n1\n", "has 1 rows but the text has 2 tokens"),
        ("x\n1\n2\n3\n", "has 3 rows but the text has 2 tokens"),
        ("token,x\nthe,1\ndog,2\n", "row 1: token 'dog' but the text has 'cat'"),
        ("loss\n1\n2\n", "names the run already uses"),
        ("", "is empty"),
    ],
)
def test_errors(tmp_path, content, message):
    (tmp_path / "a.csv").write_text(content)
    with pytest.raises(UserError, match=message):
        read_annotations(tmp_path / "a.csv", ["the", "cat"])


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such annotation file"):
        read_annotations(tmp_path / "none.csv", ["a"])
