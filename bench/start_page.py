"""Start here: how long the lesson page takes to open (goal: ≤ 2 s warm).

    nice python bench/start_page.py --samples runs

Copies the recorded sample runs (code_lstm, code_rnn, parens_lstm, and their caches: projections, cards) into a
temporary folder without any lesson measurement, then opens the page with Streamlit's AppTest three ways, in one
process: first (every lesson measured: probes, saturation counts, map neighbours, a gradient through two models),
from disk (the measurements kept under ``cache/lessons/``, Streamlit's memory cache cleared: a restarted server),
and warm (the same session again). Each of the last two is the median of ``--rounds``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import streamlit as st
from streamlit.testing.v1 import AppTest

from lstmviz.analysis import lessons
from lstmviz.dashboard import data

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def opened(at: AppTest) -> float:
    t = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - t
    assert not at.exception and at.title[0].value == "Start here", [e.value for e in at.exception]
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # not --runs: the app itself reads --runs from the command line (data.runs_root), and would open that folder
    p.add_argument("--samples", type=Path, default=Path("runs"), help="a runs folder holding the samples")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        for name in lessons.RUNS.values():
            shutil.copytree(args.samples / name, root / name, ignore=shutil.ignore_patterns("lessons"))
        os.environ["LSTMVIZ_RUNS"] = str(root)
        at = AppTest.from_file(APP, default_timeout=600)
        first = opened(at)
        disk, warm = [], []
        for _ in range(args.rounds):
            st.cache_data.clear()
            disk.append(opened(AppTest.from_file(APP, default_timeout=600)))
            warm.append(opened(at))
        found = [lessons.lesson(k, root, data.checkpoint_of, data.load_model) for k in lessons.TITLES]
    print(f"disk_over_first: {statistics.median(disk) / first:.3f}")
    print(f"warm_over_first: {statistics.median(warm) / first:.4f}")
    print(f"first_open_s: {first:.2f}")
    print(f"disk_cached_open_s: {statistics.median(disk):.2f}")
    print(f"warm_open_s: {statistics.median(warm):.3f}")
    print(f"lessons_available: {sum(f.available for f in found)}/{len(found)}")


if __name__ == "__main__":
    main()
