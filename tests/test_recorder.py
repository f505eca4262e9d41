"""The recorder against torch's own modules and the cell equations."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import lstmviz
from lstmviz import names
from lstmviz.recorder import Recorder

CELLS = {"LSTM": nn.LSTM, "GRU": nn.GRU, "RNN": nn.RNN}


def truncated(module: nn.RNNBase, layers: int) -> nn.RNNBase:
    """A copy of ``module`` keeping only its first ``layers`` layers: its output is layer ``layers-1``'s h."""
    kw = dict(
        input_size=module.input_size,
        hidden_size=module.hidden_size,
        num_layers=layers,
        bias=module.bias,
        batch_first=module.batch_first,
        bidirectional=module.bidirectional,
    )
    if isinstance(module, nn.LSTM):
        kw["proj_size"] = module.proj_size
    if type(module) is nn.RNN:
        kw["nonlinearity"] = module.nonlinearity
    copy = type(module)(**kw).to(next(module.parameters()).dtype)
    own = dict(module.named_parameters())
    with torch.no_grad():
        for name, p in copy.named_parameters():
            p.copy_(own[name])
    return copy.eval()


def tol(dtype: torch.dtype) -> float:
    return 1e-10 if dtype == torch.float64 else 1e-5


def final_h(state):
    return state[0] if isinstance(state, tuple) else state


config = st.fixed_dictionaries(
    {
        "cell": st.sampled_from(["LSTM", "GRU", "RNN"]),
        "layers": st.integers(1, 3),
        "bidirectional": st.booleans(),
        "batch_first": st.booleans(),
        "hidden": st.integers(1, 64),
        "proj": st.integers(0, 3),
        "bias": st.booleans(),
        "dropout": st.sampled_from([0.0, 0.3]),
        "relu": st.booleans(),
        "batch": st.integers(1, 4),
        "time": st.integers(1, 12),
        "given_state": st.booleans(),
        "packed": st.sampled_from([None, True, False]),  # enforce_sorted, or not packed
        "dtype": st.sampled_from([torch.float32, torch.float64]),
        "strategy": st.sampled_from(["auto", "replay", "loop"]),
        "seed": st.integers(0, 2**16),
    }
)


def build(cfg):
    torch.manual_seed(cfg["seed"])
    kw = dict(
        input_size=5,
        hidden_size=cfg["hidden"],
        num_layers=cfg["layers"],
        bias=cfg["bias"],
        batch_first=cfg["batch_first"],
        bidirectional=cfg["bidirectional"],
        dropout=cfg["dropout"] if cfg["layers"] > 1 else 0.0,
    )
    if cfg["cell"] == "LSTM" and cfg["proj"] and cfg["proj"] < cfg["hidden"]:
        kw["proj_size"] = cfg["proj"]
    if cfg["cell"] == "RNN":
        kw["nonlinearity"] = "relu" if cfg["relu"] else "tanh"
    module = CELLS[cfg["cell"]](**kw).to(cfg["dtype"]).eval()
    B, T = cfg["batch"], cfg["time"]
    x = torch.randn(B, T, 5, dtype=cfg["dtype"])
    lengths = torch.randint(1, T + 1, (B,))
    if cfg["packed"] is True:
        lengths = lengths.sort(descending=True).values
    D = 2 if cfg["bidirectional"] else 1
    P = getattr(module, "proj_size", 0) or cfg["hidden"]
    hx = None
    if cfg["given_state"]:
        h0 = torch.randn(cfg["layers"] * D, B, P, dtype=cfg["dtype"])
        hx = (h0, torch.randn(cfg["layers"] * D, B, cfg["hidden"], dtype=cfg["dtype"])) if cfg["cell"] == "LSTM" else h0
    inp = x if cfg["batch_first"] else x.transpose(0, 1)
    if cfg["packed"] is not None:
        inp = pack_padded_sequence(inp, lengths, batch_first=cfg["batch_first"], enforce_sorted=cfg["packed"])
    else:
        lengths = torch.full((B,), T)
    return module, inp, hx, lengths


def as_batch_first(output, module, lengths):
    if isinstance(output, nn.utils.rnn.PackedSequence):
        return nn.utils.rnn.pad_packed_sequence(output, batch_first=True, total_length=int(lengths.max()))[0]
    return output if module.batch_first else output.transpose(0, 1)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=config)
