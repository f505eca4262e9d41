"""Live mode with the user's own models, the paths a browser may name, and the model card of a factory run.

The oracle for live mode is the module itself: the text recorded in the browser must show the hidden state
that the user's own nn.LSTM returns on that text, rebuilt from the manifest of the run (factory, weights, code
directory, vocabulary) in a process that has never imported the user's code.
"""

from __future__ import annotations

import importlib
import shutil
import sys

import numpy as np
import pytest
import torch
from test_intervene_page import array
from test_pages import app, assert_clean, figure, type_live, visit

from lstmviz.dashboard import data
from lstmviz.dashboard import live as live_mode
from lstmviz.errors import UserError
from lstmviz.models import samples
from lstmviz.models.tokenizers import Tokenizer

TEXT = "the dog sat on a mat"


@pytest.fixture
def fresh_import(monkeypatch):
    """Forget the user's module and its directory on sys.path, as in a dashboard started afresh."""
    monkeypatch.delitem(sys.modules, "h14_tiny_words", raising=False)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not p.endswith("/user/code")])
    live_mode._live_loaded.clear()
    live_mode._live_run.clear()


def live(at, text: str):
    at.toggle(key="live").set_value(True).run()
    return type_live(at, text)


def test_live_mode_rebuilds_a_factory_model_from_the_manifest(model_root, monkeypatch, fresh_import):
    at = visit(app(model_root, monkeypatch, run="factory", act="rnn.l0.fwd.h", unit="2"), "text")
    live(at, TEXT)
    assert_clean(at)
    boxes = figure(at, 0)["data"][0]
    assert boxes["text"] == TEXT.split()
    spec = (model_root / "factory" / "manifest.json").read_text()
    assert '"pickled": false' in spec
    user = model_root.parent / "user"
    sys.path.insert(0, str(user / "code"))
    module = importlib.import_module("h14_tiny_words").build()
    module.load_state_dict(torch.load(user / "sd.pt", weights_only=True))
    ids = torch.as_tensor(Tokenizer.from_vocab_file(user / "vocab.txt").encode(TEXT))[None]
    with torch.no_grad():
        h, _ = module.rnn(module.emb(ids))  # the user's own LSTM on the typed text: [1, T, units]
    np.testing.assert_allclose(array(boxes["marker"]["color"]), h[0, :, 2].numpy(), atol=1e-3)  # float16 run


def test_live_mode_never_unpickles(model_root, monkeypatch, fresh_import):
    loads = []
    real = torch.load

    def spy(*args, **kwargs):
        loads.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    at = visit(app(model_root, monkeypatch, run="pickled"), "text")
    live(at, TEXT)
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert "pickled module" in error and "never unpickles" in error
    at.text_input(key="live_ckpt").input(str(model_root.parent / "user" / "whole.pt")).run()  # typed: refused
    [error] = [e.value for e in at.error]
    assert "outside the runs root" in error
    assert all(w is True for w in loads), loads


