"""Curves and scores: training curves, per-class score bars, the confusion matrix."""

import csv
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from unet_lib.viz.figures import finish, grid

__all__ = ["plot_confusion_matrix", "plot_history", "plot_per_class", "history_curves"]
__all__ += ["HistoryCurves"]

#: What ``plot_history`` marks by default: the metric and direction that choose ``best.keras``
#: (``unet_lib.training.RunCheckpoint``).
BEST_MONITOR, BEST_MODE = "val_dice", "max"


def _read_history(history) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """``(columns, epochs)`` from a dict, a Keras History or a CSV file; epochs from 1."""
    epochs = None
    if isinstance(history, str | os.PathLike):
        path = Path(history)
        if not path.is_file():
            raise FileNotFoundError(
                f"history CSV {path} not found: pass RUN/history.csv or a CSVLogger file."
            )
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
            epochs = np.asarray(history.epoch, np.float64) + 1  # History counts from 0
    elif isinstance(history, Mapping):
        data = dict(history)
    else:
        raise TypeError(
            "history must be a dict of lists, a keras History or a history CSV path, "
            f"got {type(history).__name__}."
        )
    columns = {k: np.asarray(v, np.float64).reshape(-1) for k, v in data.items()}
    if "epoch" in columns:  # unet_lib's history.csv counts from 1, keras' CSVLogger from 0
        epochs = columns.pop("epoch")
        epochs = epochs + 1 if epochs.size and epochs[0] == 0 else epochs
    return columns, epochs


@dataclass(frozen=True)
class HistoryCurves:
    """The data :func:`plot_history` draws, made by :func:`history_curves`.

    Attributes:
        panels: metric name (``loss`` first) -> ``{"train": (epochs, values), "val": ...}``,
            a line only where the history has the column (``dice`` / ``val_dice``); epochs
            are counted from 1, as in ``history.csv``.
        best_epoch: the epoch whose ``monitor`` value is best (``None`` without a finite
            value or without the column); the first one on a tie, as the checkpoint keeps it.
        monitor: the column that chose ``best_epoch`` (``val_dice``, or ``dice`` for a run
            without validation), ``None`` when the history has neither.
    """

    panels: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]
    best_epoch: int | None
    monitor: str | None


def history_curves(history, *, metrics=None, monitor=BEST_MONITOR, mode=BEST_MODE):
    """The lines of the training curves and the best epoch, without drawing anything.

    ``history`` and ``metrics`` as in :func:`plot_history`. The best epoch is chosen like
    ``best.keras``: the highest (``mode="max"``) or lowest (``"min"``) finite value of
    ``monitor``, falling back to the name without ``val_`` when there is no validation.

    Example:
        >>> c = history_curves({"epoch": [1, 2], "val_dice": [0.5, 0.7], "loss": [1.0, 0.8]})
        >>> c.best_epoch, c.panels["loss"]["train"][0].tolist()
        (2, [1.0, 2.0])
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}.")
    columns, epochs = _read_history(history)

    def line(key):  # (epochs, values) of one column
        y = columns[key]
        x = epochs[: y.size] if epochs is not None else np.arange(1, y.size + 1, dtype=float)
        return x, y

    panels = {}
    for name in _metric_names(columns, metrics):
        keys = (("train", name), ("val", f"val_{name}"))
        panels[name] = {label: line(key) for label, key in keys if key in columns}
    found = [m for m in (monitor, (monitor or "").removeprefix("val_")) if m and m in columns]
    best = None
    if found:
        x, y = line(found[0])
        worst = -np.inf if mode == "max" else np.inf
        scores = np.where(np.isfinite(y), y, worst)
        if np.isfinite(y).any():
            best = int(x[np.argmax(scores) if mode == "max" else np.argmin(scores)])
    return HistoryCurves(panels, best, found[0] if found else None)


def plot_history(
    history, *, metrics=None, monitor=BEST_MONITOR, mode=BEST_MODE, log_loss: bool = False,
    ncols: int = 3, save=None,
):  # fmt: skip
    """Training curves: one panel per metric (``ncols`` per row), train and validation lines,
    epochs counted from 1, the best epoch starred on every panel.

    ``history``: a dict ``name -> list`` (``TrainResult.history``), a keras ``History``, or
    the path of ``RUN/history.csv`` (epochs from 1) or of a ``CSVLogger`` file (from 0).
    ``metrics``: names to plot (``val_`` prefixes dropped), default all, ``loss`` first.
    ``monitor`` / ``mode``: the column and direction that pick the best epoch, by default
    those that choose ``best.keras`` (highest ``val_dice``); ``monitor=None``: no mark.
    ``log_loss``: log scale for the ``loss`` panels (positive values only).
    """
    curves = history_curves(history, metrics=metrics, monitor=monitor, mode=mode)
    names = list(curves.panels)
    ncols = max(1, min(int(ncols), len(names)))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = grid(nrows, ncols, (4.0 * ncols, 3.0 * nrows))
    for ax, name in zip(axes.ravel(), names, strict=False):
        _plot_metric(ax, name, curves, log_loss)
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


def _plot_metric(ax, name: str, curves: HistoryCurves, log_loss: bool) -> None:
    """One panel: the train and validation lines of ``name``, the best epoch starred (on the
    validation line, else the training line)."""
    lines = curves.panels[name]
    for label, style in (("train", "-"), ("val", "--")):
        if label in lines:
            x, y = lines[label]
            ax.plot(x, y, style, marker="o" if y.size <= 30 else None, markersize=3, label=label)
    x, y = lines.get("val", lines.get("train"))
    at = np.flatnonzero(x == curves.best_epoch) if curves.best_epoch is not None else []
    if len(at) and np.isfinite(y[at[0]]):
        best = f"best {curves.monitor}"
        ax.plot(x[at[0]], y[at[0]], "*", color="k", markersize=9, label=best)
    if log_loss and "loss" in name:
        values = np.concatenate([values for _, values in lines.values()])
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
