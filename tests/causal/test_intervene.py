"""intervene and effects against the step-by-step oracle of torch's own cells (causal_oracle.py)."""

from __future__ import annotations

import pytest
import torch
from causal_oracle import output_gate
from causal_oracle import run as oracle
from tiny_models import TinyCharModel
from torch import nn

import lstmviz
from lstmviz.causal import Intervention, effects, intervene
from lstmviz.errors import UserError

CELLS = {"LSTM": nn.LSTM, "GRU": nn.GRU, "RNN": nn.RNN}


def module(
    cell: str,
    layers: int,
    bidirectional: bool,
    batch_first: bool = True,
    relu: bool = False,
    seed: int = 0,
    dtype=torch.float64,
) -> nn.RNNBase:
    torch.manual_seed(seed)
    kw = {"nonlinearity": "relu"} if relu else {}
    return CELLS[cell](4, 6, layers, batch_first=batch_first, bidirectional=bidirectional, **kw).to(dtype).eval()


def check_against_oracle(m: nn.RNNBase, clamp: dict, span, x: torch.Tensor, tol: float = 1e-10) -> None:
    out, cache = intervene(m, x, clamp=clamp, span=span)
    want_out, want, want_final = oracle(m, x, clamp, span)
    torch.testing.assert_close(out[0], want_out, atol=tol, rtol=0)
    got_final = out[1] if isinstance(out[1], tuple) else (out[1],)
    for g, w in zip(got_final, want_final if isinstance(want_final, tuple) else (want_final,), strict=True):
        torch.testing.assert_close(g, w, atol=tol, rtol=0)
    for name, value in want.items():
        torch.testing.assert_close(cache[name], value, atol=tol, rtol=0, msg=name)
    for name, units in clamp.items():  # held exactly, at the held steps only
        held = slice(*span) if span else slice(None)
        for u, v in units.items():
            assert torch.all(cache[name][:, held, u] == v), name


def clamps(cell: str, layers: int, bidirectional: bool) -> list[dict]:
    last = f"{cell.lower()}.l{layers - 1}.{'rev' if bidirectional else 'fwd'}"
    out = [{f"{cell.lower()}.l0.fwd.h": {1: 0.9, 4: -0.5}}, {f"{last}.h": {0: 0.3}}]
    if cell == "LSTM":
        out += [{"lstm.l0.fwd.c": {2: 1.5}}, {f"{last}.c": {5: -2.0}, f"{last}.h": {5: 0.1, 1: 0.7}}]
    return out


CASES = [
    (cell, layers, bidi, relu)
    for cell in ("LSTM", "GRU", "RNN")
    for layers in (1, 2)
    for bidi in (False, True)
    for relu in ((False, True) if cell == "RNN" else (False,))
]


@pytest.mark.parametrize("span", [None, (3, 7), (0, 1), (8, 50)])
@pytest.mark.parametrize(("cell", "layers", "bidi", "relu"), CASES)
def test_intervene_matches_step_by_step_oracle(cell, layers, bidi, relu, span):
    m = module(cell, layers, bidi, relu=relu)
    x = torch.randn(3, 10, 4, dtype=torch.float64)
    for clamp in clamps(cell, layers, bidi):
        check_against_oracle(m, clamp, span, x)


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_seq_first_unbatched_and_given_state(cell):
    m = module(cell, 2, True, batch_first=False, seed=3)
    x = torch.randn(9, 2, 4, dtype=torch.float64)  # (T, B, I)
    h0 = torch.randn(4, 2, 6, dtype=torch.float64)
    state = (h0, torch.randn_like(h0)) if cell == "LSTM" else h0
    clamp = {f"{cell.lower()}.l1.rev.h": {3: 0.25}, f"{cell.lower()}.l0.fwd.h": {0: -1.0}}
    (out, final), cache = intervene(m, x, state, clamp=clamp, span=(2, 5))
    want_out, want, want_final = oracle(m, x, clamp, (2, 5), state=state)
    torch.testing.assert_close(out, want_out, atol=1e-10, rtol=0)
    torch.testing.assert_close(final, want_final, atol=1e-10, rtol=0)
    for name, value in want.items():
        torch.testing.assert_close(cache[name], value, atol=1e-10, rtol=0, msg=name)
    (out1, _), _ = intervene(
        m, x[:, 0], tuple(s[:, 0] for s in state) if cell == "LSTM" else h0[:, 0], clamp=clamp, span=(2, 5)
    )
    torch.testing.assert_close(out1, want_out[:, 0], atol=1e-10, rtol=0)
    assert cache[f"{cell.lower()}.l1.rev.h"].shape == (2, 9, 6)


