"""A many-to-one sample: a small bidirectional GRU that says whether a bracket string is balanced.

    python sample_models/balanced_gru.py            # trains (seeded, about a minute on one thread), then writes
                                                    # balanced_gru.pt, balanced_vocab.json, corpora/balanced.jsonl
    lstmviz record --model balanced_gru:build --code sample_models --weights sample_models/balanced_gru.pt \
        --tokenizer sample_models/balanced_vocab.json --docs sample_models/corpora/balanced.jsonl --out runs/b

The strings are the parentheses language of ``parens.txt`` (letters ``a``–``j`` between ``(`` and ``)``), one
per document, 2–40 characters. Half are balanced (every prefix opens at least as many brackets as it closes,
and the whole closes all), half are not; the unbalanced ones are mostly one edit away from a balanced one (a
flipped, swapped, deleted or inserted bracket), so the count of brackets alone does not decide: ``())(()`` has
as many of each and is unbalanced. The label is always the checker's verdict (:func:`balanced`), never the way
a string was made.

The model reads the string in both directions and classifies from the two final hidden states: logits
``[batch, 2]``, class 1 = balanced. Training batches hold strings of one length, so no padding is ever seen
(``lstmviz record --docs`` batches documents of one length together too).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).parent
LETTERS = "abcdefghij"
VOCAB = ["<pad>", "<unk>", "(", ")", *LETTERS]
"""id → symbol; ``<pad>`` (0) pads, ``<unk>`` takes any other character."""
MIN_LEN, MAX_LEN = 2, 40
EMBED, HIDDEN = 16, 48


class BalancedGRU(nn.Module):
    """Embedding → bidirectional nn.GRU (batch-first) → linear over [h_fwd(T−1); h_rev(0)]."""

    def __init__(self, vocab: int = len(VOCAB), embed: int = EMBED, hidden: int = HIDDEN):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed, padding_idx=0)
        self.rnn = nn.GRU(embed, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[B, T]`` → logits ``[B, 2]`` (class 1: balanced)."""
        _, h = self.rnn(self.embedding(ids))  # h (2, B, H): the forward direction's last step, the reverse's first
        return self.out(torch.cat([h[0], h[1]], dim=1))


def build() -> BalancedGRU:
    """The factory ``lstmviz record --model balanced_gru:build`` calls (weights come from --weights)."""
    return BalancedGRU()


def balanced(s: str) -> bool:
    """Whether every prefix of ``s`` has at least as many ``(`` as ``)``, and the whole as many of each."""
    depth = 0
    for ch in s:
        depth += (ch == "(") - (ch == ")")
        if depth < 0:
            return False
    return depth == 0


def balanced_string(rng: random.Random, n: int) -> str:
    """A random balanced string of length ``n`` (brackets as a random walk that must end at depth 0)."""
    out, depth = [], 0
    for i in range(n):
        left = n - i
        if depth == left:
            out.append(")")
        elif depth + 1 < left and rng.random() < 0.4:
            out.append("(")
        elif depth > 0 and rng.random() < 0.5:
            out.append(")")
        else:
            out.append(rng.choice(LETTERS))
        depth += (out[-1] == "(") - (out[-1] == ")")
    return "".join(out)


def near_miss(rng: random.Random, s: str) -> str:
    """``s`` after one or two random edits: flip, swap, delete or insert a bracket (the length may change by 1)."""
    chars = list(s)
    for _ in range(rng.choice((1, 1, 2))):
        where = rng.randrange(len(chars))
        edit = rng.choice(("flip", "swap", "delete", "insert"))
        if edit == "flip":
            chars[where] = {"(": ")", ")": "("}.get(chars[where], rng.choice("()"))
        elif edit == "swap" and len(chars) > 1:
            other = rng.randrange(len(chars))
            chars[where], chars[other] = chars[other], chars[where]
        elif edit == "delete" and len(chars) > MIN_LEN:
            del chars[where]
        elif len(chars) < MAX_LEN:
            chars.insert(where, rng.choice("()"))
    return "".join(chars)


