"""What every figure shares: one style, figures that never touch pyplot's global state
(so importing toymodels never changes the user's matplotlib backend, and a figure made in
a loop is freed with its last reference), saved only when asked."""

from matplotlib.figure import Figure

STYLE = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "figure.dpi": 150,
         "savefig.bbox": "tight", "axes.spines.top": False, "axes.spines.right": False}


def subplots(*args, figsize=None, layout=None, **kwargs):
    """(Figure, axes) as pyplot.subplots makes them, without registering the figure."""
    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(*args, **kwargs)


def finish(fig: Figure, path=None) -> Figure:
    """Save fig to path when one is given; return it (notebooks show it inline)."""
    if path is not None:
        fig.savefig(path)
    return fig