def test_float32_within_recorder_tolerance():
    m = module("LSTM", 2, True, dtype=torch.float32, seed=5)
    x = torch.randn(2, 30, 4)
    check_against_oracle(m, {"lstm.l0.rev.c": {1: 0.8}, "lstm.l1.fwd.h": {2: -0.4}}, (4, 20), x, tol=1e-5)


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
def test_empty_clamp_is_the_plain_forward(cell):
    m = module(cell, 2, True, dtype=torch.float32, seed=1)
    x = torch.randn(3, 12, 4)
    (out, final), cache = intervene(m, x, clamp={})
    want, want_final = m(x)
    torch.testing.assert_close(out, want, atol=1e-6, rtol=0)
    for g, w in zip(
        final if isinstance(final, tuple) else (final,),
        want_final if isinstance(want_final, tuple) else (want_final,),
        strict=True,
    ):
        torch.testing.assert_close(g, w, atol=1e-6, rtol=0)
    _, plain = lstmviz.run_with_cache(m, x)
    assert set(cache) == set(plain)
    for name in plain:
        torch.testing.assert_close(cache[name], plain[name], atol=1e-6, rtol=0)


def test_cache_gates_satisfy_the_cell_equations_under_a_clamp():
    """The gates in the cache are those of the held run: o against the oracle, c_t = f ⊙ c_{t-1} + i ⊙ g unheld."""
    m = module("LSTM", 1, False, seed=2)
    x = torch.randn(2, 12, 4, dtype=torch.float64)
    clamp = {"lstm.l0.fwd.c": {0: 2.0}, "lstm.l0.fwd.h": {3: -0.6}}
    _, cache = intervene(m, x, clamp=clamp, span=(4, 8))
    h = cache["lstm.l0.fwd.h"]
    h_prev = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], 1)
    torch.testing.assert_close(cache["lstm.l0.fwd.o"], output_gate(m, 0, False, x, h_prev), atol=1e-12, rtol=0)
    c, f, i, g = (cache[f"lstm.l0.fwd.{k}"] for k in "cfig")
    c_prev = torch.cat([torch.zeros_like(c[:, :1]), c[:, :-1]], 1)
    free = f * c_prev + i * g
    torch.testing.assert_close(c[:, :, 1:], free[:, :, 1:], atol=1e-12, rtol=0)
    outside = torch.tensor([0, 1, 2, 3, 8, 9, 10, 11])
    torch.testing.assert_close(c[:, outside, 0], free[:, outside, 0], atol=1e-12, rtol=0)


def test_projected_lstm_against_its_equations():
    torch.manual_seed(4)
    m = nn.LSTM(4, 6, 2, batch_first=True, proj_size=3).double().eval()
    x = torch.randn(2, 8, 4, dtype=torch.float64)
    assert torch.allclose(intervene(m, x, clamp={})[0][0], m(x)[0], atol=1e-12)
    (out, _), cache = intervene(m, x, clamp={"lstm.l0.fwd.c": {4: 1.0}, "lstm.l0.fwd.h": {2: 0.5}}, span=(2, 6))
    # Oracle: layer 0 by its equations, the clamp written in; layer 1 is torch's own module on that output.
    w_ih, w_hh, w_hr = m.weight_ih_l0, m.weight_hh_l0, m.weight_hr_l0
    b = m.bias_ih_l0 + m.bias_hh_l0
    h, c, hs = torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2, 6, dtype=torch.float64), []
    for t in range(8):
        i, f, g, o = (x[:, t] @ w_ih.T + h @ w_hh.T + b).chunk(4, 1)
        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
        if 2 <= t < 6:
            c[:, 4] = 1.0
        h = (o.sigmoid() * c.tanh()) @ w_hr.T
        if 2 <= t < 6:
            h[:, 2] = 0.5
        hs.append(h)
    l0 = torch.stack(hs, 1)
    torch.testing.assert_close(cache["lstm.l0.fwd.h"], l0, atol=1e-12, rtol=0)
    top = nn.LSTM(3, 6, 1, batch_first=True, proj_size=3).double()
    with torch.no_grad():
        for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"):
            getattr(top, f"{k}_l0").copy_(getattr(m, f"{k}_l1"))
    torch.testing.assert_close(out, top(l0)[0], atol=1e-12, rtol=0)
    proj = cache["lstm.l0.fwd.hp"] @ w_hr.T  # hp is the pre-projection read-out of the held c
    free = torch.ones_like(l0, dtype=torch.bool)
    free[:, 2:6, 2] = False  # where h itself is held
    torch.testing.assert_close(proj[free], l0[free], atol=1e-12, rtol=0)