def example(rng: random.Random, n: int, want: bool) -> str:
    """A string of about length ``n`` whose checker verdict is ``want`` (drawn until it is)."""
    while True:
        s = balanced_string(rng, n if n % 2 == 0 or rng.random() < 0.5 else n - 1)
        if want and balanced(s):
            return s
        if not want:
            t = near_miss(rng, s) if rng.random() < 0.85 else "".join(rng.choice("()" + LETTERS) for _ in s)
            if not balanced(t):
                return t


def dataset(seed: int, n: int) -> list[tuple[str, int]]:
    """``n`` strings with labels (1 = balanced), half of each, lengths uniform in [MIN_LEN, MAX_LEN]."""
    rng = random.Random(seed)
    return [
        (s, int(balanced(s))) for i in range(n) for s in [example(rng, rng.randint(MIN_LEN, MAX_LEN), want=i % 2 == 0)]
    ]


def encode(strings: list[str]) -> torch.Tensor:
    """Equal-length strings → ids ``[B, T]``."""
    return torch.tensor([[VOCAB.index(c) for c in s] for s in strings])


def accuracy(model: nn.Module, data: list[tuple[str, int]]) -> float:
    """Fraction of ``data`` classified right, each string on its own length's batch (no padding)."""
    by_len: dict[int, list[tuple[str, int]]] = {}
    for s, y in data:
        by_len.setdefault(len(s), []).append((s, y))
    right = 0
    with torch.no_grad():
        for group in by_len.values():
            pred = model(encode([s for s, _ in group])).argmax(1)
            right += int((pred == torch.tensor([y for _, y in group])).sum())
    return right / len(data)


def train(steps: int, batch: int, lr: float, seed: int) -> tuple[BalancedGRU, set[str], dict]:
    """Adam with a cosine-decayed rate on fresh batches of one length each; returns (model, the strings it was
    trained on, metrics)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = BalancedGRU()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    seen: set[str] = set()
    start = time.time()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        n = rng.randint(MIN_LEN, MAX_LEN)
        labels = [i % 2 for i in range(batch)]
        strings = [example(rng, n, bool(y)) for y in labels]
        seen.update(strings)
        by_len: dict[int, list[int]] = {}
        for i, s in enumerate(strings):  # near misses can be one longer or shorter: one batch per length
            by_len.setdefault(len(s), []).append(i)
        loss = sum(
            nn.functional.cross_entropy(
                model(encode([strings[i] for i in rows])), torch.tensor([labels[i] for i in rows]), reduction="sum"
            )
            for rows in by_len.values()
        ) / len(strings)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (step + 1) % 500 == 0:
            print(f"step {step + 1}: loss {loss.item():.4f}, {time.time() - start:.0f} s", flush=True)
    model.eval()
    return model, seen, {"train_seconds": round(time.time() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--docs", type=int, default=200, help="held-out strings written to corpora/balanced.jsonl")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, seen, metrics = train(args.steps, args.batch, args.lr, args.seed)
    test = [(s, y) for s, y in dataset(args.seed + 1, 4000) if s not in seen]  # held out: never trained on
    metrics["test_accuracy"] = round(accuracy(model, test), 4)
    metrics["test_strings"] = len(test)
    seen |= {s for s, _ in test}
    docs = [(s, y) for s, y in dataset(args.seed + 2, 4 * args.docs) if s not in seen][: args.docs]
    metrics["docs_accuracy"] = round(accuracy(model, docs), 4)
    print(json.dumps(metrics), flush=True)
    command = "python sample_models/balanced_gru.py " + " ".join(
        f"--{k} {v}" for k, v in vars(args).items() if k != "docs"
    )
    torch.save({"state_dict": model.state_dict(), "metrics": metrics, "command": command}, HERE / "balanced_gru.pt")
    (HERE / "balanced_vocab.json").write_text(json.dumps(VOCAB) + "\n")
    lines = [json.dumps({"text": s, "label": y}) for s, y in docs]
    (HERE / "corpora" / "balanced.jsonl").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