def test_a_typed_checkpoint_is_read_only_under_the_runs_root(runs_root, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    (root / "models").mkdir(parents=True)
    (root / "tiny_lstm").symlink_to(runs_root / "tiny_lstm")
    shutil.copy(runs_root.parent / "ckpt" / "tiny_lstm.pt", root / "models" / "mine.pt")
    at = visit(app(root, monkeypatch, run="tiny_lstm"), "text")
    live(at, "def f(x):\n    return x\n")
    for outside in (str(runs_root.parent / "ckpt" / "tiny_lstm.pt"), f"{root}/../../{tmp_path.name}/x.pt", "/etc"):
        at.text_input(key="live_ckpt").input(outside).run()
        assert not at.exception
        [error] = [e.value for e in at.error]
        assert "outside the runs root" in error, outside
    at.text_input(key="live_ckpt").input(str(root / "models" / "mine.pt")).run()
    assert_clean(at)
    assert figure(at, 0)["data"][0]["text"][:3] == ["d", "e", "f"]


@pytest.mark.parametrize("where", ["url", "sidebar"])
def test_a_run_outside_the_runs_root_is_refused(runs_root, word_root, monkeypatch, where):
    outside = str(word_root / "tiny_words")  # a real run, in another folder than the app's runs root
    if where == "url":
        at = app(runs_root, monkeypatch, run=outside)  # the first run of the page the link opens says so
    else:
        at = visit(app(runs_root, monkeypatch), "text")
        at.text_input(key="run_typed").input(outside).run()
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert error.startswith("Not opened: the run") and "outside the runs root" in error
    assert at.selectbox(key="run").value != outside and outside not in at.selectbox(key="run").options
    at.selectbox(key="run").set_value(str(runs_root / "tiny_gru")).run()  # and the user gets out of it
    assert_clean(at)


def test_browsable_folds_dots_and_allows_the_samples(tmp_path):
    root = tmp_path / "runs"
    assert data.browsable(root / "a" / "b", root=root) == root / "a" / "b"
    assert data.browsable(samples.SAMPLES_DIR / "x.pt", root=root) == samples.SAMPLES_DIR / "x.pt"
    for bad in (root / ".." / "runs2", tmp_path, "/etc/passwd", root.parent / "runs_other"):
        with pytest.raises(UserError, match="outside the runs root"):
            data.browsable(bad, root=root)


def test_the_model_card_names_the_factory_and_its_weights(model_root, monkeypatch):
    at = visit(app(model_root, monkeypatch, run="factory"), "overview")
    assert_clean(at)
    card = at.table[0].value["value"].to_dict()
    user = model_root.parent / "user"
    assert card["factory"] == "h14_tiny_words:build"
    assert card["weights"] == str(user / "sd.pt") and card["code"] == str(user / "code")
    assert "checkpoint" not in card
    at = visit(app(model_root, monkeypatch, run="pickled"), "overview")
    assert at.table[0].value["value"].to_dict()["checkpoint"] == f"{user / 'whole.pt'} (a pickled module)"


def test_live_mode_skips_characters_the_vocabulary_lacks_and_says_which(runs_root, monkeypatch):
    """Curly quotes pasted from a word processor: the tiny model's vocabulary has neither them nor an UNK symbol,
    so they are left out, the page says so in one line, and what is drawn is the model's own state on the rest."""
    typed = "x = “hi”\nprint(x)\n"
    kept = typed.replace("“", "").replace("”", "")
    at = visit(app(runs_root, monkeypatch, run="tiny_lstm", act="rnn.l1.fwd.h", unit="3"), "text")
    live(at, typed)
    assert_clean(at)
    [note] = [i.value for i in at.info if "vocabulary" in i.value]
    assert "skipped" in note and "'“'" in note and "'”'" in note
    boxes = figure(at, 0)["data"][0]
    assert "".join(boxes["text"]) == kept.replace("\n", "↵")  # line ends drawn as ↵
    loaded = data.load_model(runs_root.parent / "ckpt" / "tiny_lstm.pt")
    ids = torch.as_tensor(loaded.tokenizer.encode(kept))[None]
    with torch.no_grad():
        h, _ = loaded.module.rnn(loaded.module.embedding(ids))  # the model's own LSTM on the kept text
    np.testing.assert_allclose(array(boxes["marker"]["color"]), h[0, :, 3].numpy(), atol=2e-3)  # float16 run


def test_fit_vocabulary_maps_to_unk_or_skips():
    with_unk = Tokenizer("char", ["a", "b", " ", "<unk>"], "<unk>")
    assert live_mode.fit_vocabulary(with_unk, "ab ab") == ("ab ab", "")
    text, note = live_mode.fit_vocabulary(with_unk, "a “b” a“")
    assert text == "a “b” a“"  # the encoder reads them as <unk>
    assert note.startswith("Not in the model's vocabulary, so read as <unk>") and "'“' (2×), '”'" in note
    assert with_unk.encode(text).tolist() == [0, 2, 3, 1, 3, 2, 0, 3]
    no_unk = Tokenizer("char", ["a", "b"])
    assert live_mode.fit_vocabulary(no_unk, "a-b-a")[0] == "aba"
    words = Tokenizer("word", ["the", "cat", "<eos>"], eos="<eos>")
    text, note = live_mode.fit_vocabulary(words, "the dog cat\nthe  emu")
    assert text == "the cat\nthe" and "'dog', 'emu'" in note and "skipped" in note
    assert words.split(text) == ["the", "cat", "<eos>", "the", "<eos>"]
    with pytest.raises(UserError, match="no character of the text is in the model's vocabulary"):
        live_mode.fit_vocabulary(no_unk, "“”")
