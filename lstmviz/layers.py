"""One recurrent module's layers, run one at a time, each with its activations (the recorder's two strategies).

``"replay"``: ``h`` of every layer and direction comes from torch's own fused kernel (the same ``_VF`` call the
module makes, one layer at a time), so it *is* the module's output; gates and ``c`` are then rebuilt exactly from
``(x_t, h_{t-1})`` by :func:`lstmviz.cells.lstm_replay` / :func:`~lstmviz.cells.gru_replay`. ``"loop"``: the
layer is run by a tight step loop that keeps the gates as it goes (:mod:`lstmviz.kernels.loop`).

Every tensor here is batch-first ``[B, T, ·]`` unless named for the module's own layout; states are
``[layers·dirs, B, ·]``, as torch keeps them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import _VF, Tensor
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from . import cells
from . import names as _names
from .kernels.loop import gru_loop, lstm_loop
from .kernels.pool import Pool
from .recurrent import RecurrentModule

_KERNELS = {"LSTM": _VF.lstm, "GRU": _VF.gru, ("RNN", "tanh"): _VF.rnn_tanh, ("RNN", "relu"): _VF.rnn_relu}
PoolOf = Callable[[int, str], Pool | None]  # (layer, dir) → the step loop's buffers for this call, or None


def _reverse_within(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence in time within its length. x ``[B, T, ·]``; positions past a length stay put."""
    if lengths is None:
        return x.flip(1)
    T = x.shape[1]
    t = torch.arange(T, device=x.device)
    lens = lengths.to(x.device).unsqueeze(1)
    idx = torch.where(t < lens, lens - 1 - t, t)  # (B, T)
    return x.gather(1, idx.unsqueeze(2).expand_as(x))


def _permute(state, index: Tensor | None):
    """Reorder a state tensor (or tuple of them, ``[L·D, B, ·]``) along batch, as PyTorch's permute_hidden."""
    if state is None or index is None:
        return state
    if isinstance(state, tuple):
        return tuple(s.index_select(1, index) for s in state)
    return state.index_select(1, index)


def run_layers(
    rm: RecurrentModule,
    input: Tensor | PackedSequence,
    x_bf: Tensor,
    lengths: Tensor | None,
    h0: Tensor,
    c0: Tensor | None,
    strategy: str,
    keep: Callable[[str], bool],
    add: Callable[[str, Tensor], None],
    pool_of: PoolOf,
) -> tuple[Tensor | PackedSequence, Tensor, Tensor | None]:
    """Run every layer of ``rm`` on ``input`` (``x_bf``: the same, batch-first ``[B, T, I]``; ``lengths [B]`` of
    a packed input) from ``h0`` / ``c0``, with ``strategy`` ``"replay"`` or ``"loop"``; every activation that
    ``keep`` keeps goes to ``add(name, [B, T, units])``. Returns (output in the module's layout, h_n, c_n)."""
    m = rm.module
    packed = isinstance(input, PackedSequence)
    D = len(rm.dirs)
    per = len(m._flat_weights) // (m.num_layers * D)
    kernel = _KERNELS[rm.cell] if rm.cell != "RNN" else _KERNELS[("RNN", m.nonlinearity)]
    layer_in = input.data if packed else input
    layer_in_bf = x_bf
    h_ns, c_ns = [], []
    for layer in range(m.num_layers):
        sl = slice(layer * D, (layer + 1) * D)
        if strategy == "loop":
            out_bf, h_n, c_n, rec = loop_layer(
                rm, layer, keep, pool_of, layer_in_bf, h0[sl], c0[sl] if c0 is not None else None
            )
            layer_out = out_bf if m.batch_first else out_bf.transpose(0, 1)
        else:
            weights = m._flat_weights[layer * D * per : (layer + 1) * D * per]
            hx = (h0[sl], c0[sl]) if rm.cell == "LSTM" else h0[sl]
            if packed:
                hx = _permute(hx, input.sorted_indices)
                res = kernel(layer_in, input.batch_sizes, hx, weights, m.bias, 1, 0.0, m.training, D == 2)
            else:
                res = kernel(layer_in, hx, weights, m.bias, 1, 0.0, m.training, D == 2, m.batch_first)
            layer_out = res[0]
            h_n = res[1]
            c_n = res[2] if rm.cell == "LSTM" else None
            if packed:
                h_n, c_n = _permute(h_n, input.unsorted_indices), _permute(c_n, input.unsorted_indices)
            out_bf = to_batch_first(rm, input, layer_out)
            rec = replay_layer(
                rm, layer, keep, layer_in_bf, out_bf, lengths, h0[sl], c0[sl] if c0 is not None else None
            )
        for name, value in rec.items():
            add(name, value.detach())
        h_ns.append(h_n)
        if c_n is not None:
            c_ns.append(c_n)
        if m.training and m.dropout > 0 and layer < m.num_layers - 1:
            # Same semantics as the module's inter-layer dropout, though not the same random draws.
            layer_out = F.dropout(layer_out, m.dropout, True)
            out_bf = to_batch_first(rm, input, layer_out)
        layer_in, layer_in_bf = layer_out, out_bf
    h_n = torch.cat(h_ns, 0)
    c_n = torch.cat(c_ns, 0) if c_ns else None
    if packed:
        output = PackedSequence(layer_in, input.batch_sizes, input.sorted_indices, input.unsorted_indices)
    else:
        output = layer_in
    return output, h_n, c_n


