"""Label maps as pictures: the class palette, colour-coded label maps, overlays (NumPy and
OpenCV only, so inference draws its overlays with it too). Label maps are ``(H, W)`` or
``(H, W, 1)`` integers, ignored pixels ``< 0``.
"""

import colorsys

import cv2
import numpy as np

__all__ = ["ERROR_COLORS", "IGNORE_COLOR", "TRUTH_OUTLINE_COLOR", "error_map", "label_colors"]
__all__ += ["overlay"]

#: Colour of ignored pixels (label < 0): neutral mid grey.
IGNORE_COLOR = (128, 128, 128)
#: Colour of the truth outline in prediction-vs-truth overlays.
TRUTH_OUTLINE_COLOR = (255, 255, 255)

# Class 0 (background) black, the Okabe-Ito palette (orange, sky blue, bluish green,
# vermillion, blue, reddish purple, yellow), then Paul Tol's "muted" scheme.
_PALETTE = (
    (0, 0, 0), (230, 159, 0), (86, 180, 233), (0, 158, 115), (213, 94, 0), (0, 114, 178),
    (204, 121, 167), (240, 228, 66), (204, 102, 119), (51, 34, 136), (221, 204, 119),
    (17, 119, 51), (136, 204, 238), (68, 170, 153), (153, 153, 51), (136, 34, 85), (170, 68, 153),
)  # fmt: skip
#: :func:`error_map`'s three colours (Okabe-Ito: blue, vermillion, yellow, told apart with
#: every kind of colour blindness and in grey-scale print).
ERROR_COLORS = {
    "true positive": (0, 114, 178),
    "false positive": (213, 94, 0),
    "false negative": (240, 228, 66),
}
#: The ways :func:`overlay` draws a label map.
OVERLAY_MODES = ("tint", "outline")


def label_colors(num_label_classes: int) -> np.ndarray:
    """A fixed colour-blind-friendly palette: ``(K, 3)`` uint8, one RGB colour per label class
    (``K = 2`` for a binary model): class 0 (background) black, classes 1-7 the Okabe-Ito
    palette, then Paul Tol's muted scheme, then golden-ratio spaced hues.
    """
    if isinstance(num_label_classes, bool) or not isinstance(num_label_classes, int | np.integer):
        raise ValueError(f"num_label_classes must be an int, got {num_label_classes!r}.")
    if num_label_classes < 0:
        raise ValueError(f"num_label_classes must be >= 0, got {num_label_classes}.")
    colors = list(_PALETTE[:num_label_classes])
    for i in range(len(colors), num_label_classes):
        rgb = colorsys.hsv_to_rgb((0.11 + i * 0.618033988749895) % 1.0, 0.65, 0.9)
        colors.append(tuple(round(255 * v) for v in rgb))
    return np.asarray(colors, np.uint8).reshape(num_label_classes, 3)


def to_rgb(image, name: str = "image") -> np.ndarray:
    """Display version of an image, ``(H, W, 3)`` uint8: grey -> grey RGB, 2 channels ->
    ``(c0, c1, 0)``, more -> the first three. Floats are clipped to ``[0, 1]`` (min-max
    rescaled when they leave it); unsigned integers are scaled by their dtype's maximum.
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
    if out.shape[-1] == 2:
        return np.concatenate([out, np.zeros_like(out[..., :1])], axis=-1)
    return np.ascontiguousarray(out[..., :3])


def to_labels(labels, name: str = "labels") -> np.ndarray:
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


def prediction_labels(pred, name: str = "prediction") -> np.ndarray:
    """Label map from a label map or probabilities (``(H, W, K)`` argmax, binary > 0.5)."""
    arr = np.asarray(pred)
    if arr.ndim == 3 and arr.shape[-1] > 1:
        return np.argmax(arr, axis=-1).astype(np.int32)
    if arr.ndim == 3:
        arr = arr[..., 0]
    if np.issubdtype(arr.dtype, np.floating) and not np.array_equal(arr, np.round(arr)):
        return (arr > 0.5).astype(np.int32)
    return to_labels(arr, name)


def palette_for(labels_list, colors=None) -> np.ndarray:
    """``(K, 3)`` uint8 colours for every class in ``labels_list``: ``colors``, or the default."""
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


def colorize(labels: np.ndarray, pal: np.ndarray) -> np.ndarray:
    """RGB picture of a label map: class colours, ignored pixels ``IGNORE_COLOR``."""
    out = pal[np.clip(labels, 0, None)]
    out[labels < 0] = IGNORE_COLOR
    return out


def _draw_outline(out, labels, pal, color=None, thickness: int = 1) -> None:
    """Paint each class >= 1's inner boundary in place, in its class colour (or ``color``)."""
    for c in np.unique(labels[labels >= 1]):
        region = (labels == c).astype(np.uint8)
        inner = cv2.erode(region, np.ones((3, 3), np.uint8), iterations=thickness)
        out[(region > 0) & (inner == 0)] = pal[c] if color is None else color


