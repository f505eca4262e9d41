"""Gradient norm versus temporal distance: how far back does the loss at step t reach?

For sampled target steps t and distances k = 0…K this measures ‖∂ℓ_t/∂h_{t−k}‖ in every layer,
‖∂ℓ_t/∂c_{t−k}‖ for an LSTM, and ‖∂ℓ_t/∂x_{t−k}‖ at the embedding output (Bengio et al. 1994; Hochreiter &
Schmidhuber 1997). A vanilla RNN's curve typically falls exponentially with k; an LSTM's cell path keeps it up.

How it is computed. Each target is one batch row holding a window of the K+1 steps t−K…t. The state entering
the window comes from the module's own forward over everything before it (one stateful pass over the sequence,
stopping at each window start), so every number equals plain backpropagation through the full prefix. Inside the
window the layers are unrolled with :mod:`lstmviz.cells`' differentiable cells, so each h_s and c_s is a graph
node, and one ``torch.autograd.grad`` call per batch of targets returns every node's gradient at once. The
parameters' ``.grad`` are left untouched, and torch's fused (cuDNN) RNN kernel is never differentiated, so its
refusal to run backward in eval mode does not arise. The model runs in eval mode (no dropout) throughout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..cells import LayerParams, cell_type, gru_cell, layer_params, lstm_cell, rnn_cell
from ..errors import UserError, no_recurrent
from . import progress

WARM_SHARE = 0.5
"""The share of the work progress reports give the warm-up forward (about half, measured on the samples)."""
FORWARD_SHARE = 0.1
"""The share of a batch's work that is its unrolled forward; the backward pass, which cannot report, is the rest."""

Loss = Callable[[Tensor, Tensor], Tensor]
"""``loss(h_top [B, P], next_ids [B]) -> [B]``: the per-target loss from the top layer's state at t."""


@dataclass(frozen=True)
class GradientFlow:
    """The result of :func:`gradient_flow`.

    k: int ``[K+1]``, the distances 0…K. targets: int ``[n]``, the target positions t.
    norms: series name (``"x"``, ``"h l0"``, ``"c l0"``, …) → float ``[n, K+1]``, column k is ‖∂ℓ_t/∂·_{t−k}‖.
    summary: one row per (series, k): series, quantity (x | h | c), layer (−1 for x), k, mean, and one column
    per quantile (``q10``, ``q50``, ``q90`` by default).
    """

    k: np.ndarray
    targets: np.ndarray
    norms: dict[str, np.ndarray]
    summary: pd.DataFrame


@dataclass(frozen=True)
class ModelParts:
    """The parts of an embedding → RNN → decoder model that :func:`gradient_flow` unrolls."""

    embed: Callable[[Tensor], Tensor]
    rnn: nn.RNNBase
    decoder: Callable[[Tensor], Tensor] | None
    cell: str


def find_parts(
    model: nn.Module, embed: nn.Module | None = None, rnn: nn.RNNBase | None = None, decoder: nn.Module | None = None
) -> ModelParts:
    """The embedding, the recurrent module and the decoder of an embedding → RNN → decoder model.

    Defaults: the attribute ``rnn`` (else the only nn.LSTM/GRU/RNN in ``named_modules()``), the attribute
    ``embed`` or ``encoder`` (else the only nn.Embedding), and the attribute ``decoder`` (else none).
    """
    if rnn is None:
        rnn = getattr(model, "rnn", None)
        if cell_type(rnn) is None:
            found = [(n, m) for n, m in model.named_modules() if cell_type(m)]
            if not found:
                raise no_recurrent(model)
            if len(found) != 1:
                names = ", ".join(n for n, _ in found) or "none"
                raise UserError(f"gradient flow needs exactly one recurrent module; found {names}: pass rnn=")
            rnn = found[0][1]
    if embed is None:
        embed = next((m for a in ("embed", "encoder") if _feeds_rnn(m := getattr(model, a, None))), None)
    if embed is None:
        found = [m for m in model.modules() if isinstance(m, nn.Embedding)]
        if len(found) != 1:
            raise UserError(
                "gradient flow needs the input embedding; the model has no single nn.Embedding: pass embed="
            )
        embed = found[0]
    if decoder is None:
        decoder = getattr(model, "decoder", None)
    if rnn.bidirectional:
        raise UserError("gradient flow versus distance is defined for unidirectional models only")
    return ModelParts(embed, rnn, decoder, cell_type(rnn))


def _feeds_rnn(m: object) -> bool:
    """A module that can be the input side: not the recurrent module, nor a container holding one."""
    return isinstance(m, nn.Module) and not any(cell_type(x) for x in m.modules())


