"""Which units of a recorded run track an annotation column? The check behind README.md's "units that track
structure" table, using the same ranking as the dashboard's Neuron search page (lstmviz.analysis.probes.probe:
|Pearson r| for numeric columns, ROC-AUC for true/false ones).

    lstmviz samples --out runs --only code_lstm
    python sample_models/find_units.py runs/code_lstm in_string bracket_depth indent_level in_comment
"""

from __future__ import annotations

import argparse

import lstmviz
from lstmviz.analysis.probes import probe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("columns", nargs="+")
    ap.add_argument("--kinds", nargs="+", default=["c", "h"], help="activation kinds to search (default c h)")
    ap.add_argument("--top", type=int, default=3)
    args = ap.parse_args()
    run = lstmviz.open_run(args.run)
    names = [n for n in run.names if run.info(n)["kind"] in args.kinds]
    for column in args.columns:
        best = probe(run, column, names, top=args.top)
        for row in best.itertuples():
            print(f"{column:14s} {row.name:16s} unit {row.unit:4d}  {row.metric} = {row.score:+.3f}")


if __name__ == "__main__":
    main()
