"""What does a unit do? The analysis behind the Unit page and the Units catalogue (no UI here).

* :func:`card` gathers one ``(activation, unit)``: its top contexts of both signs, examples per quantile band,
  stats, density and strip over the corpus, correlated units (all from the run's unit cards, :mod:`lstmviz.cards`).
* :func:`catalogue` lists every unit of every activation with an automatic label: the annotation it tracks best
  (:func:`lstmviz.analysis.probes.probe`: ROC-AUC for a yes/no track, Pearson r for a number) and the tokens
  over-represented in its top contexts, e.g. ``in_string (AUC 0.93) · top tokens " '``.
* :func:`logit_lens` is a unit's column of the output layer: the next tokens it pushes up and down, per unit of
  its value; :func:`measured_effect` is the change in next-token log-prob when the unit is held at its corpus
  mean, direct (through the decoder alone) against total (through the recurrence too), via :mod:`lstmviz.causal`.
"""

from __future__ import annotations

import warnings
import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import cards as _cards
from .. import names as _names
from ..store import Run, RunError
from . import probes
from .histogram import HIST_BINS, STRETCH, TAIL, Histogram, histogram, peak  # noqa: F401 (re-exported: the Unit page reads units.TAIL)
from .overview import overview

TRACK_SKIP = {"idx", "doc", "pos", "token_id", "token", "loss", "top_ids", "top_p"}
LIFT = 2.0  # a token is over-represented when its share of the top contexts is this many times its corpus share
MIN_COUNT = 3  # … and it is the top token of at least this many of them
FLOOR = 0.2  # a track enters the label only above this strength (AUC beyond 0.4…0.6, or |r| ≥ 0.2)


@dataclass
class Card:
    """One unit, everything the Unit page shows. Frames as returned by :func:`card`."""

    name: str
    unit: int
    top: dict[int, pd.DataFrame]  # sign → rank, idx, value, token, context
    bands: pd.DataFrame  # band, lo, hi, idx (one row per example)
    stats: dict[str, float]
    strip: np.ndarray  # float32 [bins]: the mean over each corpus bin (the overview's column; NaN left out)
    strip_per: int
    correlated: pd.DataFrame  # unit, r
    top_tokens: list[str]
    window: int  # the top contexts' de-duplication window
    label: dict  # as unit_label


def card(run: Run, name: str, unit: int, k: int = 20, n_correlated: int = 10, column: np.ndarray | None = None) -> Card:
    """The card of ``unit`` of activation ``name``, from the run's stored cards (built now for an older run).
    ``column``: the unit's values ``[tokens]``, when the caller holds them already (else read for the label)."""
    c = _cards.load_cards(run, name)
    top = {sign: run.top_contexts(name, unit, k=k, sign=sign, window=c.window) for sign in (1, -1)}
    a = c.a
    rows = [
        {"band": b, "lo": float(a["band_lo"][unit, b]), "hi": float(a["band_hi"][unit, b]), "idx": int(i)}
        for b in range(a["band_pos"].shape[1])
        for i in a["band_pos"][unit, b]
        if i >= 0
    ]
    stats = unit_stats(run, name, unit)
    stats["frac_above"] = float(a["n_above"][unit]) / run.n_tokens
    stats["frac_below"] = float(a["n_below"][unit]) / run.n_tokens
    stats["theta"] = float(a["theta"])
    # the label scores the unit's whole column against the annotation tracks: a run without tracks (where the
    # column would be read for nothing, 40 MB and a scan of every row group at 10M tokens) skips the read
    if column is None and tracks(run):
        column = run.activations(name, [unit], dtype=np.float16)[:, 0]
    x = np.empty(0, np.float16) if column is None else column
    means, per = overview(run, name)
    return Card(
        window=c.window,
        label=unit_label(run, x, top[1]["idx"].to_numpy()),
        name=name,
        unit=unit,
        top=top,
        bands=pd.DataFrame(rows, columns=["band", "lo", "hi", "idx"]),
        stats=stats,
        strip=means[:, unit],
        strip_per=per,
        correlated=run.correlated_units(name, unit, k=n_correlated),
        top_tokens=over_represented(top[1]["idx"].to_numpy(), _cards.token_strings(run)),
    )


