"""Training: the stream batching, the bits-per-char oracle, and a tiny run that must learn a periodic text."""

from __future__ import annotations

import math

import pytest
import torch

from lstmviz.cli import main
from lstmviz.errors import UserError
from lstmviz.models.charrnn import CharRNN, CharRNNConfig
from lstmviz.models.loading import load_model
from lstmviz.models.train import evaluate, stream_batches


def test_stream_batches_are_contiguous_streams():
    data = torch.arange(101)
    chunks = stream_batches(data, batch=4, seq=5, offset=0)  # 25 chars per stream: 5 windows of 5
    assert chunks.shape == (5, 4, 5, 2)
    x, y = chunks[..., 0], chunks[..., 1]
    assert torch.equal(y, x + 1)
    stream1 = torch.cat([x[k, 1] for k in range(5)])
    assert stream1.tolist() == list(range(25, 50))
    with pytest.raises(UserError, match="too short"):
        stream_batches(torch.arange(10), batch=4, seq=5, offset=0)


def test_evaluate_is_log2_vocab_for_a_uniform_model():
    model = CharRNN(CharRNNConfig("gru", vocab_size=7, hidden=4, layers=1, embed=3))
    torch.nn.init.zeros_(model.decoder.weight)
    torch.nn.init.zeros_(model.decoder.bias)
    assert evaluate(model, torch.randint(0, 7, (200,)), batch=3, seq=10) == pytest.approx(math.log2(7))


def test_train_learns_a_periodic_text(tmp_path, capsys):
    (tmp_path / "abc.txt").write_text("abcd" * 2000)
    out = tmp_path / "m.pt"
    rc = main(
        [
            "train",
            "--corpus",
            str(tmp_path / "abc.txt"),
            "--out",
            str(out),
            "--arch",
            "gru",
            "--layers",
            "1",
            "--hidden",
            "16",
            "--embed",
            "8",
            "--steps",
            "120",
            "--batch",
            "8",
            "--seq",
            "32",
            "--lr",
            "0.01",
            "--eval-every",
            "60",
            "--threads",
            "1",
        ]
    )
    assert rc == 0
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["format"] == "lstmviz" and ckpt["config"]["arch"] == "gru"
    assert ckpt["tokenizer"]["vocab"] == list("abcd")
    assert ckpt["metrics"]["val_bpc"] < 0.2  # the text is deterministic after one char
    assert ckpt["training"]["command"].startswith("lstmviz train")
    assert "val" in capsys.readouterr().out
    loaded = load_model(out)
    assert loaded.description["metrics"]["val_bpc"] == ckpt["metrics"]["val_bpc"]
