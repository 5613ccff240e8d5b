"""Image figures: sample grids (image | truth | prediction | errors), augmentations, one image.

Colours come from :func:`~unet_lib.viz.palette.label_colors`; ignored pixels (``< 0``) are grey.
"""

import math

import numpy as np
from matplotlib.patches import Patch

from unet_lib.viz import palette
from unet_lib.viz.figures import finish, grid

__all__ = ["plot_augmentations", "plot_prediction", "plot_samples"]

_RANKS = ("none", "worst", "best")


def _show(ax, picture, title=None, **kwargs):
    image = ax.imshow(picture, interpolation="nearest", **kwargs)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return image


def _legend(fig, class_names, colors, errors: bool = False) -> None:
    """Class colours (with ``class_names``) and, with ``errors``, the error-map colours."""
    pairs = [(colors[i], str(name)) for i, name in enumerate(class_names or []) if i < len(colors)]
    if errors:
        pairs += [(np.asarray(color), name) for name, color in palette.ERROR_COLORS.items()]
    if pairs:
        handles = [Patch(facecolor=c / 255.0, edgecolor="0.5", label=n) for c, n in pairs]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6))


def _colors(label_maps, class_names) -> np.ndarray:
    """Colours for the classes in ``label_maps``, and for every named class."""
    colors = palette.palette_for(label_maps)
    if class_names is not None and len(class_names) > len(colors):
        colors = palette.label_colors(len(class_names))
    return colors


def _short(name: str, most: int = 16) -> str:
    """``name``, or its start and end around an ellipsis when longer than ``most``."""
    return name if len(name) <= most else f"{name[: most - 5]}…{name[-4:]}"


def _as_list(items) -> list:
    return [] if items is None else list(np.asarray(items) if hasattr(items, "shape") else items)


def _check_samples(imgs, truths, preds, overlay_mode, rank, n) -> None:
    if not imgs:
        raise ValueError("images is empty: pass at least one image.")
    if len(truths) != len(imgs) or (preds is not None and len(preds) != len(imgs)):
        raise ValueError(
            f"got {len(imgs)} images, {len(truths)} masks"
            + (f" and {len(preds)} predictions" if preds is not None else "")
            + ": give one of each per sample."
        )
    if overlay_mode not in (modes := palette.OVERLAY_MODES):
        raise ValueError(f"overlay_mode must be one of {modes}, got {overlay_mode!r}.")
    if rank not in _RANKS:
        raise ValueError(f"rank must be one of {_RANKS}, got {rank!r}.")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}.")


def _ranked(scores, rank: str, n: int, count: int):
    """``(scores as an array or None, the indices of the rows to show)``; NaN scores last."""
    score_arr = None
    if scores is not None:
        score_arr = np.asarray(scores, np.float64).reshape(-1)
        if score_arr.size != count:
            raise ValueError(f"scores has {score_arr.size} values for {count} images.")
    order = np.arange(count)
    if rank != "none":
        if score_arr is None:
            raise ValueError(f"rank={rank!r} needs scores: pass per-image scores.")
        key = score_arr if rank == "worst" else -score_arr
        order = np.argsort(np.where(np.isnan(key), np.inf, key), kind="stable")
    return score_arr, [int(i) for i in order[: min(n, count)]]


def _sample_pictures(i, image, truth, pred, colors, overlay_mode, alpha) -> list:
    """``(picture, title)`` per column of sample ``i``'s row (titles filled in by the caller)."""
    img = palette.to_rgb(image, f"images[{i}]")
    if truth.shape != img.shape[:2]:
        raise ValueError(f"masks[{i}] shape {truth.shape} != image shape {img.shape[:2]}.")
    pictures = [(img, None), (palette.colorize(truth, colors), "truth")]
    if pred is None:
        drawn = palette.overlay(img, truth, mode=overlay_mode, alpha=alpha, colors=colors)
        return [*pictures, (drawn, "overlay")]
    if pred.shape != truth.shape:
        raise ValueError(f"predictions[{i}] shape {pred.shape} != mask {truth.shape}.")
    pictures.append((palette.colorize(pred, colors), "prediction"))
    return [*pictures, (palette.error_map(img, truth, pred), "errors")]


