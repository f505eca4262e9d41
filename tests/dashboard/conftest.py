"""Fixtures for the dashboard tests: a runs root holding two tiny recorded runs of native checkpoints.

``build_runs(root)`` trains nothing: it saves randomly initialised tiny char models (an LSTM and a GRU) as native
checkpoints and records them on a short Python text with code annotation tracks, as ``lstmviz samples`` would.
The recurrent weights are scaled by :data:`WEIGHT_SCALE`: at PyTorch's initial scale every gate stays near 0.5, so
the saturation scatter would be one dot at the origin; scaled, gates saturate and units take sides as in a trained
model, and every page has something to show.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

WEIGHT_SCALE = 5.0
TEXT = '''def greet(name):
    """Say hello."""
    words = ["hello", name]  # a list
    return " ".join(words) + f"({len(name)})"


class Box:
    def __init__(self, items=None):
        self.items = list(items or [])

    def add(self, x):
        self.items.append((x, [x * 2, {"k": x}]))
        return len(self.items)
'''


def build_runs(root: Path) -> Path:
    """Write ``root/tiny_lstm``, ``root/tiny_gru`` and their checkpoints under ``root/../ckpt``; returns root."""
    from lstmviz.models.charrnn import CharRNN, CharRNNConfig
    from lstmviz.models.loading import load_model
    from lstmviz.models.tokenizers import Tokenizer
    from lstmviz.models.train import save_checkpoint
    from lstmviz.record import record_text

    ckpt_dir = root.parent / "ckpt"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer.char(TEXT + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'\n")
    for arch in ("lstm", "gru"):
        torch.manual_seed(0)
        model = CharRNN(CharRNNConfig(arch=arch, vocab_size=len(tok), hidden=12, layers=2, embed=8)).eval()
        with torch.no_grad():
            for weight in model.rnn.parameters():
                weight.mul_(WEIGHT_SCALE)
        ckpt = ckpt_dir / f"tiny_{arch}.pt"
        save_checkpoint(ckpt, model, tok, {"val_bpc": 4.2}, {"steps": 0})
        record_text(
            load_model(ckpt),
            TEXT * 2,
            root / f"tiny_{arch}",
            annotate="code",
            streams=2,
            chunk=64,
            device="cpu",
            progress=False,
        )
    return root


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory) -> Path:
    """A runs root with two tiny recorded runs (LSTM and GRU) of native checkpoints."""
    return build_runs(tmp_path_factory.mktemp("dash") / "runs")


WORDS = """the cat sat on the mat and looked at the door
a dog ran past the window while the rain fell
she said that the old house on the hill was empty
we walked to the river and watched the boats go by
he read the letter twice before he put it away
"""


def build_word_run(root: Path, repeat: int = 4) -> Path:
    """Write ``root/tiny_words``: a randomly initialised word-level LSTM (a native checkpoint with a word
    tokenizer, under ``root/../ckpt``) recorded on ``WORDS`` × ``repeat``, one document per line; returns root."""
    from lstmviz.corpus import record_corpus
    from lstmviz.models.charrnn import CharRNN, CharRNNConfig
    from lstmviz.models.loading import load_model
    from lstmviz.models.tokenizers import Tokenizer
    from lstmviz.models.train import save_checkpoint

    ckpt_dir = root.parent / "ckpt"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer.word(WORDS)
    torch.manual_seed(0)
    model = CharRNN(CharRNNConfig(arch="lstm", vocab_size=len(tok), hidden=12, layers=1, embed=8)).eval()
    with torch.no_grad():
        for weight in model.rnn.parameters():
            weight.mul_(WEIGHT_SCALE)
    ckpt = ckpt_dir / "tiny_words.pt"
    save_checkpoint(ckpt, model, tok, {}, {"steps": 0})
    loaded = load_model(ckpt)
    lines = (WORDS * repeat).splitlines()
    ids = [tok.encode(line) for line in lines]
    docs = np.concatenate([np.full(len(x), d) for d, x in enumerate(ids)])
    flat = np.concatenate(ids)
    meta = {"model_source": loaded.description, "tokenizer": tok.to_json()}
    record_corpus(
        loaded.module,
        flat,
        root / "tiny_words",
        display=tok.display(flat),
        docs=docs,
        mode="sequences",
        call=loaded.call,
        manifest=meta,
        streams=4,
        device="cpu",
        progress=False,
    )
    return root


@pytest.fixture(scope="session")
def word_root(tmp_path_factory) -> Path:
    """A runs root holding one tiny word-level run of several documents."""
    return build_word_run(tmp_path_factory.mktemp("words") / "runs")


FACTORY_CODE = '''
"""A user's own word model, importable only from its code directory (as with --code)."""
import torch
from torch import nn


class TinyWordLSTM(nn.Module):
    def __init__(self, vocab=12, embed=6, hidden=5):
        super().__init__()
        self.emb = nn.Embedding(vocab, embed)
        self.rnn = nn.LSTM(embed, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, ids):
        h, _ = self.rnn(self.emb(ids))
        return self.out(h)


def build():
    return TinyWordLSTM()
'''
FACTORY_VOCAB = ["<unk>", "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "to", "door", "and"]


def build_model_runs(root: Path) -> Path:
    """``root/factory`` (a word model from ``--model h14_tiny_words:build --weights … --code DIR``) and
    ``root/pickled`` (the same module saved whole with torch.save, recorded with trust_pickle); code, weights and
    vocabulary live outside the root, under ``root/../user``, as a user's would. Returns root."""
    from lstmviz.cli import record_text
    from lstmviz.models.loading import load_model

    user = root.parent / "user"
    (user / "code").mkdir(parents=True, exist_ok=True)
    (user / "code" / "h14_tiny_words.py").write_text(FACTORY_CODE)
    (user / "vocab.txt").write_text("\n".join(FACTORY_VOCAB) + "\n")
    loaded = load_model(
        model="h14_tiny_words:build", weights=_tiny_word_weights(user), code=user / "code", tokenizer=user / "vocab.txt"
    )
    text = "the cat sat on the mat and a dog ran to the door " * 3
    record_text(loaded, text, root / "factory", streams=1, device="cpu", progress=False)
    torch.save(loaded.module, user / "whole.pt")
    pickled = load_model(user / "whole.pt", trust_pickle=True, tokenizer=user / "vocab.txt")
    record_text(pickled, text, root / "pickled", streams=1, device="cpu", progress=False)
    return root


def _tiny_word_weights(user: Path) -> Path:
    import importlib
    import sys

    sys.path.insert(0, str(user / "code"))
    try:
        module = importlib.import_module("h14_tiny_words")
    finally:
        sys.path.remove(str(user / "code"))
    torch.manual_seed(1)
    model = module.build()
    with torch.no_grad():
        for weight in model.rnn.parameters():
            weight.mul_(WEIGHT_SCALE)
    torch.save(model.state_dict(), user / "sd.pt")
    return user / "sd.pt"


@pytest.fixture(scope="session")
def model_root(tmp_path_factory) -> Path:
    """A runs root with a factory run and a pickled-module run (see :func:`build_model_runs`)."""
    return build_model_runs(tmp_path_factory.mktemp("models") / "runs")