def _tint(out, base, where, color, alpha: float) -> None:
    """``out = (1 - alpha) * base + alpha * color`` where ``where``, in place."""
    mixed = (1 - alpha) * base[where] + alpha * np.asarray(color, np.float32)
    out[where] = np.round(mixed).astype(np.uint8)


def check_alpha(alpha) -> float:
    """``alpha`` as a float in ``[0, 1]``, else a ValueError."""
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    return float(alpha)


def overlay(
    image, labels, *, mode: str = "tint", alpha: float = 0.45, colors=None,
    ignore_color=IGNORE_COLOR, thickness: int = 1,
) -> np.ndarray:  # fmt: skip
    """Draw a label map over an image (``(H, W[, C])``, float in ``[0, 1]`` or uint8); returns
    ``(H, W, 3)`` uint8 RGB.

    ``"tint"`` mixes each labelled pixel with its class colour,
    ``out = (1 - alpha) * image + alpha * color``, and ignored pixels (``< 0``) with
    ``ignore_color`` (``None`` leaves them); ``"outline"`` paints the inner boundary of each
    class region, ``thickness`` pixels wide, in the opaque class colour. Background (class 0)
    keeps the image. ``colors``: ``(K, 3)`` RGB per class (uint8, or floats in ``[0, 1]``),
    default :func:`label_colors`.
    """
    if mode not in OVERLAY_MODES:
        raise ValueError(f"mode must be one of {OVERLAY_MODES}, got {mode!r}.")
    alpha = check_alpha(alpha)
    base = to_rgb(image)
    lab = to_labels(labels)
    if lab.shape != base.shape[:2]:
        raise ValueError(f"labels shape {lab.shape} does not match image shape {base.shape[:2]}.")
    pal = palette_for([lab], colors)
    out = base.copy()
    if mode == "tint":
        fg, base32 = lab >= 1, base.astype(np.float32)
        _tint(out, base32, fg, pal[lab[fg]], alpha)
        if ignore_color is not None:
            _tint(out, base32, lab < 0, ignore_color, alpha)
    else:
        _draw_outline(out, lab, pal, thickness=thickness)
    return out


def compare(image, truth, pred, pal, mode: str = "tint", alpha: float = 0.45) -> np.ndarray:
    """Prediction drawn with ``mode``, truth outlined in ``TRUTH_OUTLINE_COLOR`` on top."""
    out = overlay(image, pred, mode=mode, alpha=alpha, colors=pal)
    _draw_outline(out, truth, pal, color=TRUTH_OUTLINE_COLOR)
    return out


def error_map(image, truth, pred, *, alpha: float = 0.7) -> np.ndarray:
    """Where a prediction is right and wrong, painted over the image in dim grey: ``(H, W, 3)``
    uint8 RGB in :data:`ERROR_COLORS`.

    True positive: a foreground pixel (class >= 1) predicted as its class. False positive: a
    pixel predicted as a foreground class it is not (background, or another class). False
    negative: a foreground pixel predicted as background. Correct background and ignored
    pixels (truth ``< 0``) keep the grey image; ``alpha`` is the colours' weight.

    Example:
        >>> error_map(np.zeros((1, 3)), np.array([[1, 0, 1]]), np.array([[1, 1, 0]]))[0].tolist()
        [[0, 80, 125], [149, 66, 0], [168, 160, 46]]
    """
    alpha = check_alpha(alpha)
    img, t, p = to_rgb(image), to_labels(truth, "truth"), prediction_labels(pred)
    if not t.shape == p.shape == img.shape[:2]:
        raise ValueError(f"image {img.shape[:2]}, truth {t.shape} and prediction {p.shape} "
                         "must have one size.")  # fmt: skip
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32) * 0.6
    base = np.repeat(grey[..., None], 3, axis=-1)
    out = np.round(base).astype(np.uint8)
    scored = t >= 0
    where = (
        scored & (t >= 1) & (p == t),
        scored & (p >= 1) & (p != t),
        scored & (t >= 1) & (p == 0),
    )
    for mask, color in zip(where, ERROR_COLORS.values(), strict=True):
        _tint(out, base, mask, color, alpha)
    return out
