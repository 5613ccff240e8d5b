"""Figures for segmentation work: overlays, sample grids, training curves, per-class scores.

Every ``plot_*`` function returns the Matplotlib ``Figure`` (a pyplot figure: it shows in
notebooks and with ``plt.show()``; in loops close it with ``plt.close(fig)``) and takes
``save=None``: a path where the figure is written atomically (to a temporary file in the same
folder, then ``os.replace``) at ``SAVE_DPI`` dots per inch; the format follows the suffix.

Inputs follow the tensor conventions of ARCHITECTURE.md: images ``(H, W, C)`` float in
``[0, 1]`` (``(H, W)`` grey and ``uint8`` also accepted), label maps ``(H, W)`` or
``(H, W, 1)`` integers ``0 .. K-1`` with ignored pixels ``-1`` (every negative value is drawn
as ignored). Colours come from :func:`label_colors` (Okabe-Ito, colour-blind friendly).

This module imports numpy, OpenCV and Matplotlib only (no TensorFlow, no Keras).

Example:
    >>> fig = plot_samples(images, masks, predictions, scores=dice, rank="worst", save="w.png")
"""

from __future__ import annotations

import colorsys
import csv
import math
import os
import uuid
from collections.abc import Mapping
from pathlib import Path

import cv2
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

__all__ = [
    "IGNORE_COLOR",
    "SAVE_DPI",
    "label_colors",
    "overlay",
    "plot_augmentations",
    "plot_confusion_matrix",
    "plot_history",
    "plot_per_class",
    "plot_prediction",
    "plot_samples",
    "save_figure",
]

#: Resolution of saved figures.
SAVE_DPI = 100
#: Colour of ignored pixels (label < 0): neutral mid grey.
IGNORE_COLOR = (128, 128, 128)
#: Colour of the truth outline in prediction-vs-truth overlays.
TRUTH_OUTLINE_COLOR = (255, 255, 255)

# Class 0 (background) black, then the Okabe-Ito palette (black left out) and Paul Tol's
# "muted" scheme; further classes get golden-ratio spaced hues.
_PALETTE = (
    (0, 0, 0),
    (230, 159, 0),  # orange
    (86, 180, 233),  # sky blue
    (0, 158, 115),  # bluish green
    (213, 94, 0),  # vermillion
    (0, 114, 178),  # blue
    (204, 121, 167),  # reddish purple
    (240, 228, 66),  # yellow
    (204, 102, 119),  # rose
    (51, 34, 136),  # indigo
    (221, 204, 119),  # sand
    (17, 119, 51),  # green
    (136, 204, 238),  # cyan
    (68, 170, 153),  # teal
    (153, 153, 51),  # olive
    (136, 34, 85),  # wine
    (170, 68, 153),  # purple
)
_OVERLAY_MODES = ("tint", "outline")
_RANKS = ("none", "worst", "best")


# --------------------------------------------------------------------------- saving


