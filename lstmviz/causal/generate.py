"""Sample from a language model, token by token, with units of its state held: watch what a unit makes it write.

    ids = lstmviz.generate(model, prompt_ids, 200, clamp={"rnn.l0.fwd.c": {255: 1.0}}, seed=0)

The prompt is read in one call; then each sampled token is fed back alone, the recurrent state carried from
call to call (as char-rnn samples). The clamp is held at every step, the prompt's included, so that the state
the first sample comes from was built under it too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from ..errors import UserError
from ..store import Run
from .clamp import Clamp
from .intervene import Call, Intervention, logits_of, unpack


def sample(logits: Tensor, temperature: float, generator: torch.Generator) -> int:
    """One token id from logits ``[V]``: softmax(logits / temperature) sampled with ``generator`` (on the CPU, so a
    seed means the same tokens on any device); ``temperature == 0`` takes the argmax."""
    logits = logits.detach().float().cpu()
    if temperature == 0:
        return int(logits.argmax())
    p = torch.softmax(logits / temperature, dim=-1)
    return int(torch.multinomial(p, 1, generator=generator))


def generate(
    model: nn.Module,
    prompt_ids: Sequence[int] | np.ndarray | Tensor,
    n: int,
    *,
    clamp: Clamp | None = None,
    temperature: float = 1.0,
    seed: int = 0,
    call: Call | None = None,
    run: Run | pd.DataFrame | None = None,
) -> list[int]:
    """``n`` token ids sampled after ``prompt_ids`` ``[T]``, with ``clamp`` held at every step.

    ``model`` is called on ids ``[1, time]`` (by ``call``, or a LoadedModel's own convention) and must return
    next-token logits ``[1, time, vocab]``. Sampling is seeded by ``seed`` (a fresh ``torch.Generator``), so the
    same arguments give the same tokens. ``temperature`` 0 is greedy. ``run``: for ``"mean"`` clamp values.
    """
    module, call = unpack(model, call)
    prompt = torch.as_tensor(np.asarray(prompt_ids), dtype=torch.long).reshape(-1)
    if not len(prompt):
        raise UserError("generate needs a prompt of at least one token")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise UserError(f"n (the number of tokens to generate) must be a whole number ≥ 0, got {n!r}")
    if not np.isfinite(temperature) or temperature < 0:
        raise UserError(f"temperature must be ≥ 0 (0 is greedy), got {temperature!r}")
    device = next(module.parameters()).device
    generator = torch.Generator().manual_seed(int(seed))
    was_training = module.training
    module.eval()
    out: list[int] = []
    try:
        with torch.no_grad(), Intervention(module, clamp, run=run, names=(), carry=True):
            getattr(call, "reset", lambda: None)()  # a call that carries the model's own state starts afresh
            step = prompt
            while len(out) < n:
                ids = step.view(1, -1).to(device)
                logits = logits_of(call(module, ids) if call is not None else module(ids), "generate")
                out.append(sample(logits[0, -1], temperature, generator))
                step = torch.tensor([out[-1]])
    finally:
        module.train(was_training)
    return out