def test_span_counts_positions_across_calls_of_one_block():
    m = module("GRU", 1, False, seed=6)
    x = torch.randn(1, 10, 4, dtype=torch.float64)
    clamp = {"gru.l0.fwd.h": {2: 0.7}}
    want, _, _ = oracle(m, x, clamp, (3, 6))
    with Intervention(m, clamp, span=(3, 6), carry=True) as iv:
        first, _ = m(x[:, :4])
        rest, _ = m(x[:, 4:])
    torch.testing.assert_close(torch.cat([first, rest], 1), want, atol=1e-10, rtol=0)
    assert iv.cache["gru.l0.fwd.h"].shape == (1, 10, 6)


def test_public_names():
    import lstmviz.causal

    for name in ("intervene", "effects", "attribute", "generate"):
        assert getattr(lstmviz, name) is getattr(lstmviz.causal, name)


def test_forward_is_restored_even_when_the_model_raises():
    m = module("LSTM", 1, False)
    with pytest.raises(RuntimeError), Intervention(m, {"lstm.l0.fwd.h": {0: 1.0}}):
        m(torch.randn(2, 3, 5, dtype=torch.float64))  # wrong input size
    assert "forward" not in m.__dict__
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    torch.testing.assert_close(m(x)[0], nn.LSTM.forward(m, x)[0])


def tiny(cell=nn.LSTM) -> TinyCharModel:
    torch.manual_seed(0)
    return TinyCharModel(cell=cell).double().eval()


@pytest.mark.parametrize("kind", ["h", "c"])
def test_direct_and_total_effects(kind):
    model = tiny()
    ids = torch.randint(0, 12, (2, 15))
    clamp = {f"rnn.l1.fwd.{kind}": {3: 1.2, 6: -0.8}}
    fx = effects(model, ids, clamp, span=(5, 9))
    x = model.embed(ids)
    for direct, got in ((True, fx.direct), (False, fx.total)):
        out, _, _ = oracle(
            model.rnn, x, {k.replace("rnn.", "lstm."): v for k, v in clamp.items()}, (5, 9), direct=direct
        )
        torch.testing.assert_close(got, model.decoder(out), atol=1e-10, rtol=0)
    torch.testing.assert_close(fx.plain, model(ids), atol=1e-10, rtol=0)
    # The direct effect is confined to the held steps; the total one carries on after them.
    same = torch.ones(15, dtype=torch.bool)
    same[5:9] = False
    torch.testing.assert_close(fx.direct[:, same], fx.plain[:, same], atol=1e-12, rtol=0)
    assert (fx.total[:, 9:] - fx.plain[:, 9:]).abs().max() > 1e-4
    logp = torch.log_softmax(fx.total, -1)[:, :-1].gather(2, ids[:, 1:, None])[..., 0]
    plain = torch.log_softmax(fx.plain, -1)[:, :-1].gather(2, ids[:, 1:, None])[..., 0]
    torch.testing.assert_close(fx.delta_logp(), logp - plain)
    assert fx.delta_loss() == pytest.approx(float((plain - logp).mean()))


def test_direct_effect_of_a_lower_layer_is_refused():
    with pytest.raises(UserError, match=r"last layer of rnn \(l1\)"):
        effects(tiny(), torch.zeros(1, 4, dtype=torch.long), {"rnn.l0.fwd.h": {0: 1.0}})


def test_mean_and_zero_values(tiny_run):
    torch.manual_seed(0)
    model = TinyCharModel().eval()
    ids = torch.randint(0, 12, (1, 9))
    mean = float(tiny_run.stats.query("name == 'rnn.l1.fwd.c' and unit == 2")["mean"].iloc[0])
    _, cache = intervene(model, ids, clamp={"rnn.l1.fwd.c": {2: "mean", 5: "zero"}}, run=tiny_run)
    assert torch.all(cache["rnn.l1.fwd.c"][0, :, 2] == torch.tensor(mean, dtype=torch.float32))
    assert torch.all(cache["rnn.l1.fwd.c"][0, :, 5] == 0)
    _, again = intervene(model, ids, clamp={"rnn.l1.fwd.c": {2: "mean"}}, run=tiny_run.stats)
    torch.testing.assert_close(again["rnn.l1.fwd.c"][..., 2], cache["rnn.l1.fwd.c"][..., 2])


