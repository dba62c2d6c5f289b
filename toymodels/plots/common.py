"""What every figure shares: one style, figures that never touch pyplot's global state
(so importing toymodels never changes the user's matplotlib backend, and a figure made in
a loop is freed with its last reference), saved only when asked, and numbers printed in a
format that shows their size."""

import math

from matplotlib.figure import Figure

STYLE = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "figure.dpi": 150,
         "savefig.bbox": "tight", "axes.spines.top": False, "axes.spines.right": False}

CELL_FONTSIZE = 7.5
"""Numbers printed inside heatmap cells: legible when the figure is shown at column width."""


def subplots(*args, figsize=None, layout=None, **kwargs):
    """(Figure, axes) as pyplot.subplots makes them, without registering the figure."""
    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(*args, **kwargs)


def finish(fig: Figure, path=None) -> Figure:
    """Save fig to path when one is given; return it (notebooks show it inline)."""
    if path is not None:
        fig.savefig(path)
    return fig


def fmt(value, digits: int = 2) -> str:
    """A number as text that shows its size: fixed point with `digits` decimals where that
    keeps a significant digit, else scientific (7.6e-06, never 0.00); '–' for None or NaN."""
    if value is None or not math.isfinite(value):
        return "–"
    if value == 0:
        return "0"
    if abs(value) < 10 ** -digits or abs(value) >= 10 ** 4:
        return f"{value:.1e}"
    return f"{value:.{digits}f}"
