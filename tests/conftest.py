"""Shared fixtures: tiny models and a tiny recorded run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import lstmviz


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


class TinyCharModel(nn.Module):
    """Embedding → recurrent module → linear decoder, the shape of a char-rnn."""

    def __init__(self, vocab: int = 12, hidden: int = 8, layers: int = 2, cell: type[nn.RNNBase] = nn.LSTM):
        super().__init__()
        self.embed = nn.Embedding(vocab, 6)
        self.rnn = cell(6, hidden, layers, batch_first=True)
        self.decoder = nn.Linear(hidden, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[B, T]`` → logits ``[B, T, V]``."""
        return self.decoder(self.rnn(self.embed(ids))[0])


@pytest.fixture
def tiny_model() -> TinyCharModel:
    torch.manual_seed(0)
    return TinyCharModel().eval()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> lstmviz.Run:
    """A 600-token run of a 2-layer 8-unit LSTM over a random 12-symbol text."""
    torch.manual_seed(0)
    model = TinyCharModel().eval()
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 12, 600)
    display = [chr(ord("a") + i) for i in ids]
    out = tmp_path_factory.mktemp("runs") / "tiny"
    lstmviz.record_corpus(model, ids, out, streams=3, chunk=50, display=display, progress=False)
    return lstmviz.open_run(out)
