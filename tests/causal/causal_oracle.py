"""The oracle for interventions: a recurrent module run step by step with torch's own cells, the clamp written in.

Each layer and direction is an ``nn.LSTMCell`` / ``nn.GRUCell`` / ``nn.RNNCell`` loaded with that layer's weights.
The only quantity a cell does not return is the LSTM's output gate, needed to read a held cell out as
``h_t = o_t ⊙ tanh(c_t)``; it comes from the o rows of the layer's weights, σ(W_io x + b_io + W_ho h + b_ho).
"""

from __future__ import annotations

import torch
from torch import nn

CELLS = {nn.LSTM: nn.LSTMCell, nn.GRU: nn.GRUCell, nn.RNN: nn.RNNCell}


def make_cell(module: nn.RNNBase, layer: int, rev: bool) -> nn.RNNCellBase:
    sfx = f"_l{layer}{'_reverse' if rev else ''}"
    in_size = module.input_size if layer == 0 else module.hidden_size * (2 if module.bidirectional else 1)
    kw = {"nonlinearity": module.nonlinearity} if type(module) is nn.RNN else {}
    cell = CELLS[type(module)](in_size, module.hidden_size, bias=module.bias, **kw)
    cell = cell.to(module.weight_hh_l0.dtype)
    with torch.no_grad():
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            if hasattr(cell, kind) and getattr(cell, kind) is not None:
                getattr(cell, kind).copy_(getattr(module, kind + sfx))
    return cell


def output_gate(module: nn.LSTM, layer: int, rev: bool, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    sfx = f"_l{layer}{'_reverse' if rev else ''}"
    H = module.hidden_size
    rows = slice(3 * H, 4 * H)
    pre = x @ getattr(module, "weight_ih" + sfx)[rows].T + h @ getattr(module, "weight_hh" + sfx)[rows].T
    if module.bias:
        pre = pre + getattr(module, "bias_ih" + sfx)[rows] + getattr(module, "bias_hh" + sfx)[rows]
    return pre.sigmoid()


def run(module: nn.RNNBase, x: torch.Tensor, clamp: dict, span=None, direct: bool = False, state=None):
    """Run ``module`` on x (in its own layout) holding ``clamp`` ({name: {unit: value}}, names as a run's, the
    module's path taken to be its cell name) over ``span`` (None: every step). ``direct``: the clamp reaches the
    output only, the state carried on stays the plain one. ``state``: initial (h0, c0) or h0, else zeros.

    Returns (output in the module's layout, {name: [B, T, units]} of h and c, final state as the module gives).
    """
    lstm = type(module) is nn.LSTM
    path = type(module).__name__.lower()
    xb = x if module.batch_first else x.transpose(0, 1)
    B, T, _ = xb.shape
    dirs = ("fwd", "rev") if module.bidirectional else ("fwd",)
    H = module.hidden_size
    acts, h_n, c_n = {}, [], []
    layer_in = xb
    for layer in range(module.num_layers):
        outs = []
        for di, d in enumerate(dirs):
            rev = d == "rev"
            i = layer * len(dirs) + di
            cell = make_cell(module, layer, rev)
            if state is None:
                h, c = xb.new_zeros(B, H), xb.new_zeros(B, H)
            else:
                h, c = (state[0][i], state[1][i]) if lstm else (state[i], None)
            held_h = clamp.get(f"{path}.l{layer}.{d}.h", {})
            held_c = clamp.get(f"{path}.l{layer}.{d}.c", {})
            hs, cs = [None] * T, [None] * T
            for t in reversed(range(T)) if rev else range(T):
                held = span is None or span[0] <= t < span[1]
                if lstm:
                    h1, c1 = cell(layer_in[:, t], (h, c))
                    carry_h, carry_c = h1, c1
                    if held and held_c:
                        c1 = c1.clone()
                        o = output_gate(module, layer, rev, layer_in[:, t], h)
                        h1 = h1.clone()
                        for u, v in held_c.items():
                            c1[:, u] = v
                            h1[:, u] = o[:, u] * torch.tanh(c1[:, u])
                else:
                    h1, c1 = cell(layer_in[:, t], h), None
                    carry_h, carry_c = h1, None
                if held and held_h:
                    h1 = h1.clone()
                    for u, v in held_h.items():
                        h1[:, u] = v
                hs[t], cs[t] = h1, c1
                h, c = (carry_h, carry_c) if direct else (h1, c1)
            h_n.append(h)
            c_n.append(c)
            acts[f"{path}.l{layer}.{d}.h"] = torch.stack(hs, 1)
            if lstm:
                acts[f"{path}.l{layer}.{d}.c"] = torch.stack(cs, 1)
            outs.append(acts[f"{path}.l{layer}.{d}.h"])
        layer_in = torch.cat(outs, 2)
    out = layer_in if module.batch_first else layer_in.transpose(0, 1)
    final = (torch.stack(h_n), torch.stack(c_n)) if lstm else torch.stack(h_n)
    return out, acts, final