def save_figure(fig, path, *, dpi: int = SAVE_DPI) -> Path:
    """Write ``fig`` to ``path`` atomically (temporary file in the same folder + ``os.replace``).

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
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix[1:].lower() or "png"
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "xb") as fh:
            fig.savefig(fh, format=fmt, dpi=dpi, bbox_inches="tight")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _finish(fig, save):
    if save is not None:
        save_figure(fig, save)
    return fig


# --------------------------------------------------------------------------- colours, arrays


def label_colors(num_label_classes: int) -> np.ndarray:
    """A fixed colour-blind-friendly palette: one RGB colour per label class.

    Class 0 (background) is black (left untouched by :func:`overlay`); classes 1-7 follow the
    Okabe-Ito palette (orange, sky blue, bluish green, vermillion, blue, reddish purple,
    yellow), then Paul Tol's muted scheme, then golden-ratio spaced hues.

    Args:
        num_label_classes: the number of label classes ``K`` (``2`` for a binary model).

    Returns:
        ``(K, 3)`` uint8 array.

    Example:
        >>> label_colors(2)
        array([[  0,   0,   0],
               [230, 159,   0]], dtype=uint8)
    """
    if isinstance(num_label_classes, bool) or not isinstance(num_label_classes, int | np.integer):
        raise ValueError(f"num_label_classes must be an int, got {num_label_classes!r}.")
    if num_label_classes < 0:
        raise ValueError(f"num_label_classes must be >= 0, got {num_label_classes}.")
    colors = list(_PALETTE[:num_label_classes])
    for i in range(len(colors), num_label_classes):
        hue = (0.11 + i * 0.618033988749895) % 1.0
        rgb = colorsys.hsv_to_rgb(hue, 0.65, 0.9)
        colors.append(tuple(round(255 * v) for v in rgb))
    return np.asarray(colors, np.uint8).reshape(num_label_classes, 3)


def _to_rgb(image, name: str = "image") -> np.ndarray:
    """Display version of an image: ``(H, W, 3)`` uint8.

    ``(H, W)`` / ``(H, W, 1)`` grey -> grey RGB; 2 channels -> ``(c0, c1, 0)``; 3 or more ->
    the first three. Floats are clipped to ``[0, 1]`` (min-max rescaled when they leave that
    range, e.g. standardised images); unsigned integers are scaled by their dtype's maximum.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise ValueError(f"{name} must have shape (H, W) or (H, W, C), got {arr.shape}.")
    if arr.dtype == np.uint8:
        out = arr
    elif arr.dtype == bool:
        out = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.unsignedinteger):
        out = np.round(arr / np.iinfo(arr.dtype).max * 255).astype(np.uint8)
    else:  # floats and signed integers
        f = np.nan_to_num(arr.astype(np.float32))
        lo, hi = (float(f.min()), float(f.max())) if f.size else (0.0, 1.0)
        if lo < -1e-3 or hi > 1 + 1e-3:
            f = (f - lo) / (hi - lo) if hi > lo else np.zeros_like(f)
        out = np.round(np.clip(f, 0, 1) * 255).astype(np.uint8)
    if out.ndim == 2:
        return np.repeat(out[..., None], 3, axis=-1)
    c = out.shape[-1]
    if c == 2:
        return np.concatenate([out, np.zeros_like(out[..., :1])], axis=-1)
    return np.ascontiguousarray(out[..., :3])


def _to_labels(labels, name: str = "labels") -> np.ndarray:
    """``(H, W)`` int32 label map from ``(H, W)`` / ``(H, W, 1)`` integers."""
    arr = np.asarray(labels)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a label map of shape (H, W) or (H, W, 1), got {arr.shape}; "
            "pass the argmax of probabilities, not the probabilities."
        )
    if arr.dtype == bool or np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.int32, copy=False)
    if np.issubdtype(arr.dtype, np.floating) and np.array_equal(arr, np.round(arr)):
        return arr.astype(np.int32)
    raise ValueError(f"{name} must hold integer class indices, got non-integer {arr.dtype}.")


def _prediction_labels(pred, name: str = "prediction") -> np.ndarray:
    """Label map from a label map or probabilities (``(H, W, K)`` argmax, binary > 0.5)."""
    arr = np.asarray(pred)
    if arr.ndim == 3 and arr.shape[-1] > 1:
        return np.argmax(arr, axis=-1).astype(np.int32)
    if arr.ndim == 3:
        arr = arr[..., 0]
    if np.issubdtype(arr.dtype, np.floating) and not np.array_equal(arr, np.round(arr)):
        return (arr > 0.5).astype(np.int32)
    return _to_labels(arr, name)


