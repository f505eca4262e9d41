"""Pure plotly figure builders for the dashboard: data in, ``go.Figure`` out, no streamlit (so they are testable).

Values arrive as numpy arrays, any float dtype; they are cast to float32 here, because plotly serialises float16
element by element. Diverging colour scales are centred on zero with a symmetric range.

One module per kind of figure: ``common`` (scales, token display, hover), ``text`` (the text heatmap),
``heatmaps`` (units × time), ``charts`` (saturation, gradients, projections, rankings) and ``cells`` (the cell
walkthrough). Pages use them through this package, ``figures.text_figure(…)``.
"""

from lstmviz.dashboard.figures.cells import cell_figure, sparklines
from lstmviz.dashboard.figures.charts import (
    BOOLEAN_COLORS,
    QUALITATIVE,
    gradient_figure,
    projection_figure,
    ranking_figure,
    saturation_figure,
    selection_lines,
)
from lstmviz.dashboard.figures.common import (
    DIVERGING,
    FONT,
    GATE_SCALE,
    MAX_HOVER_CELLS,
    SEQUENTIAL,
    TRACK_SCALE,
    code_span,
    show_token,
    symmetric_range,
    token_class,
    token_hover,
    track_values,
    unit_scale,
)
from lstmviz.dashboard.figures.heatmaps import counts_figure, overview_figure, units_heatmap
from lstmviz.dashboard.figures.text import LINE_ENDS, TEXT_COLS, TRACK_H, TextLayout, layout_text, text_figure

__all__ = [
    "BOOLEAN_COLORS",
    "DIVERGING",
    "FONT",
    "GATE_SCALE",
    "LINE_ENDS",
    "MAX_HOVER_CELLS",
    "QUALITATIVE",
    "SEQUENTIAL",
    "TEXT_COLS",
    "TRACK_H",
    "TRACK_SCALE",
    "TextLayout",
    "cell_figure",
    "code_span",
    "counts_figure",
    "gradient_figure",
    "layout_text",
    "overview_figure",
    "projection_figure",
    "ranking_figure",
    "saturation_figure",
    "selection_lines",
    "show_token",
    "sparklines",
    "symmetric_range",
    "text_figure",
    "token_class",
    "token_hover",
    "track_values",
    "unit_scale",
    "units_heatmap",
]
