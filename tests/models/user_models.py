"""Models as users write them, loaded in tests with ``--code tests/models --model user_models:<factory>``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

VOCAB = 10


class WordLanguageModel(nn.Module):
    """The shape of PyTorch's examples/word_language_model: sequence-first, ``forward(input, hidden)``,
    ``init_hidden(bsz)``, and flattened log-probabilities ``[T·B, V]`` as output."""

    def __init__(self, ntoken: int = VOCAB, ninp: int = 6, nhid: int = 8, nlayers: int = 2):
        super().__init__()
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers)
        self.decoder = nn.Linear(nhid, ntoken)
        self.nlayers, self.nhid, self.ntoken = nlayers, nhid, ntoken

    def forward(self, input, hidden):
        emb = self.encoder(input)
        output, hidden = self.rnn(emb, hidden)
        decoded = self.decoder(output).view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        return (weight.new_zeros(self.nlayers, bsz, self.nhid), weight.new_zeros(self.nlayers, bsz, self.nhid))


class StrictHidden(WordLanguageModel):
    """Like :class:`WordLanguageModel` but it touches the hidden state, so ``hidden=None`` fails."""

    def forward(self, input, hidden):
        hidden = (hidden[0] * 1.0, hidden[1])
        return super().forward(input, hidden)


class BatchFirstGRU(nn.Module):
    """``model(ids [B, T]) -> logits [B, T, V]`` with a batch-first GRU."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 5)
        self.gru = nn.GRU(5, 7, batch_first=True)
        self.out = nn.Linear(7, VOCAB)

    def forward(self, ids):
        return self.out(self.gru(self.emb(ids))[0])


class MaxLength(BatchFirstGRU):
    """Refuses sequences longer than 16 steps, as a model with a table of 16 learned positions would."""

    def __init__(self, error: type[Exception] = IndexError):
        super().__init__()
        self.error = error

    def forward(self, ids):
        if ids.shape[1] > 16:
            raise self.error(f"position {ids.shape[1] - 1} is past this model's 16 positions")
        return super().forward(ids)


class Flattening(nn.Module):
    """Feeds all ids as one sequence, so no layout can be told apart from the other."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 4)
        self.rnn = nn.RNN(4, 4, batch_first=True)

    def forward(self, ids):
        return self.rnn(self.emb(ids.reshape(1, -1)))[0]


class NoRecurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 4)
        self.lin = nn.Linear(4, VOCAB)

    def forward(self, ids):
        return self.lin(self.emb(ids))


def wlm() -> nn.Module:
    torch.manual_seed(0)
    return WordLanguageModel()


def strict_hidden() -> nn.Module:
    torch.manual_seed(0)
    return StrictHidden()


def batch_first_gru() -> nn.Module:
    torch.manual_seed(0)
    return BatchFirstGRU()


def max_length(error: str = "IndexError") -> nn.Module:
    torch.manual_seed(0)
    return MaxLength({"IndexError": IndexError, "ValueError": ValueError, "OSError": OSError}[error])


def max_length_value_error() -> nn.Module:
    return max_length("ValueError")


def max_length_os_error() -> nn.Module:
    return max_length("OSError")


def flattening() -> nn.Module:
    return Flattening()


def no_recurrent() -> nn.Module:
    return NoRecurrent()


def not_a_module() -> dict:
    return {"hello": 1}


def needs_arguments(size: int) -> nn.Module:
    return nn.LSTM(size, size)