def test_recorded_h_is_the_modules_own_output(cfg):
    module, inp, hx, lengths = build(cfg)
    with torch.no_grad():
        ref_out, ref_state = module(inp, hx)
        with Recorder(module, strategy=cfg["strategy"]) as rec:
            out, state = module(inp, hx)
    eps = tol(cfg["dtype"])
    if torch.is_tensor(out):  # the same memory layout as torch's own output: user code may .view() it
        assert out.is_contiguous() == ref_out.is_contiguous()
    ref_bf = as_batch_first(ref_out, module, lengths)
    assert (as_batch_first(out, module, lengths) - ref_bf).abs().max() <= eps
    assert (final_h(state) - final_h(ref_state)).abs().max() <= eps
    if cfg["cell"] == "LSTM":
        assert (state[1] - ref_state[1]).abs().max() <= eps
    cache, path = rec.cache, names.parse(next(iter(rec.cache))).module
    assert torch.equal(cache.lengths[path], lengths)
    D = 2 if module.bidirectional else 1
    P = ref_bf.shape[2] // D
    for layer in range(module.num_layers):
        sub = truncated(module, layer + 1)
        sub_hx = (
            None
            if hx is None
            else (tuple(h[: (layer + 1) * D] for h in hx) if isinstance(hx, tuple) else hx[: (layer + 1) * D])
        )
        with torch.no_grad():
            layer_ref = as_batch_first(sub(inp, sub_hx)[0], module, lengths)
        for d, dir in enumerate(["fwd", "rev"][:D]):
            got = cache[names.build(path, layer, dir, "h")]
            assert got.shape == (cfg["batch"], int(lengths.max()), P)
            assert (got - layer_ref[..., d * P : (d + 1) * P]).abs().max() <= eps


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=config.filter(lambda c: c["cell"] != "RNN"))
def test_gates_satisfy_the_cell_equations(cfg):
    """Step through each layer and direction with the textbook equations, from the recorded h_{t-1}."""
    module, inp, hx, lengths = build(cfg)
    with torch.no_grad(), Recorder(module, strategy=cfg["strategy"]) as rec:
        module(inp, hx)
    cache = rec.cache
    path = names.parse(next(iter(cache))).module
    D = 2 if module.bidirectional else 1
    eps = 50 * tol(cfg["dtype"])
    for layer in range(module.num_layers):
        for d, dir in enumerate(["fwd", "rev"][:D]):
            sfx = f"_l{layer}{'_reverse' if dir == 'rev' else ''}"
            w_ih, w_hh = getattr(module, "weight_ih" + sfx), getattr(module, "weight_hh" + sfx)
            b_ih = getattr(module, "bias_ih" + sfx, None)
            b_hh = getattr(module, "bias_hh" + sfx, None)
            b_ih = torch.zeros(w_ih.shape[0], dtype=w_ih.dtype) if b_ih is None else b_ih
            b_hh = torch.zeros(w_hh.shape[0], dtype=w_hh.dtype) if b_hh is None else b_hh
            get = lambda k, layer=layer, dir=dir: cache[names.build(path, layer, dir, k)]  # noqa: E731
            if layer == 0:
                x = as_batch_first(inp, module, lengths)
            else:
                x = torch.cat([cache[names.build(path, layer - 1, dd, "h")] for dd in ["fwd", "rev"][:D]], 2)
            h = get("h")
            for b in range(cfg["batch"]):
                n = int(lengths[b])
                order = range(n) if dir == "fwd" else range(n - 1, -1, -1)
                if hx is None:
                    h_prev = torch.zeros(h.shape[2], dtype=h.dtype)
                    c_prev = torch.zeros(module.hidden_size, dtype=h.dtype)
                else:
                    h_prev = final_h(hx)[layer * D + d, b]
                    c_prev = hx[1][layer * D + d, b] if cfg["cell"] == "LSTM" else None
                for t in order:
                    gi = w_ih @ x[b, t] + b_ih
                    gh = w_hh @ h_prev + b_hh
                    if cfg["cell"] == "LSTM":
                        i, f, g, o = (gi + gh).chunk(4)
                        i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
                        c = f * c_prev + i * g
                        for k, v in dict(i=i, f=f, g=g, o=o, c=c).items():
                            assert (get(k)[b, t] - v).abs().max() <= eps, (k, layer, dir, t)
                        if module.proj_size:
                            assert (get("hp")[b, t] - o * c.tanh()).abs().max() <= eps
                        c_prev = get("c")[b, t]
                    else:
                        (ir, iz, inn), (hr, hz, hn) = gi.chunk(3), gh.chunk(3)
                        r, z = (ir + hr).sigmoid(), (iz + hz).sigmoid()
                        nn_ = (inn + r * hn).tanh()
                        for k, v in dict(r=r, z=z, n=nn_, h=(1 - z) * nn_ + z * h_prev).items():
                            assert (get(k)[b, t] - v).abs().max() <= eps, (k, layer, dir, t)
                    h_prev = h[b, t]
                for t in range(n, h.shape[1]):  # padding of a PackedSequence is zero
                    assert all(get(k)[b, t].abs().max() == 0 for k in rec.modules[0].kinds())


