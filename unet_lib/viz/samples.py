"""Figures for segmentation work: overlays, sample grids, training curves, per-class scores.

Every ``plot_*`` function returns the Matplotlib ``Figure`` (a pyplot figure: it shows in
notebooks and with ``plt.show()``; in loops close it with ``plt.close(fig)``) and takes
``save=None``: a path where the figure is written atomically (to a temporary file in the same
folder, then ``os.replace``; see :func:`save_figure`) at ``SAVE_DPI`` dots per inch; the
format follows the suffix.

Inputs follow the tensor conventions of ARCHITECTURE.md: images ``(H, W, C)`` float in
``[0, 1]`` (``(H, W)`` grey and ``uint8`` also accepted), label maps ``(H, W)`` or
``(H, W, 1)`` integers ``0 .. K-1`` with ignored pixels ``-1`` (every negative value is drawn
as ignored). Colours come from :func:`label_colors` (Okabe-Ito, colour-blind friendly).

The image figures (``plot_samples``, ``plot_augmentations``, ``plot_prediction``) are
defined here; the rest lives in its own module and is re-exported, so every name stays
importable from ``unet_lib.viz``: colours and overlays in :mod:`.palette`, curves and
scores (``plot_history``, ``plot_per_class``, ``plot_confusion_matrix``) in
:mod:`unet_lib.viz.charts`, and :func:`save_figure` in :mod:`unet_lib.viz.figures`.

This module and the ones it uses import numpy, OpenCV and Matplotlib only (no TensorFlow, no
Keras).

Example:
    >>> fig = plot_samples(images, masks, predictions, scores=dice, rank="worst", save="w.png")
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

from unet_lib.viz.charts import plot_confusion_matrix, plot_history, plot_per_class
from unet_lib.viz.figures import SAVE_DPI, _finish, save_figure
from unet_lib.viz.palette import (
    _OVERLAY_MODES,
    IGNORE_COLOR,
    _check_alpha,
    _colorize,
    _compare,
    _palette,
    _prediction_labels,
    _to_labels,
    _to_rgb,
    label_colors,
    overlay,
)
from unet_lib.viz.palette import TRUTH_OUTLINE_COLOR as TRUTH_OUTLINE_COLOR

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

_RANKS = ("none", "worst", "best")


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
