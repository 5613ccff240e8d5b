"""NumPy padding shared by the data pipeline and inference (no TensorFlow).

Mirror padding without repeating the edge (``np.pad(mode="reflect")``, OpenCV's
``BORDER_REFLECT_101``) is the convention everywhere: whole arrays are padded with
:func:`pad_to_multiple_np`, tiles that reach past an image's border read through
:func:`reflect_indices`.
"""

from __future__ import annotations

import numpy as np


def reflect_indices(index: np.ndarray, n: int) -> np.ndarray:
    """Mirror indices into ``0..n-1`` (reflect without repeating the edge, like np.pad).

    Tiled inference reads tiles that reach past the image border through these indices, so
    a huge image is never padded as a whole.

    Example:
        >>> reflect_indices(np.arange(-2, 5), 4).tolist()
        [2, 1, 0, 1, 2, 3, 2]
    """
    if n == 1:
        return np.zeros_like(index)
    index = np.abs(index) % (2 * n - 2)
    return np.where(index >= n, 2 * n - 2 - index, index)


def as_pair(value, name: str) -> tuple[int, int]:
    """``value`` as ``(height, width)``: an int is used for both; each must be >= 1."""
    pair = (value, value) if isinstance(value, int | np.integer) else tuple(value)
    if len(pair) != 2 or any(int(v) < 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or (height, width), got {value!r}")
    return int(pair[0]), int(pair[1])


def padding_widths(size: int, multiple: int) -> tuple[int, int]:
    """``(before, after)`` that bring ``size`` up to a multiple, split evenly."""
    total = (-size) % multiple
    return total // 2, total - total // 2


def pad_to_multiple_np(array: np.ndarray, multiple, mode: str = "reflect", constant_value=0):
    """Pads the spatial axes of a NumPy array up to a multiple of ``multiple``.

    Spatial axes are ``(0, 1)`` for ``(H, W)`` / ``(H, W, C)`` arrays and ``(1, 2)`` for
    batches ``(B, H, W, C)``. The padding is split evenly (the extra pixel goes after).

    Args:
        array: the array to pad.
        multiple: an int (e.g. ``2**depth``) or ``(my, mx)``.
        mode: ``"reflect"`` (mirror without repeating the edge, like ``cv2.BORDER_REFLECT_101``),
            ``"edge"`` or ``"constant"`` (with ``constant_value``; ``IGNORE_LABEL`` for masks).

    Returns:
        ``(padded, (top, left, height, width))``; the box crops the original back out
        (:func:`unpad_np`).

    Example:
        >>> padded, box = pad_to_multiple_np(np.zeros((360, 480, 1)), 16)
        >>> padded.shape, box
        ((368, 480, 1), (4, 0, 360, 480))
    """
    my, mx = as_pair(multiple, "multiple")
    array = np.asarray(array)
    axis = 1 if array.ndim == 4 else 0
    h, w = array.shape[axis], array.shape[axis + 1]
    (top, bottom), (left, right) = padding_widths(h, my), padding_widths(w, mx)
    widths = [(0, 0)] * array.ndim
    widths[axis], widths[axis + 1] = (top, bottom), (left, right)
    if mode == "constant":
        padded = np.pad(array, widths, mode="constant", constant_values=constant_value)
    elif mode in ("reflect", "edge"):
        padded = np.pad(array, widths, mode=mode)
    else:
        raise ValueError(f"mode must be 'reflect', 'edge' or 'constant', got {mode!r}")
    return padded, (top, left, h, w)


def unpad_np(array: np.ndarray, box) -> np.ndarray:
    """Crops ``box = (top, left, height, width)`` from the spatial axes (as in
    :func:`pad_to_multiple_np`), e.g. a prediction made on a padded image."""
    top, left, h, w = box
    if np.ndim(array) == 4:
        return array[:, top : top + h, left : left + w]
    return array[top : top + h, left : left + w]
