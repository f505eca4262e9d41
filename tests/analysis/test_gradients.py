"""gradient_flow against brute-force autograd through torch's own modules, one target and one node at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lstmviz.analysis.gradients import find_parts, gradient_flow
from lstmviz.errors import UserError

V, E, H = 7, 5, 6


class Tiny(nn.Module):
    """embedding → recurrent module → linear, as a char-rnn."""

    def __init__(self, rnn: nn.RNNBase, decoder: bool = True):
        super().__init__()
        self.embed = nn.Embedding(V, E)
        self.rnn = rnn
        out = rnn.proj_size if getattr(rnn, "proj_size", 0) else rnn.hidden_size
        self.decoder = nn.Linear(out, V) if decoder else None


def make(kind: str, decoder: bool = True) -> Tiny:
    torch.manual_seed(0)
    rnn = {
        "lstm": lambda: nn.LSTM(E, H, 2, batch_first=True),
        "lstm_proj": lambda: nn.LSTM(E, H, 2, batch_first=True, proj_size=4),
        "gru": lambda: nn.GRU(E, H, 2),
        "rnn": lambda: nn.RNN(E, H, 2, batch_first=True, nonlinearity="relu"),
    }[kind]()
    return Tiny(rnn, decoder).double()


def one_layer_modules(rnn: nn.RNNBase) -> list[nn.RNNBase]:
    """torch's own one-layer modules carrying each layer's weights."""
    out = []
    for layer in range(rnn.num_layers):
        size = rnn.input_size if layer == 0 else (rnn.proj_size or rnn.hidden_size)
        kw = {"proj_size": rnn.proj_size} if isinstance(rnn, nn.LSTM) else {}
        kw |= {"nonlinearity": rnn.nonlinearity} if type(rnn) is nn.RNN else {}
        m = type(rnn)(size, rnn.hidden_size, 1, batch_first=True, **kw).double()
        for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"):
            if hasattr(rnn, f"{p}_l{layer}"):
                getattr(m, f"{p}_l0").data.copy_(getattr(rnn, f"{p}_l{layer}").data)
        out.append(m)
    return out


def loss_at(model: Tiny, top: torch.Tensor, nxt: int) -> torch.Tensor:
    if model.decoder is None:
        return top.norm()
    return F.cross_entropy(model.decoder(top)[None], torch.tensor([nxt]))


def brute_state_grads(
    model: Tiny, layers: list[nn.RNNBase], ids: torch.Tensor, t: int, layer: int, s: int
) -> tuple[float, float]:
    """‖∂ℓ_t/∂h_s‖ and ‖∂ℓ_t/∂c_s‖ (0 for GRU/RNN) of one layer, by perturbing that node in torch's forward.

    The layer runs on steps 0…s, its h_s (and c_s) get a zero perturbation δ, and it continues from the perturbed
    state; the perturbed h_s also feeds the layer above. For c, the perturbation reaches h_s = o_s ⊙ tanh(c_s).
    """
    inp = model.embed(ids[None, : t + 1])  # (1, t+1, E)
    lstm = isinstance(model.rnn, nn.LSTM)
    d_h = torch.zeros(model.rnn.proj_size or H if lstm else H, dtype=torch.double, requires_grad=True)
    d_c = torch.zeros(H, dtype=torch.double, requires_grad=True)
    for j, m in enumerate(layers):
        if j != layer:
            inp = m(inp)[0]
            continue
        out_a, state = m(inp[:, : s + 1])
        if lstm:
            h_s, c_s = state[0][0, 0], state[1][0, 0]
            h_prev = out_a[0, s - 1] if s else torch.zeros_like(h_s)
            o_s = torch.sigmoid(
                F.linear(inp[0, s], m.weight_ih_l0, m.bias_ih_l0) + F.linear(h_prev, m.weight_hh_l0, m.bias_hh_l0)
            ).chunk(4)[3]
            bump = o_s * (torch.tanh(c_s + d_c) - torch.tanh(c_s))
            h_new = h_s + (bump @ m.weight_hr_l0.t() if m.proj_size else bump) + d_h
            init = (h_new.view(1, 1, -1), (c_s + d_c).view(1, 1, -1))
        else:
            h_new = state[0, 0] + d_h
            init = h_new.view(1, 1, -1)
        parts = [out_a[:, :s], h_new.view(1, 1, -1)]
        if s < t:
            parts.append(m(inp[:, s + 1 :], init)[0])
        inp = torch.cat(parts, dim=1)
    g_h, g_c = torch.autograd.grad(loss_at(model, inp[0, t], int(ids[t + 1])), [d_h, d_c], allow_unused=True)
    return float(g_h.norm()), 0.0 if g_c is None else float(g_c.norm())


def brute_input_grads(model: Tiny, ids: torch.Tensor, t: int, K: int) -> np.ndarray:
    """‖∂ℓ_t/∂x_{t−k}‖ for k = 0…K: the multi-layer module's own forward over the whole prefix, x a leaf."""
    x = model.embed(ids[None, : t + 1]).detach().requires_grad_()
    with torch.backends.cudnn.flags(enabled=False):
        out = model.rnn(x if model.rnn.batch_first else x.transpose(0, 1))[0]
    top = out[0, t] if model.rnn.batch_first else out[t, 0]
    (g,) = torch.autograd.grad(loss_at(model, top, int(ids[t + 1]) if t + 1 < len(ids) else 0), [x])
    return g[0].norm(dim=1).flip(0)[: K + 1].numpy()


