"""Gate saturation (Karpathy, Johnson & Fei-Fei 2015, "Visualizing and Understanding Recurrent Networks", §4.2).

For every sigmoid gate unit (LSTM i, f, o; GRU r, z): the fraction of steps where it is left-saturated (< 0.1)
and right-saturated (> 0.9). Plotted per layer with x = right-saturated and y = left-saturated, a forget gate
unit in the lower right is an "integrator" that remembers, and one near the upper left resets its cell often.

GRU convention (:data:`lstmviz.names.GRU_Z_CAVEAT`): PyTorch's z is the paper's 1 − z, so read a right-saturated
PyTorch z where the paper shows a left-saturated one.

A custom cell recorded with ``lstmviz.tap`` has the gates it declared (``gate=True``), whatever their names; its
other kinds are not gates, even when named like one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..names import CELL_OF_GATE
from ..store import ROW_GROUP, Run, RunError

SCAN_ROWS = 4 * ROW_GROUP


def gate_cell(run: Run, name: str) -> str | None:
    """``"LSTM"``, ``"GRU"`` or ``"custom"`` (a kind tapped with ``gate=True``) if ``name`` is a gate, else None."""
    info = run.info(name)
    tapped = {
        m["path"]: m.get("gates", [])
        for m in run.manifest.get("model", {}).get("modules", [])
        if m.get("cell") == "custom"
    }
    if info["module"] in tapped:
        return "custom" if info["kind"] in tapped[info["module"]] else None
    return CELL_OF_GATE.get(info["kind"])


def gate_names(run: Run) -> list[str]:
    """The run's gate activations (LSTM i, f, o, GRU r, z, and tapped kinds declared gates), in recording order."""
    return [n for n in run.names if gate_cell(run, n) is not None]


def saturation(
    run: Run, names: str | Sequence[str] | None = None, *, low: float = 0.1, high: float = 0.9
) -> pd.DataFrame:
    """For every gate unit, the fraction of steps below ``low`` (left-saturated) and above ``high`` (right).

    A gate that is mostly saturated acts as a switch; one that is rarely saturated acts as a soft mixer.
    Karpathy et al. found LSTM forget gates that are right-saturated most of the time: units that remember over
    long spans. For a GRU, read :data:`lstmviz.names.GRU_Z_CAVEAT`: PyTorch's z is the paper's 1 − z.

    Args:
        run: an open run.
        names: gate activations to report (default: every LSTM i, f, o and GRU r, z in the run).
        low, high: the saturation thresholds (strict: x < low, x > high). With the run's own stats
            thresholds (0.1 and 0.9) the counts come from the stats recorded while streaming; other thresholds
            scan the activations in row blocks.

    Returns:
        DataFrame, one row per (name, unit): name, cell (LSTM | GRU | custom), module, layer, dir, kind, unit, n,
        frac_low, frac_high, source (``stats`` or ``scan``).
    """
    names = gate_names(run) if names is None else [names] if isinstance(names, str) else list(names)
    frames = []
    for name in names:
        info = run.info(name)
        cell = gate_cell(run, name)
        if cell is None:
            raise RunError(
                f"{name} is not a sigmoid gate (LSTM i, f, o, GRU r, z, or a kind tapped with gate=True); "
                f"saturation needs one"
            )
        counts = _from_stats(run, name, low, high)
        source = "stats" if counts is not None else "scan"
        n, n_low, n_high = counts if counts is not None else _scan(run, name, low, high)
        frames.append(
            pd.DataFrame(
                {
                    "name": name,
                    "cell": cell,
                    "module": info["module"],
                    "layer": info["layer"],
                    "dir": info["dir"],
                    "kind": info["kind"],
                    "unit": np.arange(len(n_low)),
                    "n": n,
                    "frac_low": n_low / max(n, 1),
                    "frac_high": n_high / max(n, 1),
                    "source": source,
                }
            )
        )
    return (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(
            columns=["name", "cell", "module", "layer", "dir", "kind", "unit", "n", "frac_low", "frac_high", "source"]
        )
    )


def _from_stats(run: Run, name: str, low: float, high: float) -> tuple[int, np.ndarray, np.ndarray] | None:
    """(n, n_low [U], n_high [U]) from the streamed stats, if they exist and were counted at these thresholds."""
    meta = run.manifest.get("stats") or {}
    if meta.get("low") != low or meta.get("high") != high or run.stats.empty:
        return None
    rows = run.stats[run.stats["name"] == name].sort_values("unit")
    if len(rows) != run.units(name):
        return None
    return int(rows["count"].iloc[0]), rows["n_low"].to_numpy(), rows["n_high"].to_numpy()


def _scan(run: Run, name: str, low: float, high: float) -> tuple[int, np.ndarray, np.ndarray]:
    """(n, n_low [U], n_high [U]) counted over the activations, SCAN_ROWS rows at a time."""
    n_low = np.zeros(run.units(name), np.int64)
    n_high = np.zeros(run.units(name), np.int64)
    for start in range(0, run.n_tokens, SCAN_ROWS):
        x = run.activations(name, start=start, stop=start + SCAN_ROWS)  # (rows, U)
        n_low += (x < low).sum(0)
        n_high += (x > high).sum(0)
    return run.n_tokens, n_low, n_high