def plot_samples(
    images, masks, predictions=None, *, class_names=None, n: int = 4, overlay_mode="tint",
    scores=None, rank: str = "none", alpha: float = 0.45, names=None, title=None, save=None,
):  # fmt: skip
    """A grid with one row per sample (``n`` rows at most): image | truth | prediction | errors.

    Without ``predictions``: image | truth | overlay (truth drawn with ``overlay_mode``). With
    them (label maps, or probabilities: ``(H, W, K)`` argmax, ``(H, W, 1)`` ``> 0.5``) the
    last column is the :func:`~unet_lib.viz.palette.error_map`: true positives, false
    positives and false negatives in three colour-blind-safe colours, in the legend.
    ``images``: ``(N, H, W, C)`` or a sequence; ``masks``: ``N`` label maps; ``class_names``
    add the classes to the legend. Rows are titled by ``names`` (e.g. file stems; default
    ``#index``) and, with per-image ``scores``, the score (``Dice 0.812``); ``rank``:
    ``"none"`` (input order), ``"worst"`` (lowest first) or ``"best"``, NaN last; ``title``:
    the figure's title (e.g. the mean Dice).
    """
    imgs, truths = _as_list(images), _as_list(masks)
    preds = _as_list(predictions) if predictions is not None else None
    _check_samples(imgs, truths, preds, overlay_mode, rank, n)
    if names is not None and len(names) != len(imgs):
        raise ValueError(f"got {len(names)} names for {len(imgs)} images: one per image.")
    alpha = palette.check_alpha(alpha)
    score_arr, order = _ranked(scores, rank, n, len(imgs))
    truth_maps = {i: palette.to_labels(truths[i], f"masks[{i}]") for i in order}
    pred_maps = {}
    if preds is not None:
        pred_maps = {i: palette.prediction_labels(preds[i], f"predictions[{i}]") for i in order}
    colors = _colors([*truth_maps.values(), *pred_maps.values()], class_names)
    ncols = 4 if preds is not None else 3
    extra = (0.5 if class_names or preds is not None else 0) + (0.4 if title else 0)
    fig, axes = grid(len(order), ncols, (2.4 * ncols, 2.4 * len(order) + extra))
    for row, i in enumerate(order):
        head = f"#{i}" if names is None else _short(str(names[i]))
        if score_arr is not None:
            head += f"  Dice {score_arr[i]:.3f}" if np.isfinite(score_arr[i]) else "  Dice n/a"
        pictures = _sample_pictures(
            i, imgs[i], truth_maps[i], pred_maps.get(i), colors, overlay_mode, alpha
        )
        for col, (picture, label) in enumerate(pictures):
            _show(axes[row, col], picture, label or head)
    if title:
        fig.suptitle(title)
    _legend(fig, class_names, colors, errors=preds is not None)
    return finish(fig, save)


def plot_augmentations(pairs, *, titles=None, alpha: float = 0.45, max_cols: int = 6, save=None):
    """Augmentation previews: each (image, mask) pair as the image above its mask overlay.

    ``titles``: one per pair (default ``#0``, ``#1``, ...); ``max_cols``: pairs per row block.
    """
    pairs = list(pairs)
    if not pairs:
        raise ValueError("pairs is empty: pass at least one (image, mask) pair.")
    if titles is not None and len(titles) != len(pairs):
        raise ValueError(f"got {len(titles)} titles for {len(pairs)} pairs.")
    alpha = palette.check_alpha(alpha)
    ncols = min(len(pairs), max(1, int(max_cols)))
    blocks = math.ceil(len(pairs) / ncols)
    fig, axes = grid(2 * blocks, ncols, (2.2 * ncols, 4.4 * blocks))
    labels = [palette.to_labels(mask, f"pairs[{k}] mask") for k, (_, mask) in enumerate(pairs)]
    colors = palette.palette_for(labels)
    for k, (image, _) in enumerate(pairs):
        r, c = 2 * (k // ncols), k % ncols
        img = palette.to_rgb(image, f"pairs[{k}] image")
        if labels[k].shape != img.shape[:2]:
            raise ValueError(f"pairs[{k}]: mask {labels[k].shape} != image {img.shape[:2]}.")
        _show(axes[r, c], img, titles[k] if titles is not None else f"#{k}")
        _show(axes[r + 1, c], palette.overlay(img, labels[k], alpha=alpha, colors=colors))
    for ax in axes[-2:, len(pairs) - (blocks - 1) * ncols :].ravel():  # unused cells
        fig.delaxes(ax)
    return finish(fig, save)


def plot_prediction(
    image, probabilities_or_labels, *, truth=None, class_names=None, alpha=0.45, save=None
):
    """One (large) image with its prediction: image | overlay [| confidence + colour bar].

    ``probabilities_or_labels``: a label map ``(H, W)``, or probabilities ``(H, W, K)`` /
    ``(H, W, 1)`` / float ``(H, W)``, which add a confidence panel (the foreground or the
    top-class probability) and its colour bar. ``truth`` is outlined in white on the overlay.
    """
    alpha = palette.check_alpha(alpha)
    img = palette.to_rgb(image)
    arr = np.asarray(probabilities_or_labels)
    pred = palette.prediction_labels(arr)
    is_prob = np.issubdtype(arr.dtype, np.floating) and not np.array_equal(arr, np.round(arr))
    if pred.shape != img.shape[:2]:
        raise ValueError(f"prediction shape {pred.shape} != image shape {img.shape[:2]}.")
    truth_map = None if truth is None else palette.to_labels(truth, "truth")
    if truth_map is not None and truth_map.shape != pred.shape:
        raise ValueError(f"truth shape {truth_map.shape} != prediction shape {pred.shape}.")
    colors = _colors([pred] + ([] if truth_map is None else [truth_map]), class_names)
    h, w = pred.shape
    panels = 3 if is_prob else 2
    size = (5.0 * panels * min(w / h, 2.0) + 0.6, 5.0 + (0.5 if class_names else 0))
    fig, (axes,) = grid(1, panels, size)
    _show(axes[0], img, "image")
    if truth_map is not None:
        drawn = palette.compare(img, truth_map, pred, colors, "tint", alpha)
        _show(axes[1], drawn, "prediction vs truth")
    else:
        _show(axes[1], palette.overlay(img, pred, alpha=alpha, colors=colors), "prediction")
    if is_prob:
        probs = arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr
        conf, title = (probs, "P(foreground)") if probs.ndim == 2 else (probs.max(-1), "max P")
        shown = _show(axes[2], conf, title, vmin=0.0, vmax=1.0, cmap="magma")
        fig.colorbar(shown, ax=axes[2], shrink=0.8)
    _legend(fig, class_names, colors)
    return finish(fig, save)