@pytest.mark.parametrize(
    ("kind", "decoder"), [("lstm", True), ("lstm_proj", True), ("gru", True), ("rnn", True), ("lstm", False)]
)
def test_gradient_flow_equals_brute_force(kind, decoder):
    model = make(kind, decoder)
    ids = torch.randint(0, V, (24,), generator=torch.Generator().manual_seed(1))
    K = 5
    got = gradient_flow(model, ids, K=K, targets=[5, 13, 21], batch_size=2)
    layers = one_layer_modules(model.rnn)
    assert got.norms["x"].shape == (3, K + 1)
    for row, t in enumerate(got.targets):
        np.testing.assert_allclose(got.norms["x"][row], brute_input_grads(model, ids, int(t), K), rtol=1e-5, atol=1e-12)
        for layer in range(2):
            want = np.array([brute_state_grads(model, layers, ids, int(t), layer, int(t) - k) for k in range(K + 1)])
            np.testing.assert_allclose(got.norms[f"h l{layer}"][row], want[:, 0], rtol=1e-5, atol=1e-12)
            if kind.startswith("lstm"):
                np.testing.assert_allclose(got.norms[f"c l{layer}"][row], want[:, 1], rtol=1e-5, atol=1e-12)
    assert ("c l0" in got.norms) == kind.startswith("lstm")


def test_summary_and_sampling():
    model = make("gru")
    model.train()
    ids = torch.randint(0, V, (200,), generator=torch.Generator().manual_seed(2))
    a = gradient_flow(model, ids, K=10, n_targets=12, seed=3, batch_size=5)
    b = gradient_flow(model, ids, K=10, n_targets=12, seed=3, batch_size=12)
    np.testing.assert_array_equal(a.targets, b.targets)
    assert len(a.targets) == 12 and a.targets.min() >= 10 and a.targets.max() <= 198
    np.testing.assert_allclose(a.norms["h l1"], b.norms["h l1"], rtol=1e-12)
    row = a.summary.query("series == 'h l0' and k == 4").iloc[0]
    assert row["mean"] == pytest.approx(a.norms["h l0"][:, 4].mean())
    assert row["q90"] == pytest.approx(np.quantile(a.norms["h l0"][:, 4], 0.9))
    assert model.training and model.rnn.training  # modes restored
    assert all(p.grad is None for p in model.parameters())


def test_gradient_flow_refuses_bidirectional_and_short_input():
    model = Tiny(nn.LSTM(E, H, 1, bidirectional=True, batch_first=True))
    with pytest.raises(UserError, match="unidirectional"):
        gradient_flow(model, torch.zeros(30, dtype=torch.long), K=3)
    with pytest.raises(UserError, match="too short"):
        gradient_flow(make("lstm"), torch.zeros(4, dtype=torch.long), K=5)


def test_find_parts_by_type_when_attributes_differ():
    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Sequential(nn.Identity(), nn.GRU(E, H, batch_first=True))  # holds the rnn
            self.emb = nn.Embedding(V, E)
            self.head = nn.Linear(H, V)

    model = Wrapped()
    parts = find_parts(model)
    assert parts.embed is model.emb and parts.rnn is model.encoder[1] and parts.decoder is None
    assert find_parts(model, decoder=model.head).decoder is model.head
