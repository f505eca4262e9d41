"""Attribution for the Text heatmap: each token's share of the model's prediction at one position, cached.

The model reads a recorded token the way the recording did: from the start of its stream (a stateful recording
splits the corpus into contiguous streams) or of its document (a recording of sequences). :func:`context` gives
those ids, so log p here is the probability the run stored in ``top_p``. Models come from
:func:`lstmviz.dashboard.data.load_model` (native checkpoints, read weights-only) and run under
:data:`data.MODEL_LOCK`. :func:`figure` is pure plotly. Nothing here writes ``st.session_state``.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from ..causal import Attribution, attribute
from ..store import Run
from . import data, figures

DEFAULT_WINDOW = 20
"""Tokens attributed before the position; the text before them is read as it is and carries its state in.

Integrated gradients from an all-zero embedding crosses inputs the model never saw; over long windows of the
sample code_lstm its integrand turns so rough that a 40-token window kept a 49 % completeness gap at 64 nodes.
Over 20 tokens the adaptive quadrature brought each of 12 sampled positions under 1 % within 260 evaluations;
over 40 tokens 2 of 6 stayed above 1 % at 512 and needed up to 650 (see :mod:`lstmviz.causal.attribute`).
"""
MAX_SHOWN = 240
"""At most this many tokens before the position are drawn."""
METHODS = {"ig": "integrated_gradients", "gxi": "grad_x_input"}
METHOD_LABELS = {"ig": "Integrated gradients", "gxi": "Gradient × input"}
BUDGETS = (128, 512, 2048, 8192)
"""Choices for the most gradient evaluations integrated gradients may spend."""


def context(run: Run, idx: int) -> tuple[int, np.ndarray]:
    """(first corpus position the model read before token ``idx``, int64 ids from there to ``idx + 1`` or the end).

    The stream's (stateful recording: ``streams`` contiguous pieces of ``ceil(N / streams)`` tokens) or the
    document's (``mode="sequences"``) first token; the ids include the token after ``idx``, the actual next one.
    """
    rec = run.manifest.get("recording") or {}
    n = run.n_tokens
    if rec.get("mode") == "sequences" and "doc" in run.token_columns:
        doc = run.token_column("doc").to_numpy()
        same = doc == doc[idx]  # documents are contiguous
        first, last = int(np.argmax(same)), idx + 1 if idx + 1 < n and same[idx + 1] else idx
    else:
        length = -(-n // min(max(int(rec.get("streams", 1)), 1), n))
        first, last = idx // length * length, min(idx + 1, n - 1)
    return first, run.tokens_window(first, last + 1, ["token_id"])["token_id"].to_numpy().astype(np.int64)


@st.cache_data(max_entries=64, show_spinner="Attributing the prediction to the tokens before it…")
def attribution(
    checkpoint: str,
    mtime: float,
    key: data.RunRef,
    idx: int,
    target: int | None,
    method: str,
    window: int,
    max_steps: int,
) -> tuple[int, Attribution]:
    """(first corpus position of the scores, :func:`lstmviz.attribute` at token ``idx`` of the run).

    ``method`` is a key of :data:`METHODS`; ``target`` None is the actual next token; integrated gradients start
    at 64 nodes and refine to a 1 % completeness gap within ``max_steps`` evaluations.
    """
    first, ids = context(data.run_of(key), idx)
    loaded = data.load_model(checkpoint)
    with data.MODEL_LOCK:
        a = attribute(loaded, ids, idx - first, target, METHODS[method], window=window, max_steps=max_steps)
    return first, a


def figure(tokens: list[str], scores: np.ndarray, first_idx: int, attributed: int, title: str = "") -> go.Figure:
    """The text around the position, each token up to it coloured by its score, the position outlined.

    tokens ``[T]`` display strings from corpus position ``first_idx`` on; scores ``[P + 1]`` for tokens[0…P], P
    the position (the last ``attributed`` of them are scored; those before are read but not scored, those after
    not read: both are drawn white and say so on hover). Each token carries an invisible marker whose
    ``customdata`` is its corpus position, so a click on it selects it (plotly heatmaps report no selection).
    """
    scores = np.asarray(scores, np.float64)
    T, P = len(tokens), len(scores) - 1
    values = np.zeros(T)
    values[: P + 1] = scores

    def note(j: int) -> str:
        if j > P:
            return "after the position: not read"
        return f"attribution {scores[j]:+.4f}" if j > P - attributed else "before the window: read, not scored"

    hover = [f"#{first_idx + j} {figures.show_token(t)!r}<br>{note(j)}" for j, t in enumerate(tokens)]
    fig = figures.text_figure(
        tokens, values, hover=hover, zrange=figures.symmetric_range(scores[P + 1 - attributed :]), title=title
    )
    lay = figures.layout_text(tokens, figures.TEXT_COLS[""])  # where text_figure put each token (no tracks)
    x, y = lay.x0 + lay.width / 2, lay.row.astype(np.float64)
    fig.update_traces(hoverinfo="skip", selector={"type": "bar"})
    fig.add_trace(
        go.Scatter(
            x=x,
            y=y,
            mode="markers",
            marker={"size": 16, "symbol": "square", "opacity": 0},
            selected={"marker": {"opacity": 0}},
            unselected={"marker": {"opacity": 0}},
            customdata=np.arange(first_idx, first_idx + T),
            hovertext=[h + ("<br>click: attribute the prediction here" if j != P else "") for j, h in enumerate(hover)],
            hovertemplate="%{hovertext}<extra></extra>",
            showlegend=False,
        )
    )
    fig.add_shape(
        type="rect",
        x0=lay.x0[P],
        x1=lay.x0[P] + lay.width[P],
        y0=y[P] - 0.5,
        y1=y[P] + 0.5,
        line={"width": 2},
    )
    fig.update_layout(clickmode="event+select", dragmode=False)
    return fig
