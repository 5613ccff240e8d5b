"""Saving figures atomically: the plumbing shared by the plot modules.

Every ``plot_*`` function of :mod:`unet_lib.viz.samples` and :mod:`unet_lib.viz.charts` takes
``save=None``: a path where the figure is written atomically with :func:`save_figure`
(through :func:`unet_lib.fileio.atomic_path`: a temporary file in the same folder, then
``os.replace``) at ``SAVE_DPI`` dots per inch; the format follows the suffix. Matplotlib
figures only; no TensorFlow, no Keras.

Example:
    >>> save_figure(fig, "figures/history.png")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from unet_lib.fileio import atomic_path

__all__ = ["SAVE_DPI", "save_figure"]

#: Resolution of saved figures.
SAVE_DPI = 100


def save_figure(fig, path, *, dpi: int = SAVE_DPI) -> Path:
    """Write ``fig`` to ``path`` atomically (temporary file in the same folder + ``os.replace``).

    The temporary file comes from :func:`unet_lib.fileio.atomic_path`; it is removed when
    saving fails, so a failed save leaves neither a half-written figure nor a stray file.

    Args:
        fig: a Matplotlib figure.
        path: destination; the suffix picks the format (``.png`` when there is none). Missing
            parent folders are created.
        dpi: resolution.

    Returns:
        The destination path.

    Example:
        >>> save_figure(fig, "figures/history.png")
    """
    path = Path(path)
    fmt = path.suffix[1:].lower() or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    return path


def _finish(fig, save):
    if save is not None:
        save_figure(fig, save)
    return fig