def gradient_flow(
    model: nn.Module,
    ids: Tensor | np.ndarray | Sequence[int],
    *,
    K: int = 100,
    n_targets: int = 64,
    seed: int = 0,
    batch_size: int = 64,
    quantiles: Sequence[float] = (0.1, 0.5, 0.9),
    targets: Sequence[int] | np.ndarray | None = None,
    embed: nn.Module | None = None,
    rnn: nn.RNNBase | None = None,
    decoder: nn.Module | None = None,
    loss: Loss | None = None,
) -> GradientFlow:
    """How strongly the loss at step t depends on the state k steps earlier, for k = 0…K.

    For each sampled target t, the norms of ∂ℓ_t/∂h_{t−k} (every layer), ∂ℓ_t/∂c_{t−k} (LSTM) and ∂ℓ_t/∂x_{t−k}
    (embedding output). ℓ_t is the next-token cross-entropy when the model has a decoder, else ‖h_t‖ of the
    top layer. A curve that falls fast means the model forgets fast; compare an RNN with an LSTM at k = 50.

    Args:
        model: embedding → nn.LSTM/GRU/RNN (unidirectional) → decoder; parts found as :func:`find_parts` says.
        ids: int ``[T]``, one token stream (a corpus in order). The warm-up is one batch-1 forward over ids
            up to the last window, so pass an excerpt (thousands of tokens), not a whole large corpus.
        K: largest distance. Targets are drawn from t ∈ [K, T−2] (T−1 without a decoder).
        n_targets: how many targets (all valid ones if fewer); ignored when targets are given.
        seed: seed of the target sample.
        batch_size: targets per backward pass (memory grows with batch_size × K).
        quantiles: quantile bands for the summary.
        targets: explicit target positions instead of a sample.
        embed, rnn, decoder: the model's parts, when the defaults do not find them.
        loss: ``loss(h_top [B, P], next_ids [B]) -> [B]`` instead of the default.

    Returns:
        :class:`GradientFlow`: per-target norms ``[n, K+1]`` per series, and a summary table (mean, quantiles)
        ready for a line plot with bands.
    """
    parts = find_parts(model, embed, rnn, decoder)
    ids = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
    needs_next = loss is not None or parts.decoder is not None
    t = _targets(len(ids), K, needs_next, n_targets, seed, targets)
    if loss is None:
        loss = _next_token_loss(parts.decoder) if parts.decoder is not None else _state_norm
    param = next(parts.rnn.parameters())
    ids = ids.to(param.device)
    chunks: list[dict[str, Tensor]] = []
    n_batches = -(-len(t) // batch_size)
    with _eval_mode(model, parts):
        with progress.part(0.0, WARM_SHARE):
            h0, c0 = _warm_states(parts, ids, t - K)
        for i, j in enumerate(range(0, len(t), batch_size)):
            rows = slice(j, j + batch_size)
            window = ids[torch.as_tensor(t[rows, None] - K + np.arange(K + 1), device=ids.device)]  # (B, K+1)
            nxt = ids[torch.as_tensor(np.minimum(t[rows] + 1, len(ids) - 1), device=ids.device)]
            share = (1 - WARM_SHARE) / n_batches
            with progress.part(WARM_SHARE + i * share, WARM_SHARE + (i + 1) * share):
                h, c = h0[:, rows], None if c0 is None else c0[:, rows]
                chunks.append(_window_norms(parts, window, nxt, h, c, loss))
    norms = {name: torch.cat([c[name] for c in chunks]).flip(1).cpu().double().numpy() for name in chunks[0]}
    return GradientFlow(np.arange(K + 1), t, norms, _summary(norms, quantiles))


def _targets(
    T: int, K: int, needs_next: bool, n: int, seed: int, given: Sequence[int] | np.ndarray | None
) -> np.ndarray:
    last = T - 2 if needs_next else T - 1
    if given is not None:
        t = np.asarray(given, np.int64).reshape(-1)
        bad = t[(t < K) | (t > last)]
        if len(bad):
            raise UserError(f"target {bad[0]} lies outside [{K}, {last}], where a window of K={K} steps fits")
        return t
    if last < K:
        raise UserError(f"the sequence of {T} tokens is too short for K={K}")
    valid = np.arange(K, last + 1)
    return np.sort(np.random.default_rng(seed).choice(valid, size=min(n, len(valid)), replace=False))


def _next_token_loss(decoder: Callable[[Tensor], Tensor]) -> Loss:
    def loss(h: Tensor, nxt: Tensor) -> Tensor:
        return F.cross_entropy(decoder(h), nxt, reduction="none")

    return loss


def _state_norm(h: Tensor, nxt: Tensor) -> Tensor:
    return h.norm(dim=1)


@contextlib.contextmanager
def _eval_mode(model: nn.Module, parts: ModelParts) -> Iterator[None]:
    """Eval mode (no dropout) for the model and its parts, restoring every module's own flag afterwards."""
    modules = [model, *(m for m in (parts.embed, parts.rnn, parts.decoder) if isinstance(m, nn.Module))]
    flags = {m: m.training for top in modules for m in top.modules()}
    try:
        for m in modules:
            m.eval()
        yield
    finally:
        for m, flag in flags.items():
            m.train(flag)


@torch.no_grad()
def _warm_states(parts: ModelParts, ids: Tensor, starts: np.ndarray) -> tuple[Tensor, Tensor | None]:
    """The state entering each window: the module's own forward over ids[:start], one stateful pass in order.

    Returns h ``[layers, n, P]`` and, for an LSTM, c ``[layers, n, H]`` (None otherwise).
    """
    rnn = parts.rnn
    param = next(rnn.parameters())
    P = rnn.proj_size if getattr(rnn, "proj_size", 0) else rnn.hidden_size
    h0 = param.new_zeros(rnn.num_layers, len(starts), P)
    c0 = param.new_zeros(rnn.num_layers, len(starts), rnn.hidden_size) if parts.cell == "LSTM" else None
    state, done = None, 0
    last = max(int(starts.max()), 1) if len(starts) else 1
    for j in np.argsort(starts, kind="stable"):
        s = int(starts[j])
        if s > done:
            progress.report(done / last, f"warming up the state: token {done:,} of {last:,}")
            x = parts.embed(ids[done:s].unsqueeze(0))  # (1, L, E)
            _, state = rnn(x if rnn.batch_first else x.transpose(0, 1), state)
            done = s
        if state is not None:
            h0[:, j] = (state[0] if c0 is not None else state)[:, 0]
            if c0 is not None:
                c0[:, j] = state[1][:, 0]
    return h0, c0


def _detached(p: LayerParams) -> LayerParams:
    """The weights as constants: only activations need gradients, so no weight-gradient GEMMs are run."""
    return LayerParams(*(None if (w := getattr(p, f.name)) is None else w.detach() for f in fields(p)))


def _window_norms(
    parts: ModelParts, window: Tensor, nxt: Tensor, h0: Tensor, c0: Tensor | None, loss: Loss
) -> dict[str, Tensor]:
    """Unroll one batch of windows and return each node's gradient norm, ``[B, K+1]`` by step (not distance)."""
    rnn = parts.rnn
    with torch.enable_grad():
        x = parts.embed(window).detach().requires_grad_()  # (B, K+1, E)
        nodes: dict[str, list[Tensor]] = {}
        inp = list(x.unbind(1))  # per-step views; slicing x[:, s] instead costs a full-size zero fill per step
        for layer in range(rnn.num_layers):
            progress.report(FORWARD_SHARE * layer / rnn.num_layers, f"unrolling layer {layer} over {len(inp)} steps")
            p = _detached(layer_params(rnn, layer, reverse=False))
            h, c = h0[layer], None if c0 is None else c0[layer]
            hs, cs = [], []
            for x_s in inp:
                if parts.cell == "LSTM":
                    h, c = lstm_cell(x_s, h, c, p)
                    cs.append(c)
                elif parts.cell == "GRU":
                    h = gru_cell(x_s, h, p)
                else:
                    h = rnn_cell(x_s, h, p, rnn.nonlinearity)
                hs.append(h)
            nodes[f"h l{layer}"] = hs
            if cs:
                nodes[f"c l{layer}"] = cs
            inp = hs
        progress.report(FORWARD_SHARE, "backpropagating through time")
        ell = loss(hs[-1], nxt).sum()  # rows are independent targets, so one backward serves them all
        flat = [x, *(n for series in nodes.values() for n in series)]
        grads = torch.autograd.grad(ell, flat, allow_unused=True)
    out = {"x": grads[0].norm(dim=2)}
    i = 1
    for name, series in nodes.items():
        g = [torch.zeros_like(n) if d is None else d for n, d in zip(series, grads[i : i + len(series)], strict=True)]
        out[name] = torch.stack(g, dim=1).norm(dim=2)
        i += len(series)
    return out


def _summary(norms: dict[str, np.ndarray], quantiles: Sequence[float]) -> pd.DataFrame:
    frames = []
    for name, v in norms.items():  # v: (n, K+1)
        quantity, _, layer = name.partition(" l")
        frame = pd.DataFrame(
            {
                "series": name,
                "quantity": quantity,
                "layer": int(layer) if layer else -1,
                "k": np.arange(v.shape[1]),
                "mean": v.mean(0),
            }
        )
        for q in quantiles:
            frame[f"q{round(100 * q)}"] = np.quantile(v, q, axis=0)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
