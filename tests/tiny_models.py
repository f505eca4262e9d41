"""Tiny models shared by the tests."""

from __future__ import annotations

import torch
from torch import nn


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