def unit_stats(run: Run, name: str, unit: int) -> dict[str, float]:
    """The unit's row of stats.parquet (count, mean, std, min, max, n_low, n_high, hist…), or {} when absent."""
    s = run.stats
    if s.empty:
        return {}
    row = s[(s["name"] == name) & (s["unit"] == unit)]
    return row.iloc[0].to_dict() if len(row) else {}


def over_represented(idx: np.ndarray, tokens: Sequence[str], most: int = 3) -> list[str]:
    """Tokens at positions ``idx`` that are over-represented against the corpus: at least ``MIN_COUNT`` of them
    and ``LIFT`` times their corpus share; the ``most`` most frequent first (ties by token)."""
    if not len(idx):
        return []
    counts = Counter(tokens[int(i)] for i in idx)
    total = _corpus_counts(tokens)
    n = len(tokens)
    keep = [t for t, c in counts.items() if c >= MIN_COUNT and (c / len(idx)) >= LIFT * total[t] / n]
    return [shown(t) for t in sorted(keep, key=lambda t: (-counts[t], t))[:most]]


def shown(token: str) -> str:
    """A token as a label shows it: in backticks, with space, newline and tab made visible."""
    return "`" + token.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥") + "`"


_COUNTS: dict[int, Counter] = {}


def _corpus_counts(tokens: Sequence[str]) -> Counter:
    """Token frequencies of a run's token list, kept per list (the list is itself cached per run file)."""
    key = id(tokens)
    if key not in _COUNTS:
        _COUNTS.clear()
        _COUNTS[key] = Counter(tokens)
    return _COUNTS[key]


def tracks(run: Run) -> list[str]:
    """The run's annotation columns that probes score (boolean or numeric)."""
    return [c for c in run.token_columns if c not in TRACK_SKIP and run.token_kind(c) != "other"]


def catalogue(run: Run, names: Sequence[str] | None = None) -> pd.DataFrame:
    """:func:`label_units` of every activation, cached under ``cache/cards/`` (scoring every unit against every
    annotation reads the whole run once per annotation: about a minute for 20k tokens × 3k units here)."""
    if names is not None:
        return label_units(run, names)
    path = catalogue_path(run)
    if path.is_file():
        return pd.read_parquet(path)
    table = label_units(run, run.names)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    table.to_parquet(tmp, index=False)
    tmp.replace(path)
    return table


def catalogue_path(run: Run) -> Path:
    """Where :func:`catalogue` keeps a run's table (version 2: a unit low where its track holds reads "not …")."""
    return run.cache_dir / "cards" / f"catalogue.n{run.n_tokens}.v2.parquet"


def cached_catalogue(run: Run) -> pd.DataFrame | None:
    """The catalogue if a page has built it already, else None: for views that show labels only when they are
    free (building one reads the whole run once per annotation)."""
    path = catalogue_path(run)
    return pd.read_parquet(path) if path.is_file() else None


def label_units(run: Run, names: Sequence[str]) -> pd.DataFrame:
    """Every unit of every activation, labelled: one row per ``(name, unit)``.

    Columns: ``name, layer, dir, kind, unit, track, metric, score, strength, top_tokens, label``. ``track`` is the
    annotation the unit tracks best by ``strength`` (|2·AUC − 1| or |r|, so detectors of either sign count), with
    its ``score`` (AUC or r); ``top_tokens`` the tokens over-represented in its top positive contexts. The label
    joins them, the track only when its strength reaches ``FLOOR``: ``in_string (AUC 0.93) · top tokens " '``.
    Rows are sorted by strength, strongest first.
    """
    names = list(names)
    best: pd.DataFrame | None = None
    for t in tracks(run):
        scored = probes.probe(run, t, names)[["name", "unit", "metric", "score", "strength"]].assign(track=t)
        best = scored if best is None else _stronger(best, scored)
    tokens = _cards.token_strings(run)
    rows = []
    for name in names:
        info = run.info(name)
        c = _cards.load_cards(run, name)
        for u in range(run.units(name)):
            idx, _ = c.top(u, 1)
            rows.append(
                {
                    "name": name,
                    "layer": info["layer"],
                    "dir": info["dir"],
                    "kind": info["kind"],
                    "unit": u,
                    "top_tokens": " ".join(over_represented(idx[:20], tokens)),
                }
            )
    out = pd.DataFrame(rows)
    if best is not None:
        out = out.merge(best, on=["name", "unit"], how="left")
    else:
        out = out.assign(track=None, metric=None, score=np.nan, strength=np.nan)
    out["label"] = [
        label(t if st >= FLOOR else None, m, s, tt)
        for t, m, s, st, tt in zip(
            out["track"], out["metric"], out["score"], out["strength"].fillna(0), out["top_tokens"], strict=True
        )
    ]
    return out.sort_values(["strength", "name", "unit"], ascending=[False, True, True], na_position="last").reset_index(
        drop=True
    )


def unit_label(run: Run, x: np.ndarray, top_idx: np.ndarray) -> dict:
    """One unit's catalogue entry: ``track, metric, score, strength, top_tokens, label``, from its values x
    ``[tokens]`` and its top positive positions, scored as :func:`catalogue` scores every unit."""
    best = {"track": None, "metric": None, "score": np.nan, "strength": np.nan}
    for t in tracks(run):
        track = track_target(run, t)
        metric, score = probes.column_score(np.asarray(x, np.float16), track)
        strength = abs(2 * score - 1) if track.boolean else abs(score)
        if np.isfinite(strength) and not strength <= np.nan_to_num(best["strength"], nan=-1.0):
            best = {"track": t, "metric": metric, "score": score, "strength": strength}
    top_tokens = " ".join(over_represented(top_idx[:20], _cards.token_strings(run)))
    shown = best["track"] if np.nan_to_num(best["strength"]) >= FLOOR else None
    return {**best, "top_tokens": top_tokens, "label": label(shown, best["metric"], best["score"], top_tokens)}


_TARGETS: weakref.WeakKeyDictionary[Run, dict[str, probes.Target]] = weakref.WeakKeyDictionary()


def track_target(run: Run, track: str) -> probes.Target:
    """The annotation column ``track`` prepared for scoring (:func:`lstmviz.analysis.probes.target`), kept while
    the run is open: each unit's label scores its column against every track, and preparing one (reading the
    column, its missing values, its classes and sums) is about half of the scoring at 10M tokens. Only the last
    run's are held (a numeric track is ~100 MB at 10M tokens, and the app keeps several runs open)."""
    if run not in _TARGETS:
        _TARGETS.clear()
    held = _TARGETS.setdefault(run, {})
    if track not in held:
        held[track] = probes.target(*probes.track_arrays(run, track))
    return held[track]


def _stronger(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Per (name, unit), the row of a or b with the larger strength (a on ties and where b is NaN)."""
    m = a.merge(b, on=["name", "unit"], suffixes=("", "_b"))
    take = m["strength_b"] > m["strength"].fillna(-1)
    for col in ("metric", "score", "strength", "track"):
        m[col] = m[col].where(~take, m[f"{col}_b"])
    return m[["name", "unit", "metric", "score", "strength", "track"]]


def label(track: str | None, metric: str | None, score: float, top_tokens: str) -> str:
    """``in_string (AUC 0.93) · top tokens " '``, from the parts that exist. A unit whose AUC is under 0.5 is low
    where the annotation holds, and reads so: ``not in_string (AUC 0.86)``, the AUC of its absence (1 − score);
    a correlation keeps its sign."""
    parts = []
    if isinstance(track, str) and np.isfinite(score):
        if metric == "auc":
            parts.append(f"{track} (AUC {score:.2f})" if score >= 0.5 else f"not {track} (AUC {1 - score:.2f})")
        else:
            parts.append(f"{track} (r {score:.2f})")
    if top_tokens:
        parts.append(f"top tokens {top_tokens}")
    return " · ".join(parts)


def search(table: pd.DataFrame, text: str) -> pd.DataFrame:
    """Rows of a catalogue whose name, label or top tokens contain ``text`` (case-insensitive); all for ""."""
    text = text.strip().lower()
    if not text:
        return table
    hay = (table["name"] + " " + table["label"].fillna("") + " " + table["top_tokens"].fillna("")).str.lower()
    return table[hay.str.contains(text, regex=False)]


# --- output effect -------------------------------------------------------------------------------------------


def decoder_of(model: nn.Module, width: int) -> nn.Linear | None:
    """The output layer fed by a ``width``-unit state: the last ``nn.Linear`` of the model reading ``width``
    features, or None (a model without one, or whose decoder reads something else)."""
    found = None
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.in_features == width:
            found = module
    return found


def feeds_decoder(run: Run, name: str) -> bool:
    """Whether ``name`` is the ``h`` of the last layer of its module: the state the output layer reads."""
    n = _names.parse(name)
    if n.kind != "h" or n.grad:
        return False
    layers = [_names.parse(m).layer for m in run.names if _names.parse(m).module == n.module]
    return n.layer == max(layers)


def logit_lens(weight: np.ndarray, unit: int, vocab: Sequence[str], k: int = 8) -> pd.DataFrame:
    """The next tokens a unit pushes up and down: column ``unit`` of the output weight ``[V, H]``.

    Returns ``direction, token, weight`` rows: the ``k`` largest weights ("up": one unit more of the unit raises
    that token's logit by ``weight``) then the ``k`` smallest ("down"), ties to the lower token id.
    """
    col = np.asarray(weight, np.float64)[:, unit]
    ids = np.arange(len(col))
    up = ids[np.lexsort((ids, -col))][:k]
    down = ids[np.lexsort((ids, col))][:k]
    return pd.DataFrame(
        {
            "direction": ["up"] * len(up) + ["down"] * len(down),
            "token": [vocab[i] if i < len(vocab) else str(i) for i in [*up, *down]],
            "weight": col[[*up, *down]],
        }
    )


def measured_effect(model: nn.Module, run: Run, name: str, unit: int, tokens: int = 2000) -> dict[str, float]:
    """Mean change in next-token log-prob over the run's first ``tokens`` tokens when ``unit`` of ``name`` is
    held at its corpus mean: ``direct`` (the decoder alone sees it) and ``total`` (the recurrence carries it)."""
    from ..causal import effects

    ids = torch.tensor(run.tokens_window(0, tokens, ["token_id"])["token_id"].to_numpy(), dtype=torch.long)
    if len(ids) < 2:
        raise RunError("a measured effect needs at least two tokens")
    fx = effects(model, ids, {name: {unit: "mean"}}, run=run)
    return {"direct": float(fx.delta_logp("direct").mean()), "total": float(fx.delta_logp("total").mean())}


def unusual(run: Run, name: str, values: np.ndarray) -> pd.DataFrame:
    """Units ranked by how unusual they are on a new text against the corpus (sae_vis's prompt view).

    values: float32 ``[tokens, U]`` of activation ``name`` on the text. A unit's ``top`` is the fraction of the
    text's tokens above its corpus top band (``band_lo`` of band 10, the corpus's ~90th percentile) and ``bottom``
    the fraction below its bottom band's top (~10th percentile); on text like the corpus each is about 0.1.
    ``lift`` is the larger over 0.1; rows by lift, descending, ties to the lower unit. ``max`` and ``min`` are the
    unit's extremes on the text (NaN left out), to set against its corpus range.
    """
    a = _cards.load_cards(run, name).a
    x = np.asarray(values, np.float32)
    if x.ndim != 2 or x.shape[1] != run.units(name):
        raise RunError(f"values must be [tokens, {run.units(name)}] for {name}, got {list(x.shape)}")
    with np.errstate(invalid="ignore"):
        top = (x > a["band_lo"][None, :, -1]).mean(0) if len(x) else np.zeros(x.shape[1])
        bottom = (x < a["band_hi"][None, :, 0]).mean(0) if len(x) else np.zeros(x.shape[1])
    lift = np.maximum(top, bottom) / 0.1
    unit = np.arange(x.shape[1])
    order = np.lexsort((unit, -lift))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a unit with no finite value on the text: NaN
        most, least = np.nanmax(x, 0) if len(x) else unit * np.nan, np.nanmin(x, 0) if len(x) else unit * np.nan
    return pd.DataFrame(
        {
            "unit": unit[order],
            "top": top[order],
            "bottom": bottom[order],
            "lift": lift[order],
            "max": most[order],
            "min": least[order],
        }
    )
