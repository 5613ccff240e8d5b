"""NumPy padding shared by the data pipeline and inference: mirror padding without
repeating the edge (``np.pad(mode="reflect")``, OpenCV's ``BORDER_REFLECT_101``) everywhere.
"""

import numpy as np


def reflect_indices(index: np.ndarray, n: int) -> np.ndarray:
    """Mirror indices into ``0..n-1`` (for tiles that reach past the image border).

    Example:
        >>> reflect_indices(np.arange(-2, 5), 4).tolist()
        [2, 1, 0, 1, 2, 3, 2]
    """
    if n == 1:
        return np.zeros_like(index)
    index = np.abs(index) % (2 * n - 2)
    return np.where(index >= n, 2 * n - 2 - index, index)


def as_pair(value, name: str) -> tuple[int, int]:
    """``value`` as ``(height, width)``: an int is used for both; each must be a whole number
    >= 1 (not a bool). ``name`` names the argument in the error."""
    pair = (value, value) if isinstance(value, int | np.integer) else tuple(value)
    if len(pair) != 2 or any(isinstance(v, bool) or int(v) != v or v < 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or (height, width), got {value!r}.")
    return int(pair[0]), int(pair[1])


def pad_to_multiple_np(array: np.ndarray, multiple, mode: str = "reflect", constant_value=0):
    """Pads the spatial axes (``(0, 1)``, or ``(1, 2)`` for a ``(B, H, W, C)`` batch) up to a
    multiple of ``multiple`` (an int such as ``2**depth``, or ``(my, mx)``), split evenly (the
    extra pixel after); ``mode``: ``"reflect"``, ``"edge"`` or ``"constant"`` (``IGNORE_LABEL``
    for masks). Returns ``(padded, (top, left, height, width))``; :func:`unpad_np` crops back.

    Example:
        >>> padded, box = pad_to_multiple_np(np.zeros((360, 480, 1)), 16)
        >>> padded.shape, box
        ((368, 480, 1), (4, 0, 360, 480))
    """
    multiple = as_pair(multiple, "multiple")
    if mode not in ("reflect", "edge", "constant"):
        raise ValueError(f"mode must be 'reflect', 'edge' or 'constant', got {mode!r}")
    array = np.asarray(array)
    axis = 1 if array.ndim == 4 else 0
    widths = [(0, 0)] * array.ndim
    for offset, m in enumerate(multiple):
        total = (-array.shape[axis + offset]) % m
        widths[axis + offset] = (total // 2, total - total // 2)
    extra = {"constant_values": constant_value} if mode == "constant" else {}
    padded = np.pad(array, widths, mode=mode, **extra)
    return padded, (widths[axis][0], widths[axis + 1][0], *array.shape[axis : axis + 2])


def unpad_np(array: np.ndarray, box) -> np.ndarray:
    """Crops ``box = (top, left, height, width)`` from the spatial axes (as in
    :func:`pad_to_multiple_np`), e.g. a prediction made on a padded image."""
    top, left, h, w = box
    if np.ndim(array) == 4:
        return array[:, top : top + h, left : left + w]
    return array[top : top + h, left : left + w]
