"""Curves and scores: training curves, per-class score bars, the confusion matrix."""

import csv
import math
import os
from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from unet_lib.viz.figures import finish, grid

__all__ = ["plot_confusion_matrix", "plot_history", "plot_per_class"]


def _read_history(history) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """``(columns, epochs)`` from a dict, a Keras History or a CSVLogger file."""
    epochs = None
    if isinstance(history, str | os.PathLike):
        path = Path(history)
        if not path.is_file():
            raise FileNotFoundError(f"history CSV {path} not found: pass the CSVLogger file.")
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        if not rows:
            raise ValueError(f"history CSV {path} has no rows (training wrote no epoch yet).")
        data = {
            key: [float(r[key]) if r.get(key) not in (None, "") else math.nan for r in rows]
            for key in rows[0]
            if key is not None
        }
    elif hasattr(history, "history") and isinstance(history.history, Mapping):
        data = dict(history.history)
        if getattr(history, "epoch", None):
            epochs = np.asarray(history.epoch, np.float64) + 1
    elif isinstance(history, Mapping):
        data = dict(history)
    else:
        raise TypeError(
            "history must be a dict of lists, a keras History or a CSVLogger path, "
            f"got {type(history).__name__}."
        )
    columns = {k: np.asarray(v, np.float64).reshape(-1) for k, v in data.items()}
    if "epoch" in columns:
        epochs = columns.pop("epoch") + 1  # CSVLogger counts from 0
    return columns, epochs


def plot_history(history, *, metrics=None, log_loss: bool = False, ncols: int = 3, save=None):
    """Training curves: one panel per metric (``ncols`` per row), train and validation lines,
    epochs counted from 1, the best validation loss marked.

    ``history``: a dict ``name -> list``, a keras ``History`` or a ``CSVLogger`` file's path.
    ``metrics``: names to plot (``val_`` prefixes dropped), default all, ``loss`` first.
    ``log_loss``: log scale for the ``loss`` panels (positive values only).
    """
    columns, epochs = _read_history(history)
    names = _metric_names(columns, metrics)
    ncols = max(1, min(int(ncols), len(names)))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = grid(nrows, ncols, (4.0 * ncols, 3.0 * nrows))
    for ax, name in zip(axes.ravel(), names, strict=False):
        _plot_metric(ax, name, columns, epochs, log_loss)
    for ax in axes.ravel()[len(names) :]:
        fig.delaxes(ax)
    return finish(fig, save)


def _metric_names(columns, metrics) -> list[str]:
    """Metric names without ``val_`` prefixes, ``loss`` first; ``metrics`` picks some."""
    names = list(dict.fromkeys(key.removeprefix("val_") for key in columns))
    if "loss" in names:
        names.remove("loss")
        names.insert(0, "loss")
    if metrics is not None:
        wanted = [metrics] if isinstance(metrics, str) else list(metrics)
        wanted = [m.removeprefix("val_") for m in wanted]
        missing = [m for m in wanted if m not in names]
        if missing:
            raise ValueError(f"history has no metric {missing}; available: {names}.")
        names = wanted
    if not names:
        raise ValueError("history holds no metric to plot.")
    return names


