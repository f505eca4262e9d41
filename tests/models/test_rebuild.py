"""model_source.rebuild: what a run's manifest says rebuilds its model, with absolute paths, never unpickling."""

from __future__ import annotations

import os

import pytest
import torch
from user_models import VOCAB, WordLanguageModel

from lstmviz.errors import UserError
from lstmviz.models.loading import load_model, rebuild
from lstmviz.models.tokenizers import Tokenizer


def test_a_factory_is_rebuilt_from_absolute_paths_in_another_directory(tmp_path, user_models, monkeypatch):
    torch.manual_seed(4)
    torch.save(WordLanguageModel().state_dict(), tmp_path / "sd.pt")
    (tmp_path / "vocab.txt").write_text("\n".join("abcdefghij"))
    monkeypatch.chdir(tmp_path)
    code = os.path.relpath(user_models, tmp_path)
    loaded = load_model(model="user_models:wlm", weights="sd.pt", code=code, tokenizer="vocab.txt")
    spec = loaded.description["rebuild"]
    assert spec == {
        "checkpoint": None,
        "model": "user_models:wlm",
        "weights": str(tmp_path / "sd.pt"),
        "code": str(user_models.resolve()),
        "tokenizer": str(tmp_path / "vocab.txt"),
        "convention": "ids_hidden",
        "layout": "seq",
        "pickled": False,
    }
    assert loaded.description["weights"] == str(tmp_path / "sd.pt")
    monkeypatch.chdir(tmp_path.parent)  # relative paths would now point nowhere
    again = rebuild(loaded.description, tokenizer=Tokenizer.from_json(loaded.tokenizer.to_json()))
    ids = torch.randint(0, VOCAB, (2, 5))
    with torch.no_grad():
        assert torch.equal(again.call(again.module, ids), loaded.call(loaded.module, ids))
    assert again.tokenizer.vocab == list("abcdefghij")


def test_a_native_checkpoint_is_rebuilt(native, tmp_path, monkeypatch):
    path, model, _ = native
    monkeypatch.chdir(path.parent)
    loaded = load_model(path.name)
    assert loaded.description["checkpoint"] == str(path)
    assert loaded.description["rebuild"]["checkpoint"] == str(path)
    monkeypatch.chdir(tmp_path.parent)
    again = rebuild(loaded.description)
    ids = torch.randint(0, 9, (1, 6))
    with torch.no_grad():
        assert torch.equal(again.call(again.module, ids), model(ids))


def test_a_pickled_module_is_never_rebuilt(native, tmp_path):
    _, model, tok = native
    torch.save(model, tmp_path / "whole.pt")
    loaded = load_model(tmp_path / "whole.pt", trust_pickle=True, tokenizer=tok)
    assert loaded.description["rebuild"]["pickled"] is True
    with pytest.raises(UserError, match="pickled module: rebuilding it would unpickle"):
        rebuild(loaded.description)
    with pytest.raises(UserError, match="does not say how to rebuild"):
        rebuild({"source": "factory"})
