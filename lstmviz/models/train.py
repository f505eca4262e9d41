"""Train the reference char model with truncated backpropagation through time, and save a native checkpoint.

    lstmviz train --corpus sample_models/corpora/python_stdlib.txt --arch lstm --layers 2 --hidden 256 \\
        --steps 4000 --out sample_models/code_lstm.pt

The corpus is cut into ``--batch`` contiguous streams, as char-rnn does. Each step trains on the next ``--seq``
characters of every stream and carries the recurrent state into the next step (detached), so the model learns to
use a state that runs across the whole text, which is the way ``lstmviz record`` replays it. The last
``--val-frac`` of the text is held out and reported in bits per character.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..errors import UserError
from ..outputs import Output, check_target
from .charrnn import ARCHS, CharRNN, CharRNNConfig
from .tokenizers import Tokenizer, read_text

LN2 = math.log(2.0)
DIVERGED = 4.0
"""A loss (training step or validation) this many times that of a uniform guess, or one that is not a number,
means training diverged: it stops with an error, keeping only a checkpoint saved before."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``lstmviz train``."""
    p.add_argument("--corpus", required=True, type=Path, help="UTF-8 text file to train on")
    p.add_argument("--out", required=True, type=Path, help="checkpoint to write (.pt, native lstmviz format)")
    p.add_argument("--arch", choices=sorted(ARCHS), default="lstm", help="recurrent cell (default lstm)")
    p.add_argument("--layers", type=int, default=2, help="stacked recurrent layers (default 2)")
    p.add_argument("--hidden", type=int, default=256, help="hidden units per layer (default 256)")
    p.add_argument("--embed", type=int, default=64, help="character embedding size (default 64)")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout between layers (default 0)")
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps (default 2000)")
    p.add_argument("--minutes", type=float, default=None, help="also stop after this much training time")
    p.add_argument("--batch", type=int, default=64, help="parallel streams per step (default 64)")
    p.add_argument("--seq", type=int, default=128, help="BPTT length in characters (default 128)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate, cosine-decayed to lr/10")
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clip (default 1)")
    p.add_argument("--val-frac", type=float, default=0.05, help="held-out tail of the corpus (default 0.05)")
    p.add_argument("--eval-every", type=int, default=250, help="validate (and save if better) every N steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def stream_batches(data: torch.Tensor, batch: int, seq: int, offset: int) -> torch.Tensor:
    """Cut ``data [N]`` (from ``offset``) into ``[n_chunks, batch, seq + 1]`` windows of ``batch`` contiguous
    streams; window k of stream b starts where window k−1 ended, and each carries one extra target char."""
    per = (len(data) - offset - 1) // batch  # chars per stream
    n_chunks = per // seq
    if n_chunks < 1:
        raise UserError(
            f"the corpus is too short for --batch {batch} × --seq {seq}: "
            f"need at least {batch * seq + 1 + offset} characters, have {len(data)}"
        )
    streams = data[offset : offset + batch * per + 1]
    x = streams[: batch * per].view(batch, per)  # (B, per)
    y = streams[1 : batch * per + 1].view(batch, per)  # (B, per)
    idx = torch.arange(n_chunks)[:, None] * seq + torch.arange(seq)[None]  # (n_chunks, seq)
    return torch.stack([x[:, idx], y[:, idx]], -1).permute(1, 0, 2, 3)  # (n_chunks, B, seq, 2)


def _epochs(data: torch.Tensor, batch: int, seq: int, rng: np.random.Generator) -> Iterator[tuple[torch.Tensor, bool]]:
    """Endless ``(chunk [B, seq, 2], fresh)``: epoch after epoch of :func:`stream_batches`, each from a random
    offset below ``seq`` so windows do not always cut the text at the same places; ``fresh`` starts an epoch."""
    while True:
        for k, chunk in enumerate(stream_batches(data, batch, seq, int(rng.integers(seq)))):
            yield chunk, k == 0


def _detach(h: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Cut the graph at a chunk boundary (truncated BPTT), keeping the state's values."""
    return tuple(t.detach() for t in h) if isinstance(h, tuple) else h.detach()


@torch.no_grad()
def evaluate(model: CharRNN, data: torch.Tensor, batch: int, seq: int) -> float:
    """Mean next-char cross-entropy in bits per char over ``data [N]``, read as stateful streams."""
    model.eval()
    batch = max(1, min(batch, (len(data) - 1) // seq))
    chunks = stream_batches(data, batch, seq, 0)
    hidden, total, n = None, 0.0, 0
    for chunk in chunks:
        logits, hidden = model.step(chunk[..., 0], hidden)  # (B, seq, V)
        total += nn.functional.cross_entropy(logits.flatten(0, 1), chunk[..., 1].flatten(), reduction="sum")
        n += chunk[..., 1].numel()
    model.train()
    return float(total) / n / LN2


def save_checkpoint(
    path: Path, model: CharRNN, tok: Tokenizer, metrics: dict, training: dict, *, overwrite: bool = True
) -> None:
    """Write the native format atomically: config, state_dict, tokenizer, metrics and how it was trained.

    An existing file at ``path`` is replaced only with ``overwrite`` and only when it is a native checkpoint
    (see :mod:`lstmviz.outputs`)."""
    ckpt = {
        "format": "lstmviz",
        "version": 1,
        "config": model.config.to_json(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "tokenizer": tok.to_json(),
        "metrics": metrics,
        "training": training,
    }
    with Output(path, "checkpoint", overwrite, name="checkpoint") as out:
        torch.save(ckpt, out.partial)
        out.publish()


def _check(args: argparse.Namespace) -> None:
    for name in ("layers", "hidden", "embed", "steps", "batch", "seq", "eval_every"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not 0 < args.val_frac < 1:
        raise UserError(f"--val-frac must be between 0 and 1, got {args.val_frac}")
    if not 0 <= args.dropout < 1:
        raise UserError(f"--dropout must be in [0, 1), got {args.dropout}")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise UserError(f"--lr must be a positive number, got {args.lr}")
    # before any training: --out must be a new file, or an lstmviz checkpoint with --overwrite, in a writable place
    check_target(args.out, "checkpoint", args.overwrite, name="--out", flag="--overwrite")


def _diverged(step: int, what: str, bpc: float, uniform: float, lr: float, saved: dict) -> UserError:
    """The error for a loss that is no longer a number, or far worse than guessing every char uniformly."""
    kept = (
        f"; --out keeps the best checkpoint before it (step {saved['steps']}, val {saved['val_bpc']} bits/char)"
        if saved.get("steps")
        else "; nothing was saved"
    )
    return UserError(
        f"training diverged at step {step}: the {what} loss is {bpc:.4g} bits/char, where a uniform guess scores "
        f"{uniform:.3g} (try a smaller --lr than {lr}){kept}"
    )


def train(args: argparse.Namespace) -> dict:
    """Run ``lstmviz train``; returns the metrics stored in the checkpoint."""
    _check(args)
    text = read_text(args.corpus)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    tok = Tokenizer.char(text)
    data = torch.from_numpy(tok.encode(text))
    n_val = int(len(data) * args.val_frac)
    train_data, val_data = data[:-n_val], data[-n_val:]
    if n_val < args.seq + 1:
        raise UserError(
            f"the held-out tail ({n_val} chars) is shorter than --seq {args.seq}: "
            f"use a longer corpus, a larger --val-frac or a smaller --seq"
        )
    stream_batches(train_data, args.batch, args.seq, 0)  # fails early, with the sizes, if the text is too short
    config = CharRNNConfig(args.arch, len(tok), args.hidden, args.layers, args.embed, args.dropout)
    model = CharRNN(config)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s / args.steps, 1.0)))
    )
    training = {
        "command": shlex.join(["lstmviz", *getattr(args, "argv", ["train"])]),
        "corpus": str(args.corpus),
        "corpus_chars": len(text),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("func", "argv")},
    }
    metrics: dict = {"val_bpc": None}
    best, saved = math.inf, False
    t0 = time.perf_counter()
    deadline = t0 + 60 * args.minutes if args.minutes is not None else math.inf
    bar = tqdm(
        total=args.steps,
        desc=f"train {args.arch} {args.layers}×{args.hidden}",
        unit="step",
        mininterval=1.0,
        disable=not sys.stderr.isatty(),  # in a log the "step N: …" lines on stdout tell the progress
    )
    train_bpc, hidden = math.nan, None
    uniform = math.log2(len(tok))  # bits/char of knowing nothing
    for step, (chunk, fresh) in enumerate(_epochs(train_data, args.batch, args.seq, rng), start=1):
        logits, hidden = model.step(chunk[..., 0], None if fresh else hidden)  # (B, seq, V)
        hidden = _detach(hidden)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), chunk[..., 1].flatten())
        if not loss.item() / LN2 < DIVERGED * uniform:  # NaN too
            bar.close()
            raise _diverged(step, "training", loss.item() / LN2, uniform, args.lr, metrics)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        sched.step()
        train_bpc = 0.98 * train_bpc + 0.02 * loss.item() / LN2 if step > 1 else loss.item() / LN2
        bar.update(1)
        bar.set_postfix(bpc=f"{train_bpc:.3f}", refresh=False)
        last = step == args.steps or time.perf_counter() > deadline
        if step % args.eval_every == 0 or last:
            val = evaluate(model, val_data, args.batch, args.seq)
            if not val < DIVERGED * uniform:  # NaN too
                bar.close()
                raise _diverged(step, "validation", val, uniform, args.lr, metrics)
            bar.write(f"step {step}: train {train_bpc:.3f} bpc, val {val:.3f} bpc, {time.perf_counter() - t0:.0f} s")
            if val < best:  # keep the best validation checkpoint on disk, so an interrupted run leaves one
                best = val
                metrics = {
                    "val_bpc": round(val, 4),
                    "train_bpc": round(train_bpc, 4),
                    "steps": step,
                    "epochs": round(step * args.batch * args.seq / len(train_data), 2),
                    "train_seconds": round(time.perf_counter() - t0, 1),
                    "params": model.n_params(),
                }
                # the first save replaces what --overwrite allowed; later ones replace this run's own checkpoint
                save_checkpoint(args.out, model, tok, metrics, training, overwrite=args.overwrite or saved)
                saved = True
        if last:
            break
    bar.close()
    metrics["total_seconds"] = round(time.perf_counter() - t0, 1)
    print(
        f"saved {args.out}: val {metrics['val_bpc']} bits/char after {metrics['steps']} steps, "
        f"{metrics['total_seconds']:.0f} s"
    )
    return metrics