def _palette(labels_list, colors) -> np.ndarray:
    top = max((int(lab.max()) for lab in labels_list if lab.size), default=0)
    if colors is None:
        return label_colors(max(top + 1, 2))
    pal = np.asarray(colors)
    if pal.ndim != 2 or pal.shape[1] != 3:
        raise ValueError(f"colors must have shape (K, 3) (RGB per class), got {pal.shape}.")
    if pal.shape[0] <= top:
        raise ValueError(
            f"colors has {pal.shape[0]} entries but the labels reach class {top}: "
            "give one colour per class (see label_colors(K))."
        )
    if np.issubdtype(pal.dtype, np.floating) and pal.max() <= 1.0:
        pal = pal * 255
    return np.clip(np.round(pal), 0, 255).astype(np.uint8)


def _colorize(labels: np.ndarray, pal: np.ndarray) -> np.ndarray:
    """RGB picture of a label map: class colours, ignored pixels ``IGNORE_COLOR``."""
    out = pal[np.clip(labels, 0, None)]
    out[labels < 0] = IGNORE_COLOR
    return out


def _boundary(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """Inner boundary of a boolean region: its pixels with an 8-neighbour outside it."""
    m = mask.astype(np.uint8)
    inner = cv2.erode(m, np.ones((3, 3), np.uint8), iterations=thickness)
    return (m > 0) & (inner == 0)


def _draw_outline(out, labels, pal, color=None, thickness: int = 1) -> None:
    """Outline every class >= 1 in place, in its class colour (or one ``color``)."""
    for c in np.unique(labels):
        if c < 1:
            continue
        edge = _boundary(labels == c, thickness)
        out[edge] = pal[c] if color is None else color


def _tint(out, base, labels, pal, alpha, ignore_color) -> None:
    fg = labels >= 1
    mixed = (1 - alpha) * base[fg] + alpha * pal[labels[fg]].astype(np.float32)
    out[fg] = np.round(mixed).astype(np.uint8)
    if ignore_color is not None:
        ign = labels < 0
        mixed = (1 - alpha) * base[ign] + alpha * np.asarray(ignore_color, np.float32)
        out[ign] = np.round(mixed).astype(np.uint8)


def _check_alpha(alpha) -> float:
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    return float(alpha)


def overlay(
    image,
    labels,
    *,
    mode: str = "tint",
    alpha: float = 0.45,
    colors=None,
    ignore_color=IGNORE_COLOR,
    thickness: int = 1,
) -> np.ndarray:
    """Draw a label map over an image.

    ``"tint"`` mixes each labelled pixel with its class colour,
    ``out = (1 - alpha) * image + alpha * color``; ``"outline"`` paints the inner boundary of
    each class region (pixels with an 8-neighbour of another label, ``thickness`` pixels
    wide) in the opaque class colour. Background (class 0) pixels keep the image unchanged
    (grey images stay grey); ignored pixels (``< 0``) are tinted with ``ignore_color``
    (``None`` leaves them) in tint mode and left unchanged in outline mode.

    Args:
        image: ``(H, W)``, ``(H, W, 1)`` or ``(H, W, C)`` image, float in ``[0, 1]`` or uint8.
        labels: ``(H, W)`` or ``(H, W, 1)`` integer label map.
        mode: ``"tint"`` or ``"outline"``.
        alpha: tint opacity in ``[0, 1]``.
        colors: ``(K, 3)`` RGB per class (uint8, or floats in ``[0, 1]``); default
            :func:`label_colors`.
        ignore_color: RGB for ignored pixels in tint mode, or ``None``.
        thickness: outline width in pixels.

    Returns:
        ``(H, W, 3)`` uint8 RGB.

    Example:
        >>> rgb = overlay(image, mask, mode="outline")
        >>> rgb.shape, rgb.dtype
        ((64, 64, 3), dtype('uint8'))
    """
    if mode not in _OVERLAY_MODES:
        raise ValueError(f"mode must be one of {_OVERLAY_MODES}, got {mode!r}.")
    alpha = _check_alpha(alpha)
    base = _to_rgb(image)
    lab = _to_labels(labels)
    if lab.shape != base.shape[:2]:
        raise ValueError(f"labels shape {lab.shape} does not match image shape {base.shape[:2]}.")
    pal = _palette([lab], colors)
    out = base.copy()
    if mode == "tint":
        _tint(out, base.astype(np.float32), lab, pal, alpha, ignore_color)
    else:
        _draw_outline(out, lab, pal, thickness=thickness)
    return out


def _compare(image, truth, pred, pal, mode, alpha) -> np.ndarray:
    """Prediction drawn with ``mode``, truth outlined in ``TRUTH_OUTLINE_COLOR`` on top."""
    out = overlay(image, pred, mode=mode, alpha=alpha, colors=pal)
    _draw_outline(out, truth, pal, color=TRUTH_OUTLINE_COLOR)
    return out


def _show(ax, picture, title=None, **kwargs) -> None:
    ax.imshow(picture, interpolation="nearest", **kwargs)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def _legend(fig, class_names, pal) -> None:
    if class_names:
        handles = [
            Patch(facecolor=pal[i] / 255.0, edgecolor="0.5", label=str(name))
            for i, name in enumerate(class_names)
            if i < len(pal)
        ]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6))


