"""generate: seeded, reproducible, and equal to a hand-rolled sampling loop (with and without a clamp)."""

from __future__ import annotations

import pytest
import torch
from causal_oracle import run as oracle
from tiny_models import TinyCharModel
from torch import nn

from lstmviz.causal import generate
from lstmviz.errors import UserError


def tiny(cell=nn.LSTM) -> TinyCharModel:
    torch.manual_seed(0)
    return TinyCharModel(cell=cell).double().eval()


def hand_rolled(model: TinyCharModel, prompt: list[int], n: int, clamp: dict, temperature: float, seed: int):
    """The sampling loop written out: torch's cells step by step (the oracle), the state carried by hand, and
    the documented rule ``multinomial(softmax(logits / temperature))`` on a fresh generator."""
    g = torch.Generator().manual_seed(seed)
    path = type(model.rnn).__name__.lower()
    clamp = {k.replace("rnn.", f"{path}.", 1): v for k, v in clamp.items()}
    state = None
    step, out = torch.tensor([prompt]), []
    with torch.no_grad():
        for _ in range(n):
            h, _, state = oracle(model.rnn, model.embed(step), clamp, state=state)
            logits = model.decoder(h)[0, -1].float()
            nxt = (
                int(logits.argmax())
                if temperature == 0
                else int(torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=g))
            )
            out.append(nxt)
            step = torch.tensor([[nxt]])
    return out


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU, nn.RNN])
@pytest.mark.parametrize("temperature", [1.0, 0.5, 0.0])
def test_equals_a_hand_rolled_loop(cell, temperature):
    model = tiny(cell)
    clamp = {"rnn.l1.fwd.h": {2: 0.9}} if cell is not nn.LSTM else {"rnn.l0.fwd.c": {3: 2.0}}
    for c in ({}, clamp):
        got = generate(model, [1, 5, 7], 25, clamp=c, temperature=temperature, seed=11)
        assert got == hand_rolled(model, [1, 5, 7], 25, c, temperature, seed=11)


def test_seeded_and_reproducible_and_the_clamp_matters():
    model = tiny()
    a = generate(model, [3, 4], 40, seed=1)
    assert a == generate(model, [3, 4], 40, seed=1)
    assert a != generate(model, [3, 4], 40, seed=2)
    assert len(a) == 40 and all(0 <= t < 12 for t in a)
    held = generate(model, [3, 4], 40, seed=1, clamp={"rnn.l1.fwd.h": {0: 1.0, 1: -1.0, 2: 1.0}})
    assert held != a
    assert generate(model, [3, 4], 0) == []


def test_a_loaded_sample_model_writes_its_language():
    from lstmviz.models.loading import load_model

    loaded = load_model("sample_models/parens_lstm.pt")
    prompt = loaded.tokenizer.encode("(ab(c")
    ids = generate(loaded, prompt, 60, temperature=0.0)
    text = loaded.tokenizer.decode(ids)
    assert set(text) <= set("abcdefghij()\n")
    assert ids == generate(loaded, prompt, 60, temperature=0.0)
    assert "forward" not in loaded.module.rnn.__dict__


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (([], 3), {}, "a prompt of at least one token"),
        (([1], -1), {}, r"n \(the number of tokens to generate\) must be a whole number ≥ 0"),
        (([1], 2), {"temperature": -1.0}, "temperature must be ≥ 0"),
        (([1], 2), {"clamp": {"rnn.l0.fwd.z": {0: 1.0}}}, "Clampable: rnn.l0.fwd.h"),
    ],
)
def test_bad_arguments(args, kwargs, match):
    with pytest.raises(UserError, match=match):
        generate(tiny(), *args, **kwargs)


def test_a_classifier_is_not_a_language_model():
    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(5, 3)
            self.rnn = nn.GRU(3, 4, batch_first=True)

        def forward(self, ids):
            return self.rnn(self.embed(ids))[1][-1]  # (B, H)

    with pytest.raises(UserError, match=r"needs a model that returns next-token logits \[batch, time, vocab\]"):
        generate(Classifier(), [1, 2], 3)