def test_names_filter_and_keys(tiny_model):
    ids = torch.randint(0, 12, (2, 7))
    _, cache = lstmviz.run_with_cache(tiny_model, ids)
    assert sorted(cache) == sorted(
        names.build("rnn", layer, "fwd", k) for layer in range(2) for k in ["i", "f", "g", "o", "c", "h"]
    )
    assert all(v.shape == (2, 7, 8) for v in cache.values())
    _, some = lstmviz.run_with_cache(tiny_model, ids, names=["rnn.l1.fwd.f", "rnn.l0.fwd.h"])
    assert sorted(some) == ["rnn.l0.fwd.h", "rnn.l1.fwd.f"]
    assert torch.equal(some["rnn.l1.fwd.f"], cache["rnn.l1.fwd.f"])
    _, pred = lstmviz.run_with_cache(tiny_model, ids, names=lambda n: n.endswith(".c"))
    assert sorted(pred) == ["rnn.l0.fwd.c", "rnn.l1.fwd.c"]


def test_output_is_unchanged_and_keeps_its_graph(tiny_model):
    ids = torch.randint(0, 12, (2, 7))
    ref = tiny_model(ids)
    out, cache = lstmviz.run_with_cache(tiny_model, ids)
    assert torch.equal(out, ref)
    out.sum().backward()
    assert tiny_model.embed.weight.grad is not None
    assert not any(v.requires_grad for v in cache.values())


def test_hooks_are_removed_when_the_forward_raises(tiny_model):
    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(3, 4)

        def forward(self, x):
            self.lstm(x)
            raise RuntimeError("boom")

    model = Boom()
    with pytest.raises(RuntimeError, match="boom"):
        lstmviz.run_with_cache(model, torch.randn(5, 1, 3))
    assert "forward" not in model.lstm.__dict__


def test_nested_paths_and_repeated_calls_concatenate_in_time():
    class Seq2Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(3, 3))
            self.encoder.add_module("lstm", nn.LSTM(3, 4, batch_first=True))
            self.dec = nn.GRU(3, 4, batch_first=True)

        def forward(self, x):
            _, (h, _) = self.encoder.lstm(self.encoder[0](x))
            for t in range(x.shape[1]):
                _, h = self.dec(x[:, t : t + 1], h)
            return h

    torch.manual_seed(0)
    model = Seq2Seq().eval()
    x = torch.randn(2, 5, 3)
    out, cache = lstmviz.run_with_cache(model, x)
    assert "encoder.lstm.l0.fwd.c" in cache
    assert cache["dec.l0.fwd.h"].shape == (2, 5, 4)
    assert torch.allclose(cache["dec.l0.fwd.h"][:, -1], out[0])


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_reused_buffers_follow_weight_changes(cell):
    """The step loop keeps packed weights from chunk to chunk, and rebuilds them when a parameter changes."""
    torch.manual_seed(0)
    module = CELLS[cell](6, 16, 2, batch_first=True).eval()
    x = torch.randn(8, 10, 6)
    with torch.no_grad(), Recorder(module, strategy="loop", reuse_buffers=True) as rec:
        first = module(x)[0].clone()  # pooled: the next call overwrites the buffers behind it
        rec.new_cache()
        module.bias_ih_l0.add_(0.1)
        module.weight_hh_l1.data.mul_(0.5)  # through .data: no version counter moves
        second, _ = module(x)
    with torch.no_grad():
        ref, _ = module(x)
    assert (second - ref).abs().max() <= 1e-5
    assert (first - ref).abs().max() > 1e-3


def test_model_without_recurrent_module_is_a_clear_error():
    with pytest.raises(lstmviz.RunError, match=r"no nn\.LSTM, nn\.GRU, nn\.RNN, nn\.LSTMCell.*called no lstmviz\.tap"):
        lstmviz.run_with_cache(nn.Linear(2, 2), torch.randn(1, 2))


@pytest.mark.gpu
@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
def test_cuda_matches_cpu(cell):
    torch.manual_seed(0)
    module = CELLS[cell](5, 32, 2, batch_first=True, bidirectional=True).eval()
    x = torch.randn(3, 40, 5)
    _, cpu = lstmviz.run_with_cache(module, x)
    _, gpu = lstmviz.run_with_cache(module.cuda(), x.cuda())
    for name, value in cpu.items():
        assert (gpu[name].cpu() - value).abs().max() <= 1e-5, name
