"""The findings of the Start here page, each found in the runs themselves, never from unit numbers typed in.

One function per lesson turns a run (or two) into a :class:`Lesson`: a title, two sentences a student can read
aloud with the numbers filled in, the dashboard page that shows the finding and the URL query parameters that
set it up, and the evidence (the unit, its AUC or r, a fraction, a ratio). The units come from the probes
(:func:`lstmviz.analysis.probes.probe` over the cell and hidden states), the saturation counts recorded in the
stats, the cached projection map and a short gradient-flow measurement. A lesson whose run is absent, still
being recorded, or that shows no such finding is returned unavailable with the reason, never raised.

Each measurement is kept as JSON under ``<run>/cache/lessons/`` (keyed by the run's length and
:data:`CACHE_VERSION`), so the page reads it back at once the next time, in any process.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..store import Run, RunError, open_run
from . import probes, projection, saturation
from .phrasing import percent, times

CACHE_VERSION = 1
STATE_KINDS = ("c", "h")
"""The kinds a finding's unit is looked for in: the states, whose value persists (a gate only opens and shuts)."""
SATURATED = 0.5
"""A forget gate is "right-saturated most of the time" when it is above 0.9 on more than this fraction of steps."""
NEIGHBOURS = 10
ISLAND_LIFT = 2.0
"""The strings form an island when a string token's map neighbours are strings this many times the base rate."""
GRADIENT_K = 30
GRADIENT_TOKENS = 1000
GRADIENT_TARGETS = 16
RUNS = {"code": "code_lstm", "rnn": "code_rnn", "parens": "parens_lstm"}
"""The sample runs the lessons read, by role."""
TITLES = {
    "string_unit": "A unit that knows it is inside a string",
    "depth_counter": "A unit that counts open brackets",
    "parens_cell": "A cell that is a counter",
    "forget_gate": "A forget gate that almost never forgets",
    "vanishing_gradient": "The vanishing gradient, side by side",
    "string_island": "An island of strings",
    "clamp": "Clamp the string unit and watch the model",
}
"""Lesson key → title, in the order the Start here page shows them."""


@dataclass(frozen=True)
class Lesson:
    """One finding. ``params`` are the query parameters of ``page`` (a key of the dashboard's page registry)
    that open the exact view; ``numbers`` the evidence as values (name, unit, score, …) for tests and tools."""

    key: str
    title: str
    text: str
    page: str
    params: dict[str, str] = field(default_factory=dict)
    evidence: str = ""
    numbers: dict[str, Any] = field(default_factory=dict)
    available: bool = True
    reason: str = ""


class Unavailable(Exception):
    """A lesson cannot be shown; the message says why, for the card."""


# --- finding the runs ---------------------------------------------------------------------------------------


def find_run(root: Path, name: str, preparing: bool = False) -> Run:
    """The run ``root/name``, opened; :class:`Unavailable` when it is missing, being recorded (``preparing``:
    the app is recording the samples now) or unreadable."""
    path = Path(root) / name
    if (Path(root) / f"{name}.partial").exists() or (preparing and not (path / "manifest.json").is_file()):
        raise Unavailable(f"{name} is still being prepared; this card fills in when it is ready.")
    if not (path / "manifest.json").is_file():
        raise Unavailable(f"there is no run {name} under {root}: record it with `lstmviz samples --out {root}`.")
    try:
        return open_run(path)
    except RunError as e:
        raise Unavailable(f"{name} cannot be read ({e}).") from None


def _cached(run: Run, what: str, compute: Callable[[], dict]) -> dict:
    """``compute()`` (a JSON-able dict), kept in ``<run>/cache/lessons/``; a read-only run is measured anew."""
    path = run.cache_dir / "lessons" / f"{what}.n{run.n_tokens}.v{CACHE_VERSION}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    value = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(value))
        os.replace(tmp, path)
    except OSError:
        pass
    return value


def best_unit(run: Run, track: str, kinds: tuple[str, ...] = STATE_KINDS) -> dict:
    """The unit of an activation of ``kinds`` that tracks annotation ``track`` best (by |2·AUC − 1| or |r|):
    ``{name, unit, metric, score, strength}``, plus ``mean_true``/``mean_false`` for a boolean track."""
    if track not in run.tokens.columns:
        raise Unavailable(f"{run.path.name} has no {track} annotation: record it with `--annotate`.")
    names = [n for n in run.names if run.info(n)["kind"] in kinds]
    if not names:
        raise Unavailable(f"{run.path.name} has no activation of kind {' or '.join(kinds)}.")

    def compute() -> dict:
        row = probes.probe(run, track, names, top=1).iloc[0]
        keep = ("name", "unit", "metric", "score", "strength", "mean_true", "mean_false")
        return {k: (row[k].item() if hasattr(row[k], "item") else row[k]) for k in keep if k in row}

    found = _cached(run, f"best.{track}.{'-'.join(kinds)}", compute)
    if not np.isfinite(found.get("strength", np.nan)):
        raise Unavailable(f"no unit of {run.path.name} can be scored against {track}: it is constant.")
    return found


