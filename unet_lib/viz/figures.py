"""Plumbing shared by the plot modules: the figure grid and atomic saving. Every ``plot_*``
function returns its Matplotlib ``Figure`` and takes ``save=None``, a path to write it to.
"""

from pathlib import Path

from unet_lib.fileio import atomic_path

__all__ = ["SAVE_DPI", "save_figure"]

#: Resolution of saved figures.
SAVE_DPI = 100


def save_figure(fig, path, *, dpi: int = SAVE_DPI) -> Path:
    """Write ``fig`` to ``path`` atomically (a temporary file in the folder, then a rename);
    the suffix picks the format (``.png`` when there is none). Returns the path.
    """
    path = Path(path)
    fmt = path.suffix[1:].lower() or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    return path


def grid(rows: int, cols: int, figsize):
    """``(figure, axes)``: a ``rows x cols`` pyplot grid, axes always 2-D, constrained layout."""
    import matplotlib.pyplot as plt

    return plt.subplots(rows, cols, figsize=figsize, squeeze=False, layout="constrained")


def finish(fig, save):
    """Return ``fig``, saved first with :func:`save_figure` when ``save`` is a path."""
    if save is not None:
        save_figure(fig, save)
    return fig
