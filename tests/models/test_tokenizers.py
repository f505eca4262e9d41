"""Tokenizers: round trips, UNK handling, vocabulary files, and errors that name the offending symbols."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lstmviz.errors import UserError
from lstmviz.models.tokenizers import Tokenizer, read_text


@given(st.text(min_size=1, max_size=200))
def test_char_round_trip(text):
    tok = Tokenizer.char(text)
    ids = tok.encode(text)
    assert ids.dtype == np.int64 and len(ids) == len(text)
    assert tok.decode(ids) == text
    assert tok.display(ids) == list(text)
    assert Tokenizer.from_json(json.loads(json.dumps(tok.to_json()))).encode(text).tolist() == ids.tolist()


def test_char_ids_are_sorted_symbols():
    tok = Tokenizer.char("cab\n")
    assert tok.vocab == ["\n", "a", "b", "c"]
    assert tok.encode("abc\n").tolist() == [1, 2, 3, 0]


def test_unknown_chars_are_named_without_unk():
    tok = Tokenizer.char("abc")
    with pytest.raises(UserError, match=r"2 symbol\(s\) not in the char vocabulary of 3 and no UNK") as e:
        tok.encode("abxcxé")
    assert "'x' (2×)" in str(e.value) and "'é' (1×)" in str(e.value)


def test_unknown_chars_map_to_unk():
    tok = Tokenizer.char("abc", unk="?")
    assert tok.vocab == ["a", "b", "c", "?"]
    assert tok.encode("azb").tolist() == [0, 3, 1]


def test_many_unknowns_are_summarised():
    tok = Tokenizer.char("a")
    with pytest.raises(UserError, match="and 2 more"):
        tok.encode("bcdefghijk")


def test_word_whitespace_split():
    tok = Tokenizer.word("the cat the  dog\nthe")
    assert tok.vocab == ["the", "cat", "dog", "<unk>"]  # most frequent first, then alphabetical
    assert tok.encode("the bird dog").tolist() == [0, 3, 2]
    assert tok.display([1, 0]) == ["cat", "the"]
    assert tok.decode([0, 1]) == "the cat"


def test_word_regex_split():
    tok = Tokenizer.word("f(x, y)", pattern=r"\w+|[^\w\s]", unk=None)
    assert tok.split("f(x, y)") == ["f", "(", "x", ",", "y", ")"]
    with pytest.raises(UserError, match="'z'"):
        tok.encode("f(z)")


def test_vocab_file_json_and_lines(tmp_path):
    (tmp_path / "v.json").write_text(json.dumps(["<unk>", "hello", "world"]))
    (tmp_path / "v.txt").write_text("a\nb\nc\n")
    words = Tokenizer.from_vocab_file(tmp_path / "v.json")
    assert (words.kind, words.unk) == ("word", "<unk>")
    assert words.encode("hello there world").tolist() == [1, 0, 2]
    chars = Tokenizer.from_vocab_file(tmp_path / "v.txt")
    assert (chars.kind, chars.unk, chars.vocab) == ("char", None, ["a", "b", "c"])
    assert chars.encode("cab").tolist() == [2, 0, 1]


@pytest.mark.parametrize(
    ("content", "message"),
    [("[1, 2]", "list of strings"), ('["a", ', "does not parse"), ("a\na\n", "lists 'a' twice"), ("", "empty")],
)
def test_bad_vocab_files(tmp_path, content, message):
    (tmp_path / "v").write_text(content)
    with pytest.raises(UserError, match=message):
        Tokenizer.from_vocab_file(tmp_path / "v")


def test_bad_constructions():
    with pytest.raises(UserError, match="kind must be"):
        Tokenizer("byte", ["a"])
    with pytest.raises(UserError, match="UNK token '#' is not in the vocabulary"):
        Tokenizer("char", ["a"], unk="#")
    with pytest.raises(UserError, match="only single characters"):
        Tokenizer("char", ["a", "bc"])
    with pytest.raises(UserError, match="bad word pattern"):
        Tokenizer("word", ["a"], pattern="(")
    with pytest.raises(UserError, match="outside the vocabulary of 1"):
        Tokenizer("char", ["a"]).display([1])


def test_read_text_errors(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    (tmp_path / "blank.txt").write_text(" \n\t")
    with pytest.raises(UserError, match=r"not UTF-8 text: byte 0xe9 at offset 3"):
        read_text(tmp_path / "latin1.txt")
    with pytest.raises(UserError, match="is empty"):
        read_text(tmp_path / "blank.txt")
    with pytest.raises(UserError, match="no such file"):
        read_text(tmp_path / "nope.txt")
    with pytest.raises(UserError, match="is a directory"):
        read_text(tmp_path)


def test_a_char_vocabulary_with_special_symbols_still_splits_by_character(tmp_path):
    (tmp_path / "v.json").write_text(json.dumps(["<pad>", "<unk>", "[CLS]", "a", "b", " "]))
    tok = Tokenizer.from_vocab_file(tmp_path / "v.json")
    assert (tok.kind, tok.unk) == ("char", "<unk>")
    assert tok.encode("ab a<pad>").tolist() == [3, 4, 5, 3, 1, 1, 3, 1, 1]  # "<pad>" typed in a text is 5 chars
    (tmp_path / "w.json").write_text(json.dumps(["<pad>", "<unk>", "a", "bc"]))
    assert Tokenizer.from_vocab_file(tmp_path / "w.json").kind == "word"  # a real multi-character entry


@pytest.mark.parametrize("text", ["one two\n\nthree  four\nfive", "ab cd\r\nef\rgh\n", "xy\n", "\n\n", "no newline"])
def test_a_word_vocabulary_with_eos_reads_lines_as_word_language_models_data_py(tmp_path, text):
    """The oracle: data.py's ``for line in open(path): line.split() + ['<eos>']`` over the same file."""
    (tmp_path / "t.txt").write_bytes(text.encode())
    with open(tmp_path / "t.txt", encoding="utf8") as f:
        expect = [w for line in f for w in [*line.split(), "<eos>"]]
    words = sorted({w for w in expect if w != "<eos>"})
    (tmp_path / "v.txt").write_text("\n".join(["<unk>", *words, "<eos>"]) + "\n")
    tok = Tokenizer.from_vocab_file(tmp_path / "v.txt")
    assert tok.eos == "<eos>" and tok.split(text) == expect
    assert tok.display(tok.encode(text)) == expect
    assert Tokenizer.from_json(tok.to_json()).split(text) == expect