def _layer(run: Run, name: str) -> str:
    info = run.info(name)
    return f"layer {info['layer'] + 1}"


# --- the lessons ----------------------------------------------------------------------------------------------


def string_unit(run: Run) -> Lesson:
    """The unit that tells string literals from the rest of the code (annotation ``in_string``)."""
    b = best_unit(run, "in_string")
    name, u, auc = b["name"], int(b["unit"]), float(b["score"])
    high, low = ("high", "low") if auc >= 0.5 else ("low", "high")
    return Lesson(
        key="string_unit",
        title=TITLES["string_unit"],
        text=f"Unit {u} of {name} ({_layer(run, name)}) is {high} inside string literals and {low} outside "
        f"them, telling the two apart with a ROC-AUC of {max(auc, 1 - auc):.2f}, where 1 is perfect and 0.5 is "
        "chance. Nobody told the model what a string is: it learned that knowing helps it guess the next "
        "character.",
        page="unit",
        params={"run": run.path.name, "act": name, "unit": str(u)},
        evidence=f"{name} · unit {u} · in_string AUC {auc:.2f}",
        numbers=b,
    )


def depth_counter(run: Run) -> Lesson:
    """The unit that counts open brackets (annotation ``bracket_depth``)."""
    b = best_unit(run, "bracket_depth")
    name, u, r = b["name"], int(b["unit"]), float(b["score"])
    return Lesson(
        key="depth_counter",
        title=TITLES["depth_counter"],
        text=f"Unit {u} of {name} ({_layer(run, name)}) follows how many brackets are open, with a correlation "
        f"of r = {r:+.2f}: it {'rises' if r > 0 else 'falls'} as brackets open and comes back as they close. "
        "To close every bracket it opened, the model has to count, and this unit is where it keeps the count.",
        page="neurons",
        params={"run": run.path.name, "track": "bracket_depth", "act": name, "unit": str(u)},
        evidence=f"{name} · unit {u} · bracket_depth r {r:+.2f}",
        numbers=b,
    )


def parens_cell(run: Run) -> Lesson:
    """The cell that follows the nesting depth of a parentheses-only model (annotation ``depth``)."""
    kinds = ("c",) if any(run.info(n)["kind"] == "c" for n in run.names) else STATE_KINDS
    b = best_unit(run, "depth", kinds)
    name, u, r = b["name"], int(b["unit"]), float(b["score"])
    depth = run.tokens["depth"].to_numpy(np.float64)
    deepest = int(np.nanargmax(depth))
    return Lesson(
        key="parens_cell",
        title=TITLES["parens_cell"],
        text=f"This model learned a toy language of random letters nested in parentheses (LSTMVis's example), and "
        f"unit {u} of its cell state {name} follows the nesting depth with r = {r:+.2f}. Watch it step "
        f"{'up' if r > 0 else 'down'} at every ( and back at every ) beside the depth track: one number that counts.",
        page="text",
        params={
            "run": run.path.name,
            "act": name,
            "unit": str(u),
            "tracks": "depth",
            "start": str(max(deepest - 250, 0)),
        },
        evidence=f"{name} · unit {u} · depth r {r:+.2f} · deepest {depth[deepest]:.0f} at token {deepest:,}",
        numbers={**b, "deepest": deepest},
    )


def forget_gate(run: Run) -> Lesson:
    """The forget-gate unit that is right-saturated (> 0.9) on the largest fraction of steps (Karpathy et al.
    2015, §4.2), from the saturation counts recorded in the stats."""
    gates = [n for n in saturation.gate_names(run) if run.info(n)["kind"] == "f"]
    if not gates:
        raise Unavailable(f"{run.path.name} has no LSTM forget gate.")
    table = saturation.saturation(run, gates)
    row = table.loc[table["frac_high"].idxmax()]
    name, u, frac = str(row["name"]), int(row["unit"]), float(row["frac_high"])
    if frac <= SATURATED:
        raise Unavailable(
            f"no forget-gate unit of {run.path.name} is above 0.9 most of the time (the most is {percent(frac)})."
        )
    return Lesson(
        key="forget_gate",
        title=TITLES["forget_gate"],
        text=f"Unit {u} of the forget gate {name} is above 0.9 on {percent(frac)} of the steps, so its cell keeps "
        "what it holds from one character to the next over long stretches. Karpathy, Johnson and Fei-Fei (2015) "
        "found such right-saturated forget gates in their LSTMs; on the Gate saturation page it is a dot far to "
        "the right.",
        page="text",
        params={"run": run.path.name, "act": name, "unit": str(u)},
        evidence=f"{name} · unit {u} · > 0.9 on {percent(frac)} of {int(row['n']):,} steps",
        numbers={"name": name, "unit": u, "frac_high": frac, "frac_low": float(row["frac_low"])},
    )