def to_batch_first(rm: RecurrentModule, input, layer_out: Tensor) -> Tensor:
    """A layer's output in the kernel's layout → padded batch-first ``[B, T, ·]`` in the caller's order."""
    if isinstance(input, PackedSequence):
        seq = PackedSequence(layer_out, input.batch_sizes, input.sorted_indices, input.unsorted_indices)
        return pad_packed_sequence(seq, batch_first=True)[0]
    return layer_out if rm.module.batch_first else layer_out.transpose(0, 1)


def wanted(rm: RecurrentModule, layer: int, d: str, keep: Callable[[str], bool]) -> dict[str, str]:
    """kind → activation name of one layer and direction, for the kinds that ``keep`` keeps."""
    return {k: n for k in rm.kinds() if keep(n := _names.build(rm.path, layer, d, k))}


def replay_layer(rm, layer, keep, x_bf, out_bf, lengths, h0, c0) -> dict[str, Tensor]:
    """Activations of one layer from its input x ``[B, T, I]`` and kernel output ``[B, T, D·P]``."""
    P = rm.out_size
    rec: dict[str, Tensor] = {}
    for di, d in enumerate(rm.dirs):
        want = wanted(rm, layer, d, keep)
        if not want:
            continue
        h = out_bf[..., di * P : (di + 1) * P]
        vals = {"h": h}
        if set(want) - {"h"}:
            vals.update(replay_gates(rm, layer, d, di, x_bf, h, lengths, h0, c0))
        for k, name in want.items():
            v = vals[k]
            if lengths is not None and k != "h":
                mask = torch.arange(v.shape[1], device=v.device) < lengths.to(v.device).unsqueeze(1)
                v = v * mask.unsqueeze(2)
            rec[name] = v
    return rec


@torch.no_grad()
def replay_gates(rm, layer, d, di, x_bf, h, lengths, h0, c0) -> dict[str, Tensor]:
    """Gates (and c) of one layer and direction, rebuilt from x ``[B, T, I]`` and h ``[B, T, P]``."""
    p = cells.layer_params(rm.module, layer, d == "rev")
    rev = d == "rev"
    xs = _reverse_within(x_bf, lengths) if rev else x_bf
    hs = _reverse_within(h, lengths) if rev else h
    g = cells.lstm_replay(xs, hs, h0[di], c0[di], p) if rm.cell == "LSTM" else cells.gru_replay(xs, hs, h0[di], p)
    return {k: _reverse_within(v, lengths) if rev else v for k, v in g.items()}


def loop_layer(rm, layer, keep, pool_of, x_bf, h0, c0):
    """Run one layer with the step loop. Returns (out ``[B, T, D·P]``, h_n, c_n, activations)."""
    outs, h_ns, c_ns, rec = [], [], [], {}
    for di, d in enumerate(rm.dirs):
        rev = d == "rev"
        p = cells.layer_params(rm.module, layer, rev)
        xs = x_bf.flip(1) if rev else x_bf
        pool = pool_of(layer, d)
        if rm.cell == "LSTM":
            vals = lstm_loop(xs, h0[di], c0[di], p, pool)
            c_ns.append(vals["c"][:, -1])
        else:
            vals = gru_loop(xs, h0[di], p, pool)
        h_ns.append(vals["h"][:, -1])
        if rev:
            vals = {k: v.flip(1) for k, v in vals.items()}
        outs.append(vals["h"])
        for k, name in wanted(rm, layer, d, keep).items():
            rec[name] = vals[k]
    if len(outs) > 1:  # joined time-major, so the memory layout is torch's own (contiguous when seq-first)
        outs = [torch.cat([o.transpose(0, 1) for o in outs], dim=2).transpose(0, 1)]
    return outs[0], torch.stack(h_ns), (torch.stack(c_ns) if c_ns else None), rec