def test_loaded_model_uses_its_own_call(tmp_path):
    from lstmviz.models.loading import load_model

    loaded = load_model("sample_models/parens_lstm.pt")
    ids = torch.as_tensor(loaded.tokenizer.encode("((ab)c)")).view(1, -1)
    out, cache = intervene(loaded, ids, clamp={"rnn.l0.fwd.c": {3: 1.0}})
    assert out.shape == (1, 7, loaded.vocab_size)
    assert torch.all(cache["rnn.l0.fwd.c"][0, :, 3] == 1.0)


@pytest.mark.parametrize(
    ("clamp", "match"),
    [
        ({"rnn.l0.fwd.q": {0: 1.0}}, r"this model has no such state\. Clampable: rnn\.l0\.fwd\.h, rnn\.l0\.fwd\.c"),
        ({"decoder.l0.fwd.h": {0: 1.0}}, r"Clampable: rnn\.l0\.fwd\.h"),
        ({"rnn.l2.fwd.h": {0: 1.0}}, r"no such state"),
        ({"rnn.l0.rev.h": {0: 1.0}}, r"no such state"),
        ({"rnn": {0: 1.0}}, r"no such state"),
        ({"rnn.l0.fwd.h": {8: 1.0}}, r"rnn\.l0\.fwd\.h has units 0…7; got unit 8"),
        ({"rnn.l0.fwd.h": {-1: 1.0}}, r"units 0…7; got unit -1"),
        ({"rnn.l0.fwd.h": {"3": 1.0}}, r"got unit '3'"),
        ({"rnn.l0.fwd.f": {0: 1.0}}, r"cannot clamp rnn\.l0\.fwd\.f: a LSTM layer holds only its state \(h and c\)"),
        ({"rnn.l0.fwd.h": {0: "max"}}, r"use a number, 'zero' or 'mean'"),
        ({"rnn.l0.fwd.h": {0: float("nan")}}, r"must be finite"),
        ({"rnn.l0.fwd.h": {0: "mean"}}, r"'mean' for rnn\.l0\.fwd\.h needs run="),
        ({"rnn.l0.fwd.h": 1.0}, r"must map unit → value"),
    ],
)
def test_bad_clamps_are_one_clear_error(clamp, match):
    model = tiny()
    with pytest.raises(UserError, match=match):
        intervene(model, torch.zeros(1, 3, dtype=torch.long), clamp=clamp)
    assert "forward" not in model.rnn.__dict__


def test_clamping_c_of_a_gru_names_what_it_holds():
    model = tiny(nn.GRU)
    with pytest.raises(
        UserError,
        match=r"cannot clamp rnn\.l1\.fwd\.c: a GRU layer holds only its state \(h\)"
        r".*Clampable: rnn\.l0\.fwd\.h, rnn\.l1\.fwd\.h",
    ):
        intervene(model, torch.zeros(1, 3, dtype=torch.long), clamp={"rnn.l1.fwd.c": {0: 1.0}})


@pytest.mark.parametrize("span", [(3, 3), (-1, 2), (5, 2), "ab", (1,)])
def test_bad_span(span):
    with pytest.raises(UserError, match="span"):
        intervene(tiny(), torch.zeros(1, 3, dtype=torch.long), clamp={"rnn.l0.fwd.h": {0: 1.0}}, span=span)


def test_mean_for_an_activation_the_run_lacks(tiny_run):
    m = module("GRU", 1, False)
    with pytest.raises(UserError, match=r"gru\.l0\.fwd\.h unit 0: the run's stats have no such activation"):
        intervene(m, torch.zeros(1, 3, 4, dtype=torch.float64), clamp={"gru.l0.fwd.h": {0: "mean"}}, run=tiny_run)


def test_a_packed_sequence_into_a_held_module_is_one_clear_error():
    m = module("GRU", 1, False)
    packed = nn.utils.rnn.pack_padded_sequence(torch.randn(2, 5, 4, dtype=torch.float64), [5, 3], batch_first=True)
    with pytest.raises(UserError, match="PackedSequence"):
        intervene(m, packed, clamp={"gru.l0.fwd.h": {0: 1.0}})
    torch.testing.assert_close(intervene(m, packed, clamp={})[0][0].data, m(packed)[0].data)