def gradient_decay(run: Run, model: Callable[[], Any], K: int = GRADIENT_K) -> dict:
    """``{"K", "series", "ratio"}``: the mean ‖∂ℓ_t/∂h_{t−K}‖ over the mean ‖∂ℓ_t/∂h_t‖ of the top layer's
    hidden state (the state every recurrent model has, so the ratio compares an RNN with an LSTM), on the run's
    first :data:`GRADIENT_TOKENS` tokens (:func:`lstmviz.analysis.gradients.gradient_flow`, seed 0).
    ``model()`` gives the run's module, loaded only when the measurement is not cached."""

    def compute() -> dict:
        from .gradients import gradient_flow  # torch: only when a measurement is needed

        ids = run.tokens["token_id"].to_numpy()[:GRADIENT_TOKENS].copy()
        if len(ids) < K + 3:
            raise Unavailable(f"{run.path.name} has too few tokens for a gradient over {K} steps.")
        flow = gradient_flow(model(), ids, K=K, n_targets=GRADIENT_TARGETS, seed=0)
        series = max((s for s in flow.norms if s.startswith("h l")), key=lambda s: int(s[3:]))
        mean = flow.summary.set_index(["series", "k"])["mean"]
        return {"K": K, "series": series, "ratio": float(mean[(series, K)] / mean[(series, 0)])}

    return _cached(run, f"gradient.top-h.K{K}.t{GRADIENT_TARGETS}", compute)


def vanishing_gradient(lstm: Run, rnn: Run, models: Callable[[Run], Any], K: int = GRADIENT_K) -> Lesson:
    """The vanilla RNN's gradient vanishes over distance where the LSTM's holds up. ``models(run)`` gives a
    run's module (:class:`Unavailable` when its checkpoint is gone)."""
    a = gradient_decay(lstm, lambda: models(lstm), K)["ratio"]
    b = gradient_decay(rnn, lambda: models(rnn), K)["ratio"]
    if not a > b:
        raise Unavailable(
            f"the gradient of {rnn.path.name} does not fall faster than that of {lstm.path.name} here "
            f"({percent(b)} against {percent(a)} at {K} steps back)."
        )
    return Lesson(
        key="vanishing_gradient",
        title=TITLES["vanishing_gradient"],
        text=f"How strongly does the loss at one character depend on the top layer's state {K} characters "
        f"earlier, compared with its state at that character? For the LSTM {lstm.path.name} it is {percent(a)}, "
        f"for the vanilla RNN {rnn.path.name} only {percent(b)}, {times(a / b)} less: the RNN's gradient vanishes, "
        "so it can hardly learn from what lies far back, and the LSTM's cell state is the way around it.",
        page="gradients",
        params={"run": lstm.path.name, "overlay": rnn.path.name},
        evidence=f"‖∂loss/∂h‖ {K} steps back: {percent(a)} ({lstm.path.name}) vs {percent(b)} ({rnn.path.name})",
        numbers={"K": K, "lstm": a, "rnn": b},
    )


def string_island(run: Run, method: str = "umap", compute: bool = False) -> Lesson:
    """String tokens gather on the 2-D map of the layer's states: the share of a string token's
    :data:`NEIGHBOURS` nearest map points that are strings too, against the share of strings overall. Reads the
    map the Projection page opens on (its default activation and sample) from the cache; with ``compute``
    false a map not made yet is reported as being prepared, since UMAP takes minutes the first time."""
    from scipy.spatial import cKDTree

    if "in_string" not in run.tokens.columns:
        raise Unavailable(f"{run.path.name} has no in_string annotation: record it with `--annotate code`.")
    name = projection.default_activation(run)
    n = min(projection.SAMPLES, run.n_tokens)
    if not compute and not projection.cached(run, name, method, n):
        raise Unavailable(f"the {method.upper()} map of {run.path.name} is still being prepared.")

    def measure() -> dict:
        table = projection.project(run, name, method=method, n_samples=n, seed=0)
        xy = table[["x", "y"]].to_numpy(np.float64)
        y = table["in_string"].fillna(False).to_numpy(bool)
        k = min(NEIGHBOURS, len(y) - 1)
        _, near = cKDTree(xy).query(xy[y], k=k + 1)  # the first neighbour of a point is itself
        return {"purity": float(y[near[:, 1:]].mean()) if y.any() else 0.0, "base": float(y.mean()), "n": len(y)}

    found = _cached(run, f"island.in_string.{method}.{name}.s{n}", measure)
    purity, base = found["purity"], found["base"]
    if not base or purity < ISLAND_LIFT * base:
        raise Unavailable(
            f"on the {method.upper()} map of {run.path.name}, string tokens do not gather: {percent(purity)} of "
            f"their neighbours are strings, against {percent(base)} of all tokens."
        )
    return Lesson(
        key="string_island",
        title=TITLES["string_island"],
        text=f"On this {method.upper()} map of {name}, one dot per character, the characters inside strings "
        f"gather together: {percent(purity)} of a string character's {NEIGHBOURS} nearest dots are string "
        f"characters too, though only {percent(base)} of all characters are. The map was made from the model's "
        "state alone, with no labels, so the model itself sets strings apart.",
        page="projection",
        params={"run": run.path.name, "act": name, "method": method, "color": "in_string"},
        evidence=f"{name} · {NEIGHBOURS}-neighbour purity {percent(purity)} vs {percent(base)} base rate",
        numbers={"name": name, "method": method, **found},
    )


