"""Which units of a recorded run track an annotation column? Prints the best |Pearson r| per (activation, column).

    lstmviz samples --out runs --only code_lstm
    python sample_models/find_units.py runs/code_lstm in_string bracket_depth indent_level in_comment

This is the check behind the "units that track structure" claims in README.md.
"""

from __future__ import annotations

import argparse

import numpy as np

import lstmviz


def correlations(acts: np.ndarray, track: np.ndarray) -> np.ndarray:
    """Pearson r of every unit of ``acts [N, U]`` with ``track [N]``: ``[U]`` (0 for constant units)."""
    a = acts - acts.mean(0)  # (N, U)
    t = track - track.mean()  # (N,)
    den = np.sqrt((a**2).sum(0) * (t**2).sum())
    return np.divide(a.T @ t, den, out=np.zeros(acts.shape[1]), where=den > 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("columns", nargs="+")
    ap.add_argument("--kinds", nargs="+", default=["c", "h"])
    args = ap.parse_args()
    run = lstmviz.open_run(args.run)
    tokens = run.tokens
    for name in run.names:
        if name.rsplit(".", 1)[1] not in args.kinds:
            continue
        acts = run.activations(name).astype(np.float64)
        for col in args.columns:
            r = correlations(acts, tokens[col].to_numpy(dtype=np.float64))
            u = int(np.argmax(np.abs(r)))
            print(f"{name:16s} {col:14s} unit {u:4d}  r = {r[u]:+.3f}")


if __name__ == "__main__":
    main()