def _as_list(items) -> list:
    if items is None:
        return []
    if isinstance(items, np.ndarray) or hasattr(items, "shape"):
        return list(np.asarray(items))
    return list(items)


# --------------------------------------------------------------------------- sample grids


def plot_samples(
    images,
    masks,
    predictions=None,
    *,
    class_names=None,
    n: int = 4,
    overlay_mode: str = "tint",
    scores=None,
    rank: str = "none",
    alpha: float = 0.45,
    save=None,
):
    """A grid with one row per sample: image | truth | prediction | overlay.

    Without predictions the columns are image | truth | overlay (truth drawn with
    ``overlay_mode``). With predictions the overlay draws the prediction with
    ``overlay_mode`` and outlines the truth in white. Rows are titled ``#index`` and, with
    ``scores``, the per-image score (``Dice 0.812``).

    Args:
        images: ``N`` images ``(H, W, C)`` (an array ``(N, H, W, C)`` or a sequence).
        masks: ``N`` truth label maps ``(H, W)`` / ``(H, W, 1)``.
        predictions: ``N`` predicted label maps, or probabilities ``(H, W, K)`` (argmax) /
            ``(H, W, 1)`` (``> 0.5``); optional.
        class_names: names of the label classes, for a legend.
        n: number of rows (at most ``N``).
        overlay_mode: ``"tint"`` or ``"outline"``.
        scores: ``N`` per-image scores (e.g. Dice from ``metrics.per_image_scores``).
        rank: ``"none"`` (input order), ``"worst"`` (lowest scores first) or ``"best"``;
            ``NaN`` scores go last.
        alpha: tint opacity.
        save: optional path to write the figure to.

    Returns:
        The Figure (``rows * columns`` axes).

    Example:
        >>> fig = plot_samples(x, y, p, scores=dice, rank="worst", n=3)
    """
    imgs, truths = _as_list(images), _as_list(masks)
    preds = _as_list(predictions) if predictions is not None else None
    if not imgs:
        raise ValueError("images is empty: pass at least one image.")
    if len(truths) != len(imgs) or (preds is not None and len(preds) != len(imgs)):
        raise ValueError(
            f"got {len(imgs)} images, {len(truths)} masks"
            + (f" and {len(preds)} predictions" if preds is not None else "")
            + ": give one of each per sample."
        )
    if overlay_mode not in _OVERLAY_MODES:
        raise ValueError(f"overlay_mode must be one of {_OVERLAY_MODES}, got {overlay_mode!r}.")
    if rank not in _RANKS:
        raise ValueError(f"rank must be one of {_RANKS}, got {rank!r}.")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}.")
    alpha = _check_alpha(alpha)
    score_arr = None
    if scores is not None:
        score_arr = np.asarray(scores, np.float64).reshape(-1)
        if score_arr.size != len(imgs):
            raise ValueError(f"scores has {score_arr.size} values for {len(imgs)} images.")
    order = np.arange(len(imgs))
    if rank != "none":
        if score_arr is None:
            raise ValueError(f"rank={rank!r} needs scores: pass per-image scores.")
        key = score_arr if rank == "worst" else -score_arr
        order = np.argsort(np.where(np.isnan(key), np.inf, key), kind="stable")
    order = order[: min(n, len(imgs))]

    truth_maps = {int(i): _to_labels(truths[i], f"masks[{i}]") for i in order}
    pred_maps = (
        {int(i): _prediction_labels(preds[i], f"predictions[{i}]") for i in order}
        if preds is not None
        else {}
    )
    pal = _palette(list(truth_maps.values()) + list(pred_maps.values()), None)
    if class_names is not None and len(class_names) > len(pal):
        pal = label_colors(len(class_names))

    columns = ["image", "truth"] + (["prediction"] if preds is not None else []) + ["overlay"]
    fig, axes = plt.subplots(
        len(order),
        len(columns),
        figsize=(2.4 * len(columns), 2.4 * len(order) + (0.4 if class_names else 0)),
        squeeze=False,
        layout="constrained",
    )
    for row, i in enumerate(int(k) for k in order):
        img = _to_rgb(imgs[i], f"images[{i}]")
        truth = truth_maps[i]
        if truth.shape != img.shape[:2]:
            raise ValueError(f"masks[{i}] shape {truth.shape} != image shape {img.shape[:2]}.")
        head = f"#{i}"
        if score_arr is not None:
            head += f"  Dice {score_arr[i]:.3f}" if np.isfinite(score_arr[i]) else "  Dice n/a"
        pictures = [(img, head), (_colorize(truth, pal), "truth")]
        if preds is not None:
            pred = pred_maps[i]
            if pred.shape != truth.shape:
                raise ValueError(f"predictions[{i}] shape {pred.shape} != mask {truth.shape}.")
            pictures.append((_colorize(pred, pal), "prediction"))
            both = _compare(img, truth, pred, pal, overlay_mode, alpha)
            pictures.append((both, "pred (colour) vs truth (white)"))
        else:
            pictures.append((overlay(img, truth, mode=overlay_mode, alpha=alpha, colors=pal), ""))
        for col, (picture, title) in enumerate(pictures):
            _show(axes[row, col], picture, title or "overlay")
    _legend(fig, class_names, pal)
    return _finish(fig, save)