def _plot_metric(ax, name: str, columns: dict, epochs, log_loss: bool) -> None:
    """One panel: the train and validation curves of ``name``, the best validation loss."""
    for key, label, style in ((name, "train", "-"), (f"val_{name}", "val", "--")):
        if key not in columns:
            continue
        y = columns[key]
        x = epochs[: y.size] if epochs is not None else np.arange(1, y.size + 1)
        marker = "o" if y.size <= 30 else None
        ax.plot(x, y, style, marker=marker, markersize=3, label=label)
        if label == "val" and "loss" in name and np.isfinite(y).any():
            best = int(np.nanargmin(y))
            ax.plot(x[best], y[best], "*", color="k", markersize=9, label="best val")
    if log_loss and "loss" in name:
        values = np.concatenate([columns[k] for k in (name, f"val_{name}") if k in columns])
        if np.all(values[np.isfinite(values)] > 0):
            ax.set_yscale("log")
    ax.set_title(name, fontsize=10)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def plot_per_class(per_class, *, metrics=("dice", "iou"), title=None, save=None):
    """Grouped bar chart of per-class scores, one bar per class and metric in ``metrics``.

    ``per_class`` maps class names to ``{"dice": ..., "iou": ...}`` (a missing metric is NaN).
    An undefined (NaN) score gets no bar but an ``n/a`` mark and a note below the chart.
    """
    if not isinstance(per_class, Mapping) or not per_class:
        raise ValueError("per_class must be a non-empty dict: class name -> {metric: value}.")
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    if not metrics:
        raise ValueError("metrics is empty: name at least one metric, e.g. ('dice',).")
    names = [str(k) for k in per_class]
    rows = [[float(dict(v).get(m, math.nan)) for m in metrics] for v in per_class.values()]
    values = np.array(rows, np.float64)
    wide = max(4.0, 1.0 + 0.5 * len(names) * len(metrics) + 0.4 * len(names))
    fig, ax = plt.subplots(figsize=(wide, 3.6), layout="constrained")
    width = 0.8 / len(metrics)
    x = np.arange(len(names))
    top = max(1.0, float(np.nanmax(values)) if np.isfinite(values).any() else 1.0)
    cmap = plt.get_cmap("tab10")
    for j, metric in enumerate(metrics):
        pos = x - 0.4 + width * (j + 0.5)
        col = values[:, j]
        ok = np.isfinite(col)
        bars = ax.bar(pos[ok], col[ok], width, label=metric, color=cmap(j))
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
        for p in pos[~ok]:
            ax.text(p, 0.02 * top, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
    if not np.isfinite(values).all():
        note = "n/a: undefined score (NaN): class absent from truth and prediction"
        ax.set_xlabel(note, fontsize=7)
    tilt = len(names) > 6
    ax.set_xticks(x, names, rotation=30 if tilt else 0, ha="right" if tilt else "center")
    ax.set_ylim(0, 1.1 * top)
    ax.set_ylabel("score")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title)
    return finish(fig, save)


def plot_confusion_matrix(
    matrix, class_names=None, *, normalize: bool = True, cmap="Blues", save=None
):
    """Heat map of ``(K, K)`` counts, ``matrix[t, p]`` = pixels of truth ``t`` predicted ``p``,
    with a colour bar; cells annotated when ``K <= 20``; ``class_names`` default ``0 .. K-1``.

    ``normalize=True`` divides each row by its sum (the diagonal is then the recall); empty
    rows are NaN and drawn blank.
    """
    m = np.asarray(matrix, np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"matrix must be square (K, K), got shape {m.shape}.")
    k = m.shape[0]
    names = [str(i) for i in range(k)] if class_names is None else [str(c) for c in class_names]
    if len(names) != k:
        raise ValueError(f"got {len(names)} class names for a {k} x {k} matrix.")
    if normalize:
        sums = m.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = np.where(sums > 0, m / np.where(sums > 0, sums, 1), np.nan)
    side = min(10.0, 2.0 + 0.55 * k)
    fig, ax = plt.subplots(figsize=(side + 1.2, side), layout="constrained")
    vmax = 1.0 if normalize else (float(np.nanmax(m)) if np.isfinite(m).any() else 1.0)
    im = ax.imshow(np.ma.masked_invalid(m), cmap=cmap, vmin=0.0, vmax=vmax)
    fig.colorbar(im, ax=ax, shrink=0.8)
    for t, p in np.ndindex(k, k) if k <= 20 else ():  # annotated cells
        v = m[t, p]
        if not np.isfinite(v):
            text = "-"
        elif normalize:
            text = f"{v:.2f}"
        else:
            text = f"{int(v)}" if v == round(v) and abs(v) < 1e7 else f"{v:.3g}"
        color = "white" if np.isfinite(v) and v > 0.6 * vmax else "black"
        ax.text(p, t, text, ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(k), names, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth")
    ax.set_title("confusion matrix" + (" (rows normalised)" if normalize else " (pixels)"))
    return finish(fig, save)
