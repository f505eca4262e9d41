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
    from lstmviz.cli import record_text
    from lstmviz.models.charrnn import CharRNN, CharRNNConfig
    from lstmviz.models.loading import load_model
    from lstmviz.models.tokenizers import Tokenizer
    from lstmviz.models.train import save_checkpoint

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
    from lstmviz.models.charrnn import CharRNN, CharRNNConfig
    from lstmviz.models.loading import load_model
    from lstmviz.models.tokenizers import Tokenizer
    from lstmviz.models.train import save_checkpoint
    from lstmviz.recorder import record_corpus

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