def plot_augmentations(pairs, *, titles=None, alpha: float = 0.45, max_cols: int = 6, save=None):
    """Augmentation previews: each (image, mask) pair as the image above its mask overlay.

    Args:
        pairs: a sequence of ``(image, mask)`` pairs (arrays or tensors).
        titles: optional title per pair (default ``#0``, ``#1``, ...).
        alpha: tint opacity of the mask overlay.
        max_cols: pairs per row block before wrapping.
        save: optional path to write the figure to.

    Returns:
        The Figure (``2 * len(pairs)`` axes).

    Example:
        >>> pairs = [augment_pair(image, mask, cfg, seed=[0, s]) for s in range(6)]
        >>> fig = plot_augmentations([(image, mask)] + pairs)
    """
    pairs = list(pairs)
    if not pairs:
        raise ValueError("pairs is empty: pass at least one (image, mask) pair.")
    if titles is not None and len(titles) != len(pairs):
        raise ValueError(f"got {len(titles)} titles for {len(pairs)} pairs.")
    alpha = _check_alpha(alpha)
    ncols = min(len(pairs), max(1, int(max_cols)))
    blocks = math.ceil(len(pairs) / ncols)
    fig, axes = plt.subplots(
        2 * blocks, ncols, figsize=(2.2 * ncols, 4.4 * blocks), squeeze=False, layout="constrained"
    )
    labels = [_to_labels(mask, f"pairs[{k}] mask") for k, (_, mask) in enumerate(pairs)]
    pal = _palette(labels, None)
    for k, (image, _) in enumerate(pairs):
        r, c = 2 * (k // ncols), k % ncols
        img = _to_rgb(image, f"pairs[{k}] image")
        if labels[k].shape != img.shape[:2]:
            raise ValueError(f"pairs[{k}]: mask {labels[k].shape} != image {img.shape[:2]}.")
        _show(axes[r, c], img, titles[k] if titles is not None else f"#{k}")
        _show(axes[r + 1, c], overlay(img, labels[k], alpha=alpha, colors=pal))
    for k in range(len(pairs), blocks * ncols):
        r, c = 2 * (k // ncols), k % ncols
        fig.delaxes(axes[r, c])
        fig.delaxes(axes[r + 1, c])
    return _finish(fig, save)


def plot_prediction(
    image,
    probabilities_or_labels,
    *,
    truth=None,
    class_names=None,
    alpha: float = 0.45,
    save=None,
):
    """One (large) image with its prediction: image | overlay [| confidence + colour bar].

    Args:
        image: ``(H, W, C)`` image.
        probabilities_or_labels: a label map ``(H, W)``, or probabilities ``(H, W, K)`` /
            ``(H, W, 1)`` / float ``(H, W)``; probabilities add a confidence panel (the
            foreground probability for a binary model, the top-class probability otherwise).
        truth: optional truth label map, outlined in white on the overlay.
        class_names: names of the label classes, for a legend.
        alpha: tint opacity.
        save: optional path to write the figure to.

    Returns:
        The Figure (2 axes for labels; 4 for probabilities: 3 panels and a colour bar).

    Example:
        >>> fig = plot_prediction(image, model.predict(image[None])[0], truth=mask)
    """
    alpha = _check_alpha(alpha)
    img = _to_rgb(image)
    arr = np.asarray(probabilities_or_labels)
    pred = _prediction_labels(arr)
    is_prob = np.issubdtype(arr.dtype, np.floating) and not np.array_equal(arr, np.round(arr))
    if pred.shape != img.shape[:2]:
        raise ValueError(f"prediction shape {pred.shape} != image shape {img.shape[:2]}.")
    maps = [pred]
    truth_map = None
    if truth is not None:
        truth_map = _to_labels(truth, "truth")
        if truth_map.shape != pred.shape:
            raise ValueError(f"truth shape {truth_map.shape} != prediction shape {pred.shape}.")
        maps.append(truth_map)
    pal = _palette(maps, None)
    if class_names is not None and len(class_names) > len(pal):
        pal = label_colors(len(class_names))
    h, w = pred.shape
    panels = 3 if is_prob else 2
    side = 5.0
    fig, axes = plt.subplots(
        1,
        panels,
        figsize=(side * panels * min(w / h, 2.0) + 0.6, side + (0.5 if class_names else 0)),
        squeeze=False,
        layout="constrained",
    )
    axes = axes[0]
    _show(axes[0], img, "image")
    if truth_map is not None:
        _show(axes[1], _compare(img, truth_map, pred, pal, "tint", alpha), "prediction vs truth")
    else:
        _show(axes[1], overlay(img, pred, alpha=alpha, colors=pal), "prediction")
    if is_prob:
        probs = arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr
        conf, title = (probs, "P(foreground)") if probs.ndim == 2 else (probs.max(-1), "max P")
        im = axes[2].imshow(conf, vmin=0.0, vmax=1.0, cmap="magma", interpolation="nearest")
        axes[2].set_xticks([])
        axes[2].set_yticks([])
        axes[2].set_title(title, fontsize=9)
        fig.colorbar(im, ax=axes[2], shrink=0.8)
    _legend(fig, class_names, pal)
    return _finish(fig, save)


# --------------------------------------------------------------------------- curves and scores


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
    """Training curves: one panel per metric with its train and validation lines.

    Args:
        history: a dict ``name -> list`` (``History.history``), a keras ``History`` or the
            path of a ``CSVLogger`` file (columns ``epoch, loss, val_loss, dice, ...``).
        metrics: metric names to plot (``"val_"`` prefixes are dropped); default every
            metric, ``loss`` first.
        log_loss: log scale for panels whose name contains ``loss`` (positive values only).
        ncols: panels per row.
        save: optional path to write the figure to.

    Returns:
        The Figure (one axes per metric). Epochs are counted from 1; the best validation
        loss is marked.

    Example:
        >>> fig = plot_history("runs/exp1/history.csv", metrics=["loss", "dice"], log_loss=True)
    """
    columns, epochs = _read_history(history)
    names: list[str] = []
    for key in columns:
        base = key[4:] if key.startswith("val_") else key
        if base not in names:
            names.append(base)
    if "loss" in names:
        names.remove("loss")
        names.insert(0, "loss")
    if metrics is not None:
        wanted = [metrics] if isinstance(metrics, str) else list(metrics)
        wanted = [m[4:] if m.startswith("val_") else m for m in wanted]
        missing = [m for m in wanted if m not in names]
        if missing:
            raise ValueError(f"history has no metric {missing}; available: {names}.")
        names = wanted
    if not names:
        raise ValueError("history holds no metric to plot.")
    ncols = max(1, min(int(ncols), len(names)))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.0 * ncols, 3.0 * nrows), squeeze=False, layout="constrained"
    )
    flat = axes.ravel()
    for ax, name in zip(flat, names, strict=False):
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
    for ax in flat[len(names) :]:
        fig.delaxes(ax)
    return _finish(fig, save)


