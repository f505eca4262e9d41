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


# --- real-shaped user models (issue 14): written as their tutorials write them -------------------------------


class RNNModel(nn.Module):
    """pytorch/examples word_language_model/model.py's RNNModel (LSTM/GRU branch): an encoder, a recurrent
    module, and a decoder; sequence-first, ``forward(input, hidden)`` returning flattened log-probabilities."""

    def __init__(self, rnn_type, ntoken, ninp, nhid, nlayers, dropout=0.5, tie_weights=False):
        super().__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie_weights:
            self.decoder.weight = self.encoder.weight
        self.init_weights()
        self.rnn_type, self.nhid, self.nlayers = rnn_type, nhid, nlayers

    def init_weights(self):
        initrange = 0.1
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output)
        decoded = decoded.view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        if self.rnn_type == "LSTM":
            return (weight.new_zeros(self.nlayers, bsz, self.nhid), weight.new_zeros(self.nlayers, bsz, self.nhid))
        return weight.new_zeros(self.nlayers, bsz, self.nhid)


WORD_LM_VOCAB = 16


def word_lm() -> nn.Module:
    torch.manual_seed(5)
    return RNNModel("LSTM", WORD_LM_VOCAB, 12, 10, 2, dropout=0.2)


SENTIMENT_VOCAB = ["<unk>", "<pad>", "the", "a", "movie", "film", "was", "is", "good", "bad", "great", "awful", "not"]


class SentimentPacked(nn.Module):
    """A sentiment-tutorial bidirectional LSTM classifier: ``forward(text, text_lengths)`` with text
    ``[sent len, batch]``, packed with ``enforce_sorted=False``; the class logits come from both directions'
    final hidden states."""

    def __init__(self, vocab_size, embedding_dim, hidden_dim, output_dim, n_layers, bidirectional, dropout, pad_idx):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_idx)
        self.rnn = nn.LSTM(embedding_dim, hidden_dim, num_layers=n_layers, bidirectional=bidirectional, dropout=dropout)
        self.fc = nn.Linear(hidden_dim * 2, output_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, text, text_lengths):
        embedded = self.dropout(self.embedding(text))
        packed_embedded = nn.utils.rnn.pack_padded_sequence(embedded, text_lengths.to("cpu"), enforce_sorted=False)
        packed_output, (hidden, _cell) = self.rnn(packed_embedded)
        _output, _output_lengths = nn.utils.rnn.pad_packed_sequence(packed_output)
        hidden = self.dropout(torch.cat((hidden[-2, :, :], hidden[-1, :, :]), dim=1))
        return self.fc(hidden)


class SentimentUnpacked(nn.Module):
    """The same classifier without packing, batch-first: ``forward(text)``; its reverse direction would start
    at the padding of a batch."""

    def __init__(self, vocab_size, embedding_dim, hidden_dim, output_dim, n_layers, pad_idx):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_idx)
        self.rnn = nn.LSTM(embedding_dim, hidden_dim, num_layers=n_layers, bidirectional=True, batch_first=True)
        self.fc = nn.Linear(hidden_dim * 2, output_dim)

    def forward(self, text):
        _, (hidden, _) = self.rnn(self.embedding(text))
        return self.fc(torch.cat((hidden[-2], hidden[-1]), dim=1))


class PadCountingGRU(nn.Module):
    """A char classifier that finds each row's length itself, as ``ids != <pad>`` (id 0), and packs: all-padding
    input has no length, which pack_padded_sequence refuses."""

    def __init__(self, vocab_size):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, 6, padding_idx=0)
        self.rnn = nn.GRU(6, 5, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(10, 3)

    def forward(self, ids):
        lengths = (ids != 0).sum(1)
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embedding(ids), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, hidden = self.rnn(packed)
        return self.fc(torch.cat((hidden[-2], hidden[-1]), dim=1))


CHAR_SPECIALS_VOCAB = ["<pad>", "<unk>", *"abcdefgh "]


def sentiment_packed() -> nn.Module:
    torch.manual_seed(6)
    return SentimentPacked(len(SENTIMENT_VOCAB), 8, 6, 3, 2, True, 0.3, SENTIMENT_VOCAB.index("<pad>"))


def sentiment_unpacked() -> nn.Module:
    torch.manual_seed(7)
    return SentimentUnpacked(len(SENTIMENT_VOCAB), 8, 6, 2, 2, SENTIMENT_VOCAB.index("<pad>"))


def pad_counting_gru() -> nn.Module:
    torch.manual_seed(8)
    return PadCountingGRU(len(CHAR_SPECIALS_VOCAB))


def cell_lstm() -> nn.Module:
    """A model that steps an nn.LSTMCell itself (no nn.LSTM anywhere)."""
    from tiny_models import CellCharModel

    torch.manual_seed(9)
    return CellCharModel(nn.LSTMCell, vocab=VOCAB)


def tapped_cell() -> nn.Module:
    """A model that steps its own cell, which records itself with lstmviz.tap (no torch recurrent module)."""
    from tiny_models import CellCharModel, LayerNormLSTMCell

    torch.manual_seed(10)
    return CellCharModel(LayerNormLSTMCell, vocab=VOCAB)


class CellClassifier(nn.Module):
    """Steps an nn.LSTMCell over every column of ids ``[B, T]`` and classifies from the last step's h: padding
    would change its verdict, and it takes no lengths to say where a document ends."""

    def __init__(self, vocab: int, emb: int, hidden: int, classes: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        self.cell = nn.LSTMCell(emb, hidden)
        self.out = nn.Linear(hidden, classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[B, T]`` → logits ``[B, classes]``."""
        x, hx = self.embedding(ids), None
        for t in range(ids.shape[1]):
            hx = self.cell(x[:, t], hx)
        return self.out(hx[0])


def cell_classifier() -> nn.Module:
    torch.manual_seed(11)
    return CellClassifier(len(SENTIMENT_VOCAB), 5, 7, 2)