def clamp(run: Run, has_model: bool) -> Lesson:
    """Hold the string unit (:func:`string_unit`) at the value it takes inside strings, over a window that
    starts before the corpus's first string, on the Intervene page."""
    if not has_model:
        raise Unavailable(f"{run.path.name} names no checkpoint that still exists: a clamp needs the model.")
    b = best_unit(run, "in_string")
    name, u, auc = b["name"], int(b["unit"]), float(b["score"])
    row = run.stats[(run.stats["name"] == name) & (run.stats["unit"] == u)]
    if row.empty:
        raise Unavailable(f"{run.path.name} has no stats for {name}: record it again.")
    value = float(row["max"].iloc[0] if auc >= 0.5 else row["min"].iloc[0])
    strings = np.flatnonzero(run.tokens["in_string"].fillna(False).to_numpy(bool))
    start = max(int(strings[0]) - 40, 0) if len(strings) else 0
    return Lesson(
        key="clamp",
        title=TITLES["clamp"],
        text=f"Hold unit {u} of {name} at {value:.2f}, its most string-like value, and the model reads every "
        "character as if that unit said so. Each character is coloured by how much more (red) or less (blue) "
        "likely the model found it with the unit held, and a text is written with and without the clamp.",
        page="intervene",
        params={
            "run": run.path.name,
            "act": name,
            "unit": str(u),
            "iv_act": name,
            "iv_units": str(u),
            "iv_kind": "number",
            "iv_value": f"{value:.4g}",
            "iv_start": str(start),
        },
        evidence=f"{name} · unit {u} held at {value:.2f} (in_string AUC {auc:.2f})",
        numbers={**b, "value": value, "start": start},
    )


# --- all of them ----------------------------------------------------------------------------------------------


def unavailable(key: str, reason: str) -> Lesson:
    """The card of a lesson that cannot be shown now."""
    return Lesson(key=key, title=TITLES[key], text="", page="", available=False, reason=reason)


def lesson(
    key: str,
    root: Path,
    checkpoint: Callable[[Run], Path | None],
    load: Callable[[Path], Any],
    compute_map: bool = False,
    preparing: bool = False,
) -> Lesson:
    """The lesson ``key`` (of :data:`TITLES`) from the runs under ``root``; unavailable with the reason when it
    cannot be found. ``checkpoint(run)`` names a run's checkpoint (None when gone), ``load(path)`` loads it;
    ``preparing``: the samples are being recorded now, so a missing run is on its way."""

    def module(run: Run) -> Any:
        path = checkpoint(run)
        if path is None:
            raise Unavailable(f"{run.path.name} names no checkpoint that still exists: gradients need the model.")
        return load(path).module

    def find(role: str) -> Run:
        return find_run(root, RUNS[role], preparing)

    makers: Mapping[str, Callable[[], Lesson]] = {
        "string_unit": lambda: string_unit(find("code")),
        "depth_counter": lambda: depth_counter(find("code")),
        "parens_cell": lambda: parens_cell(find("parens")),
        "forget_gate": lambda: forget_gate(find("code")),
        "vanishing_gradient": lambda: vanishing_gradient(find("code"), find("rnn"), module),
        "string_island": lambda: string_island(find("code"), compute=compute_map),
        "clamp": lambda: (lambda r: clamp(r, checkpoint(r) is not None))(find("code")),
    }
    try:
        return makers[key]()
    except Unavailable as e:
        return unavailable(key, str(e))
    except RunError as e:
        return unavailable(key, f"the run cannot be read ({e}).")
    except OSError as e:  # a file of the run vanished or is unreadable: that card only, not the page
        return unavailable(key, f"a file of the run cannot be read ({getattr(e, 'strerror', None) or e}).")
