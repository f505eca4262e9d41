"""The reference character-level model: embedding → LSTM/GRU/RNN → linear decoder.

It is the char-rnn of Karpathy, Johnson & Fei-Fei (2015), small enough to train on a CPU. Shape letters:
``B`` batch, ``T`` time, ``E`` embedding size, ``H`` hidden size, ``L`` layers, ``V`` vocabulary size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn

Arch = Literal["lstm", "gru", "rnn"]
ARCHS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


@dataclass
class CharRNNConfig:
    """Everything needed to rebuild a :class:`CharRNN`; stored next to the weights in native checkpoints."""

    arch: Arch = "lstm"
    vocab_size: int = 128
    hidden: int = 256
    layers: int = 2
    embed: int = 64
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {sorted(ARCHS)}, got {self.arch!r}")
        for field in ("vocab_size", "hidden", "layers", "embed"):
            if int(getattr(self, field)) < 1:
                raise ValueError(f"{field} must be at least 1, got {getattr(self, field)}")

    def to_json(self) -> dict:
        return asdict(self)


class CharRNN(nn.Module):
    """``ids [B, T] → logits [B, T, V]``. The recurrent module is ``self.rnn`` (batch-first), so activation
    names read ``rnn.l0.fwd.c`` and so on."""

    def __init__(self, config: CharRNNConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embed)
        # Dropout between stacked layers only; PyTorch warns (and does nothing) for a single layer.
        self.rnn = ARCHS[config.arch](
            config.embed,
            config.hidden,
            config.layers,
            batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.decoder = nn.Linear(config.hidden, config.vocab_size)

    def forward(self, ids: torch.Tensor, hidden: torch.Tensor | tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """ids: int64 ``[B, T]``; hidden: the module's state (``h [L, B, H]``, or ``(h, c)`` for LSTM) or None
        for zeros. Returns logits ``[B, T, V]``. Use :meth:`step` to get the final state too."""
        return self.step(ids, hidden)[0]

    def step(
        self, ids: torch.Tensor, hidden: torch.Tensor | tuple[torch.Tensor, ...] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, ...]]:
        """Like :meth:`forward`, and also returns the final state, for truncated BPTT and sampling."""
        x = self.embedding(ids)  # (B, T, E)
        y, hidden = self.rnn(x, hidden)  # (B, T, H)
        return self.decoder(y), hidden  # (B, T, V)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
