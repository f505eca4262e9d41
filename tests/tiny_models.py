"""Tiny models shared by the tests."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

import lstmviz


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


def record_argv(where: Path, cell: str) -> list[str]:
    """``lstmviz record --checkpoint … --text …``: a 1-layer char model of ``cell`` ("lstm", "gru") saved as a
    checkpoint under ``where``, with the short code text it was built for (no ``--out``)."""
    from lstmviz.models.charrnn import CharRNN, CharRNNConfig
    from lstmviz.models.tokenizers import Tokenizer
    from lstmviz.models.train import save_checkpoint

    text = "def f(x):\n    return (x + 1) * 2\n" * 20
    tok = Tokenizer.char(text)
    torch.manual_seed(0)
    save_checkpoint(where / "m.pt", CharRNN(CharRNNConfig(cell, len(tok), hidden=8, layers=1, embed=4)), tok, {}, {})
    (where / "t.txt").write_text(text)
    return ["record", "--checkpoint", str(where / "m.pt"), "--text", str(where / "t.txt")]


class DiesOnce(TinyCharModel):
    """Kills its worker process at forward number ``at`` (from 0) of the whole recording, counted across
    processes by exclusively created files ``<marker>.<k>``: a shard's task dies once, and its retry lives."""

    def __init__(self, marker: str, at: int):
        super().__init__()
        self.marker, self.at = marker, at

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        k = 0
        while True:
            try:
                os.close(os.open(f"{self.marker}.{k}", os.O_CREAT | os.O_EXCL))
                break
            except FileExistsError:
                k += 1
        if k == self.at:
            os._exit(1)
        return super().forward(ids)


class AttentionDecoder(nn.Module):
    """A seq2seq decoder in the style of the attention tutorials: an nn.LSTM encoder, then a step cell fed
    ``[embedding | context]`` one target token at a time, with dot-product attention over the encoder's outputs.
    """

    def __init__(self, cell: type[nn.RNNCellBase] = nn.LSTMCell, vocab: int = 11, embed: int = 4, hidden: int = 6):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.encoder = nn.LSTM(embed, hidden, batch_first=True)
        self.cell = cell(embed + hidden, hidden)
        self.decoder = nn.Linear(2 * hidden, vocab)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor, hx=None) -> torch.Tensor:
        """src ``[B, S]``, tgt ``[B, T]`` (teacher forcing) → logits ``[B, T, V]``."""
        memory, _ = self.encoder(self.embed(src))  # (B, S, H)
        h = memory.new_zeros(memory.shape[0], memory.shape[2])
        context = memory.mean(1)
        state, logits = hx, []
        for t in range(tgt.shape[1]):
            state = self.cell(torch.cat([self.embed(tgt[:, t]), context], dim=1), state)
            h = state[0] if isinstance(state, tuple) else state  # (B, H)
            weights = torch.softmax((memory @ h.unsqueeze(2)).squeeze(2), dim=1)  # (B, S)
            context = (weights.unsqueeze(2) * memory).sum(1)  # (B, H)
            logits.append(self.decoder(torch.cat([h, context], dim=1)))
        return torch.stack(logits, dim=1)


class CellCharModel(nn.Module):
    """A char model that steps a cell over ``ids [B, T]`` itself, starting each forward from ``hx=None``."""

    def __init__(self, cell: type[nn.Module] = nn.LSTMCell, vocab: int = 12, hidden: int = 8):
        super().__init__()
        self.embed = nn.Embedding(vocab, 5)
        self.cell = cell(5, hidden)
        self.decoder = nn.Linear(hidden, vocab)

    def forward(self, ids: torch.Tensor, hx=None) -> torch.Tensor:
        """ids ``[B, T]`` → logits ``[B, T, V]``."""
        x, hs = self.embed(ids), []
        for t in range(ids.shape[1]):
            hx = self.cell(x[:, t], hx)
            hs.append(hx[0] if isinstance(hx, tuple) else hx)
        return self.decoder(torch.stack(hs, dim=1))


class LayerNormLSTMCell(nn.Module):
    """An LSTM cell with layer norm on its gate pre-activations and on c (Ba et al. 2016), recorded with tap.

    The state it takes and returns is ``(h, c)``, each ``[B, H]``, as nn.LSTMCell's; ``hx=None`` is zeros.
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.ih = nn.Linear(input_size, 4 * hidden_size)
        self.hh = nn.Linear(hidden_size, 4 * hidden_size, bias=False)
        self.norm_gates = nn.LayerNorm(4 * hidden_size)
        self.norm_c = nn.LayerNorm(hidden_size)

    def forward(self, x: torch.Tensor, hx=None) -> tuple[torch.Tensor, torch.Tensor]:
        if hx is None:
            hx = (x.new_zeros(x.shape[0], self.hidden_size),) * 2
        h, c = hx
        i, f, g, o = self.norm_gates(self.ih(x) + self.hh(h)).chunk(4, dim=1)
        i = lstmviz.tap(self, "i", torch.sigmoid(i), gate=True)
        f = lstmviz.tap(self, "f", torch.sigmoid(f), gate=True)
        o = lstmviz.tap(self, "o", torch.sigmoid(o), gate=True)
        g = lstmviz.tap(self, "g", torch.tanh(g))
        c = lstmviz.tap(self, "c", f * c + i * g)
        h = lstmviz.tap(self, "h", o * torch.tanh(self.norm_c(c)))
        return h, c
