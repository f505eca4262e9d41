"""attribute: completeness of integrated gradients, grad × input against finite differences, causality, errors."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import TinyCharModel
from torch import nn

from lstmviz.causal import attribute
from lstmviz.errors import UserError


def tiny(cell=nn.LSTM, seed=0, hidden=8) -> TinyCharModel:
    torch.manual_seed(seed)
    return TinyCharModel(cell=cell, hidden=hidden).double().eval()


def logp(model: nn.Module, ids: torch.Tensor, position: int, target: int, embedded: torch.Tensor | None = None):
    """log p(target at position), with the embedding's output replaced by ``embedded`` ``[T, E]`` if given."""
    handle = None
    if embedded is not None:
        handle = model.embed.register_forward_hook(lambda m, i, o: embedded[None].to(o))
    try:
        with torch.no_grad():
            return float(torch.log_softmax(model(ids[None]), -1)[0, position, target])
    finally:
        if handle is not None:
            handle.remove()


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU, nn.RNN])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_integrated_gradients_completeness(cell, seed):
    model = tiny(cell, seed)
    ids = torch.randint(0, 12, (25,), generator=torch.Generator().manual_seed(seed))
    a = attribute(model, ids, 17, steps=64)
    zeroed = copy.deepcopy(model)
    with torch.no_grad():
        zeroed.embed.weight.zero_()  # the baseline, built independently: every token embeds to zero
    f_x, f_0 = logp(model, ids, 17, int(ids[18])), logp(zeroed, ids, 17, int(ids[18]))
    assert a.target == int(ids[18])
    assert a.logp == pytest.approx(f_x, abs=1e-12)
    assert a.baseline == pytest.approx(f_0, abs=1e-12)
    assert a.scores.sum() == pytest.approx(f_x - f_0, rel=0.01)
    assert abs(a.delta) < 0.01 * abs(f_x - f_0)
    assert np.all(a.scores[18:] == 0)
    assert np.count_nonzero(a.scores[:18]) == 18


def test_integrated_gradients_against_a_dense_path_integral():
    """Each token's score against a 4,000-point trapezoid of its own gradient term along the path."""
    model = tiny(nn.GRU, 3)
    ids = torch.randint(0, 12, (10,), generator=torch.Generator().manual_seed(3))
    a = attribute(model, ids, 9, target=4, steps=64)
    e = model.embed(ids).detach()  # (T, E)
    alphas = torch.linspace(0, 1, 4001, dtype=torch.float64)
    z = (alphas.view(-1, 1, 1) * e).requires_grad_()  # every point of the path, as one batch  # (N, T, E)
    h = model.embed.register_forward_hook(lambda m, i, o: z)
    out = torch.log_softmax(model(ids.expand(len(alphas), -1)), -1)[:, 9, 4]
    h.remove()
    (g,) = torch.autograd.grad(out.sum(), z)
    want = torch.trapezoid((g * e).sum(2), alphas, dim=0).numpy()
    np.testing.assert_allclose(a.scores, want, atol=1e-6)


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
def test_grad_x_input_against_finite_differences(cell):
    """score_t = d/dε f(e with e_t scaled by 1 + ε) at ε = 0, by central differences in float64."""
    model = tiny(cell, 4)
    ids = torch.randint(0, 12, (12,), generator=torch.Generator().manual_seed(4))
    a = attribute(model, ids, 8, target=3, method="grad_x_input")
    e = model.embed(ids).detach()
    eps = 1e-6
    for t in range(12):
        up, down = e.clone(), e.clone()
        up[t] *= 1 + eps
        down[t] *= 1 - eps
        fd = (logp(model, ids, 8, 3, up) - logp(model, ids, 8, 3, down)) / (2 * eps)
        assert a.scores[t] == pytest.approx(fd, abs=1e-7), t
    assert np.all(a.scores[9:] == 0)
    assert np.isnan(a.baseline)


def test_nothing_flows_back_from_after_the_position_but_does_in_a_bidirectional_model():
    """The truncation to ids[:position + 1] is exact: full-length autograd gives the same scores and zeros after."""
    model = tiny(seed=5)
    ids = torch.randint(0, 12, (14,), generator=torch.Generator().manual_seed(5))
    a = attribute(model, ids, 6, target=2, method="grad_x_input")
    e = model.embed(ids).detach().requires_grad_()
    h = model.embed.register_forward_hook(lambda m, i, o: e[None])
    out = torch.log_softmax(model(ids[None]), -1)[0, 6, 2]
    h.remove()
    (g,) = torch.autograd.grad(out, e)
    np.testing.assert_allclose(a.scores, (g * e).sum(1).detach().numpy(), atol=1e-12)

    torch.manual_seed(0)
    bi = TinyCharModel().double().eval()
    bi.rnn = nn.LSTM(6, 4, 1, batch_first=True, bidirectional=True).double().eval()
    bi.decoder = nn.Linear(8, 12).double()
    b = attribute(bi, ids, 6, target=2, steps=32)
    assert np.abs(b.scores[7:]).max() > 0
    assert abs(b.delta) < 0.01 * abs(b.logp - b.baseline)


