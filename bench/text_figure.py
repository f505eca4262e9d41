"""The Text heatmap's figure for a 2,000-token window: build time of word and character layouts, side by side.

    nice python bench/text_figure.py
    nice python bench/text_figure.py --tokens 2000 --rounds 15

A synthetic window (random English-like words over 40 documents, or random characters of code), with the page's
hover (position, token, two annotation tracks, loss, five next-token guesses) and two annotation tracks drawn.
Each round builds :func:`lstmviz.dashboard.figures.text_figure` and serialises it to JSON (what ``st.plotly_chart``
sends), interleaving the word and char cases; ``units_heatmap`` of the same window (the page draws it too) is the
yardstick, and ``word_figure_only`` leaves the hover strings out (built once). Prints ``metric: value`` lines,
ratios first, then median milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd

from lstmviz.dashboard import figures

WORDS = ["the", "a", "of", "to", "and", "in", "that", "it", "was", "he", "for", "on", "are", "with", "as", "by"]


def window(n: int, words: bool, rng: np.random.Generator) -> tuple[list[str], pd.DataFrame]:
    """``n`` tokens and their tokens-table rows (idx, doc, token, two tracks, loss, top-k), as the page reads."""
    if words:
        vocab = WORDS + ["".join(rng.choice(list("etaoinshrdlu"), rng.integers(3, 12))) for _ in range(500)]
    else:
        vocab = list("abcdefghijklmnopqrstuvwxyz (){}[]:=.,\n\"'")
    ids = rng.integers(0, len(vocab), n)
    tokens = [vocab[i] for i in ids]
    table = pd.DataFrame(
        {
            "idx": np.arange(n),
            "doc": np.sort(rng.integers(0, 40, n)) if words else np.zeros(n, int),
            "token": tokens,
            "depth": rng.integers(0, 5, n),
            "in_string": rng.random(n) < 0.3,
            "loss": rng.random(n) * 4,
            "top_ids": list(rng.integers(0, len(vocab), (n, 5))),
            "top_p": list(rng.random((n, 5))),
        }
    )
    return vocab, table


def build(vocab: list[str], table: pd.DataFrame, values: np.ndarray, joiner: str, hover: list | None = None) -> None:
    hover = hover or figures.token_hover(table, vocab)  # the figure adds the drawn tracks
    docs = table["doc"].to_numpy() if joiner else None
    tracks = table[["depth", "in_string"]]
    tokens = table["token"].tolist()
    figures.text_figure(tokens, values[:, 0], hover=hover, tracks=tracks, joiner=joiner, docs=docs).to_json()


def heatmap(table: pd.DataFrame, values: np.ndarray) -> None:
    tokens = table["token"].tolist()
    figures.units_heatmap(values, 0, range(values.shape[1]), tokens, select=False).to_json()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=2000)
    ap.add_argument("--units", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    values = rng.standard_normal((args.tokens, args.units)).astype(np.float16)
    words, chars = window(args.tokens, True, rng), window(args.tokens, False, rng)
    word_hover = figures.token_hover(words[1], words[0])
    cases = {
        "word": lambda: build(*words, values, " "),
        "char": lambda: build(*chars, values, ""),
        "word_figure_only": lambda: build(*words, values, " ", word_hover),
        "units_heatmap": lambda: heatmap(words[1], values),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.rounds + 1):  # the first round warms plotly's validators up and is not counted
        for name, case in cases.items():
            t0 = time.perf_counter()
            case()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v[1:]) * 1e3 for k, v in times.items()}
    print(f"word_over_char_ratio: {med['word'] / med['char']:.2f}")
    print(f"word_over_units_heatmap_ratio: {med['word'] / med['units_heatmap']:.2f}")
    for k, v in med.items():
        print(f"{k}_{args.tokens}_tokens_ms: {v:.1f}")


if __name__ == "__main__":
    main()