def plot_per_class(per_class, *, metrics=("dice", "iou"), title=None, save=None):
    """Grouped bar chart of per-class scores; undefined (NaN) scores are shown as ``n/a``.

    Args:
        per_class: a dict ``class name -> {"dice": ..., "iou": ..., ...}`` (a missing metric
            counts as NaN).
        metrics: the metrics to show, one bar per class and metric.
        title: optional axes title.
        save: optional path to write the figure to.

    Returns:
        The Figure (one axes). NaN (class absent from truth and prediction) gets no bar, an
        ``n/a`` mark and a note below the chart.

    Example:
        >>> fig = plot_per_class({"background": {"dice": 0.98, "iou": 0.96},
        ...                       "nucleus": {"dice": 0.81, "iou": 0.68}})
    """
    if not isinstance(per_class, Mapping) or not per_class:
        raise ValueError("per_class must be a non-empty dict: class name -> {metric: value}.")
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    if not metrics:
        raise ValueError("metrics is empty: name at least one metric, e.g. ('dice',).")
    names = [str(k) for k in per_class]
    values = np.array(
        [[float(dict(v).get(m, math.nan)) for m in metrics] for v in per_class.values()],
        np.float64,
    )
    fig, ax = plt.subplots(
        figsize=(max(4.0, 1.0 + 0.5 * len(names) * len(metrics) + 0.4 * len(names)), 3.6),
        layout="constrained",
    )
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
    ax.set_xticks(
        x, names, rotation=30 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center"
    )
    ax.set_ylim(0, 1.1 * top)
    ax.set_ylabel("score")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title)
    return _finish(fig, save)


def plot_confusion_matrix(
    matrix, class_names=None, *, normalize: bool = True, cmap="Blues", save=None
):
    """Confusion matrix heat map (rows: truth, columns: prediction).

    ``normalize=True`` divides each row by its sum (each cell is the fraction of the truth
    class predicted as the column class; the diagonal is the recall); empty rows are ``NaN``
    and drawn blank.

    Args:
        matrix: ``(K, K)`` counts, ``matrix[t, p]`` = pixels of truth ``t`` predicted ``p``.
        class_names: ``K`` names (default ``0 .. K-1``).
        normalize: row-normalise.
        cmap: Matplotlib colour map.
        save: optional path to write the figure to.

    Returns:
        The Figure (two axes: the matrix and its colour bar). Cells are annotated when
        ``K <= 20``.

    Example:
        >>> fig = plot_confusion_matrix([[50, 2], [5, 43]], ["background", "cell"])
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
    if k <= 20:
        for t in range(k):
            for p in range(k):
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
    return _finish(fig, save)