def test_window_attributes_the_last_tokens_from_the_carried_state():
    model = tiny(seed=6)
    ids = torch.randint(0, 12, (30,), generator=torch.Generator().manual_seed(6))
    a = attribute(model, ids, 24, steps=64, window=8)
    assert np.all(a.scores[:17] == 0) and np.all(a.scores[25:] == 0)
    assert np.count_nonzero(a.scores[17:25]) == 8
    e = model.embed(ids).detach().clone()
    e[17:25] = 0  # the window's baseline: the context before it is kept
    f_x, f_0 = logp(model, ids, 24, int(ids[25])), logp(model, ids, 24, int(ids[25]), e)
    assert a.logp == pytest.approx(f_x, abs=1e-12)
    assert a.baseline == pytest.approx(f_0, abs=1e-12)
    assert a.scores.sum() == pytest.approx(f_x - f_0, rel=0.01)
    full = attribute(model, ids, 24, method="grad_x_input")
    win = attribute(model, ids, 24, method="grad_x_input", window=8)
    np.testing.assert_allclose(win.scores[17:], full.scores[17:], atol=1e-12)


def test_loaded_model_and_default_target_at_the_end():
    from lstmviz.models.loading import load_model

    loaded = load_model("sample_models/parens_lstm.pt")
    ids = loaded.tokenizer.encode("((ab)(c")
    a = attribute(loaded, ids, len(ids) - 1, steps=16)
    with torch.no_grad():
        top = int(loaded.call(loaded.module, torch.as_tensor(ids).view(1, -1))[0, -1].argmax())
    assert a.target == top
    assert a.scores.shape == (len(ids),)
    assert not loaded.module.training


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"position": 9}, r"position must be a step of the 9 input tokens \(0…8\)"),
        ({"position": -1}, r"position must be a step"),
        ({"position": 3, "target": 12}, r"target must be a token id 0…11"),
        ({"position": 3, "method": "saliency"}, r"method must be one of integrated_gradients, grad_x_input"),
        ({"position": 3, "steps": 0}, r"steps must be a whole number ≥ 1"),
        ({"position": 3, "window": 0}, r"window must be a whole number of tokens ≥ 1"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(UserError, match=match):
        attribute(tiny(), torch.zeros(9, dtype=torch.long), **kwargs)


def test_a_model_without_an_embedding():
    class Floats(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(3, 4, batch_first=True)

        def forward(self, ids):
            return self.rnn(nn.functional.one_hot(ids, 3).float())[0]

    with pytest.raises(UserError, match=r"has no nn\.Embedding"):
        attribute(Floats(), torch.zeros(4, dtype=torch.long), 2, target=0)


def test_refinement_halves_pieces_until_the_gap_is_within_tol():
    """A rough model (recurrent weights ×4), 4 nodes far from converged: the adaptive pieces reach a 256-node
    integral (itself at 1e-14), tol=None does exactly the nodes asked for, and max_steps caps the work."""
    model = tiny(nn.GRU, 3)
    with torch.no_grad():
        for w in model.rnn.parameters():
            w.mul_(4)
    ids = torch.randint(0, 12, (10,), generator=torch.Generator().manual_seed(3))
    coarse = attribute(model, ids, 9, target=4, steps=4, tol=None)
    fine = attribute(model, ids, 9, target=4, steps=4, tol=1e-6, max_steps=4000)
    dense = attribute(model, ids, 9, target=4, steps=256, tol=None)
    assert coarse.steps == 5 and coarse.relative_delta > 0.01  # 4 nodes and f(0)
    assert dense.relative_delta < 1e-12
    assert fine.relative_delta <= 1e-6 and coarse.steps < fine.steps <= 4000
    assert fine.baseline == coarse.baseline
    np.testing.assert_allclose(fine.scores, dense.scores, atol=1e-6)  # per token: the gap bounds only the sum
    capped = attribute(model, ids, 9, target=4, steps=4, tol=1e-12, max_steps=20)
    assert 5 < capped.steps <= 20


@pytest.mark.slow
@pytest.mark.parametrize("position", [314, 952])
def test_completeness_on_code_lstm_at_the_default_window(position):
    """The sample model, where 64 fixed nodes leave gaps of several % over 20 tokens: within 1 % after
    refinement, against f(x) and f(window zeroed) from the model's own forward."""
    from lstmviz.dashboard.attributing import DEFAULT_WINDOW
    from lstmviz.models.loading import load_model

    lm = load_model("sample_models/code_lstm.pt")
    text = Path("sample_models/corpora/python_stdlib.txt").read_text()[-3001:]
    ids = torch.as_tensor(lm.tokenizer.encode(text)[:3000])
    a = attribute(lm, ids, position, window=DEFAULT_WINDOW)
    start = position + 1 - DEFAULT_WINDOW
    x = ids[: position + 1].view(1, -1)

    def f(zero: bool) -> float:
        h = lm.module.embedding.register_forward_hook(
            lambda m, i, o: torch.cat([o[:, :start], o[:, start:] * 0], 1) if zero else o
        )
        try:
            with torch.no_grad():
                return float(torch.log_softmax(lm.call(lm.module, x)[0, position].double(), -1)[a.target])
        finally:
            h.remove()

    f_x, f_0 = f(False), f(True)
    assert a.logp == pytest.approx(f_x, abs=1e-4) and a.baseline == pytest.approx(f_0, abs=1e-4)
    assert abs(a.scores.sum() - (f_x - f_0)) <= 0.01 * abs(f_x - f_0) + 2e-4
    assert a.relative_delta <= 0.01
    assert np.all(a.scores[:start] == 0) and np.all(a.scores[position + 1 :] == 0)
