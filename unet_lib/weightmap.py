"""The U-Net paper's per-pixel loss weight map (Ronneberger et al. 2015, eq. 2).

``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 sigma**2))``: ``w_c`` balances the class
frequencies (:func:`class_balance_weights`); ``d1`` / ``d2`` are the Euclidean distances
between pixel centres from ``x`` to the nearest pixel of the nearest and second-nearest
*object* (a 4-neighbour has ``d = 1``). Objects are the 4-connected components of the
foreground (``label >= 1``, e.g. nuclei) or, with ``objects="background"``, of class ``0``
(cells separated by a foreground membrane, as in ISBI 2012: the paper's setting). The border
term applies only to labelled pixels outside every object (gaps, membrane) and is ``0`` with
fewer than two objects within reach. Ignored pixels (``ignore_label``) get weight ``0``, are
never part of an object and are not counted by the class balance.

Cut-off: the border term is ``0`` where ``d1 + d2 > truncate * sigma`` (an error of at most
``w0 * exp(-truncate**2 / 2)``), so each object's distance map is computed only in its
bounding box grown by that distance (``cv2.distanceTransform``, exact L2);
``truncate=None`` computes every distance on the whole image (exact, slower).

Example:
    >>> mask = np.zeros((9, 15), np.int32)
    >>> mask[2:7, 2:7] = 1; mask[2:7, 8:13] = 1          # two squares, 1-px gap at column 7
    >>> w = unet_weight_map(mask, class_weights=None)
    >>> round(float(w[4, 7]), 4)                          # 1 + 10 * exp(-(1 + 1)**2 / 50)
    10.2312
"""

import math

import cv2
import numpy as np

from unet_lib.checks import is_int, is_number

__all__ = ["class_balance_weights", "nearest_object_distances", "unet_weight_map", "weight_maps"]

_OBJECTS = ("foreground", "background")


def _as_labels(label_map, *, ndim: int | None = 2) -> np.ndarray:
    """``label_map`` as an int64 array; ``(H, W, 1)`` is squeezed to ``(H, W)``."""
    arr = np.asarray(label_map)
    if ndim == 2 and arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(
            f"label_map must be an integer label map of shape (H, W) or (H, W, 1), "
            f"got shape {arr.shape}."
        )
    if arr.dtype == bool or np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.int64, copy=False)
    floating = np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr))
    if floating and np.array_equal(arr, np.round(arr)):
        return arr.astype(np.int64)
    raise ValueError(
        f"label_map must hold integer class indices (dtype {arr.dtype} with non-integer values); "
        "pass a label map (argmax of the probabilities), not probabilities."
    )


def _check_ignore(labels: np.ndarray, ignore_label) -> np.ndarray:
    """The mask of labelled (not ignored) pixels; other negative values are an error."""
    if ignore_label is not None and not is_int(ignore_label):
        raise ValueError(f"ignore_label must be an int or None, got {ignore_label!r}.")
    valid = np.ones(labels.shape, bool) if ignore_label is None else labels != ignore_label
    if np.any(labels[valid] < 0):
        raise ValueError(
            f"label_map holds the negative value {int(labels[valid].min())} which is not "
            f"ignore_label={ignore_label}: labels must be 0..K-1, ignored pixels ignore_label."
        )
    return valid


def _check_positive(value, name: str, *, allow_zero: bool = False) -> float:
    if not (is_number(value) and (value >= 0 if allow_zero else value > 0)):
        need = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {need}, got {value!r}.")
    return float(value)


def class_balance_weights(label_map, num_classes: int | None = None, *, ignore_label=-1):
    """Class-frequency balancing weights ``w_c = N / (K_p * n_c)`` (the map's first term).

    ``n_c`` is the number of pixels of class ``c``, ``N`` the number of labelled (not ignored)
    pixels and ``K_p`` the number of classes present: the mean weight over the labelled pixels
    is exactly 1, and absent classes get 0. ``label_map`` may have any shape (a stack
    ``(N, H, W)`` balances a dataset); ``num_classes`` is the model's output channels (``1`` =
    binary, ``K = 2``; ``None``: ``K = max(label) + 1``). Returns ``(K,)`` float32 weights.

    Example:
        >>> class_balance_weights(np.array([[0, 0, 0, 0], [0, 0, 1, 1]]))  # 8/(2*6), 8/(2*2)
        array([0.6666667, 2.       ], dtype=float32)
    """
    labels = _as_labels(label_map, ndim=None)
    values = labels[_check_ignore(labels, ignore_label)]
    if num_classes is not None and (not is_int(num_classes) or num_classes < 1):
        raise ValueError(f"num_classes must be an int >= 1 (1 = binary), got {num_classes!r}.")
    top = int(values.max()) if values.size else 0
    k = top + 1 if num_classes is None else max(2, int(num_classes))
    if top >= k:
        raise ValueError(
            f"label_map holds class {top} but num_classes={num_classes} allows labels "
            f"0..{k - 1}: raise num_classes or fix the labels."
        )
    counts = np.bincount(values, minlength=k).astype(np.float64)
    present = counts > 0
    weights = np.zeros(k, np.float64)
    if present.any():
        weights[present] = values.size / (present.sum() * counts[present])
    return weights.astype(np.float32)


def nearest_object_distances(object_mask, *, max_distance: float | None = None, connectivity=4):
    """Distances from every pixel to its nearest and second-nearest object.

    Objects are the connected components (``connectivity`` 4 or 8) of ``object_mask``
    ``(H, W)``; the distance to an object is ``0`` inside it and ``1`` for a 4-neighbour.
    Returns ``(d1, d2)``, two ``(H, W)`` float32 arrays with ``d1 <= d2``: ``inf`` where there
    is no (second) object within ``max_distance`` (``None``: no limit), which lets each
    object's distance map be computed only in its bounding box grown by ``max_distance``.

    Example:
        >>> m = np.zeros((1, 5), bool); m[0, 0] = m[0, 4] = True
        >>> d1, d2 = nearest_object_distances(m)
        >>> float(d1[0, 2]), float(d2[0, 2])
        (2.0, 2.0)
    """
    mask = np.asarray(object_mask)
    if mask.ndim != 2:
        raise ValueError(f"object_mask must have shape (H, W), got {mask.shape}.")
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}.")
    if max_distance is not None:
        max_distance = _check_positive(max_distance, "max_distance")
    (h, w), inf = mask.shape, np.float32(np.inf)
    d1, d2 = np.full((h, w), inf), np.full((h, w), inf)
    n, comp, stats, _ = cv2.connectedComponentsWithStats(
        (mask != 0).astype(np.uint8), connectivity=connectivity, ltype=cv2.CV_32S
    )
    pad = max(h, w) if max_distance is None else math.ceil(max_distance)
    for i in range(1, n):
        x, y, bw, bh = (int(v) for v in stats[i, :4])
        y0, y1 = max(0, y - pad), min(h, y + bh + pad)
        x0, x1 = max(0, x - pad), min(w, x + bw + pad)
        outside = (comp[y0:y1, x0:x1] != i).astype(np.uint8)  # 0 on the object
        dist = cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        if max_distance is not None:
            dist[dist > max_distance] = np.inf
        a, b = d1[y0:y1, x0:x1], d2[y0:y1, x0:x1]
        np.minimum(b, np.maximum(a, dist), out=b)  # uses the old d1: new second smallest
        np.minimum(a, dist, out=a)
    return d1, d2


def _class_term(labels, valid, class_weights, ignore_label) -> np.ndarray:
    top = int(labels[valid].max()) if valid.any() else 0
    if isinstance(class_weights, str) and class_weights == "balanced":
        table = class_balance_weights(labels, ignore_label=ignore_label).astype(np.float64)
    elif class_weights is None:
        table = np.ones(top + 1, np.float64)
    else:
        table = np.asarray(class_weights, np.float64) if not isinstance(class_weights, str) else 0
        if np.ndim(table) != 1 or not np.all(np.isfinite(table)) or np.any(table < 0):
            raise ValueError(
                "class_weights must be 'balanced', None or a 1-D sequence of finite weights "
                f">= 0, one per class; got {class_weights!r}."
            )
        if table.size <= top:
            raise ValueError(
                f"class_weights has {table.size} entries but the label map holds class {top}: "
                "give one weight per class 0..K-1."
            )
    out = np.zeros(labels.shape, np.float64)
    out[valid] = table[labels[valid]]
    return out


def unet_weight_map(label_map, *, w0: float = 10.0, sigma: float = 5.0, class_weights="balanced",
                    objects: str = "foreground", ignore_label=-1, truncate: float | None = 6.0,
                    connectivity: int = 4) -> np.ndarray:  # fmt: skip
    """The U-Net loss weight map ``w = w_c + w0 * exp(-(d1 + d2)**2 / (2 sigma**2))``.

    ``label_map`` is ``(H, W)`` / ``(H, W, 1)``; ``w0 >= 0`` is the border term's height (0
    disables it), ``sigma > 0`` its width in pixels and ``truncate`` its cut-off in units of
    ``sigma``. ``class_weights``: ``"balanced"`` (:func:`class_balance_weights` of this map),
    ``None`` (``w_c = 1``) or one weight per class (e.g. balanced over a dataset). The objects
    (4- or 8-``connectivity``) and the cut-off are those of the module docstring. Returns the
    ``(H, W)`` float32 map (0 on ignored pixels).

    Example:
        >>> membrane = np.zeros((7, 11), np.int32); membrane[:, 5] = 1   # two cells
        >>> w = unet_weight_map(membrane, objects="background", class_weights=None)
        >>> round(float(w[3, 5]), 4), float(w[3, 0])    # 1 + 10 * exp(-4 / 50), 1
        (10.2312, 1.0)
    """
    labels = _as_labels(label_map)
    w0 = _check_positive(w0, "w0", allow_zero=True)
    sigma = _check_positive(sigma, "sigma")
    cutoff = None if truncate is None else sigma * _check_positive(truncate, "truncate")
    if objects not in _OBJECTS:
        raise ValueError(f"objects must be one of {_OBJECTS}, got {objects!r}.")
    valid = _check_ignore(labels, ignore_label)
    weights = _class_term(labels, valid, class_weights, ignore_label)
    if w0 > 0:
        is_object = valid & ((labels >= 1) if objects == "foreground" else (labels == 0))
        d1, d2 = nearest_object_distances(is_object, max_distance=cutoff, connectivity=connectivity)
        total = d1.astype(np.float64) + d2
        term = w0 * np.exp(-(total**2) / (2.0 * sigma**2))
        if cutoff is not None:
            term[total > cutoff] = 0.0
        gaps = valid & ~is_object
        weights[gaps] += term[gaps]
    return weights.astype(np.float32)


def weight_maps(label_maps, **kwargs):
    """:func:`unet_weight_map` (``**kwargs``) of each of ``label_maps``.

    ``label_maps`` is an iterable of ``(H, W)`` / ``(H, W, 1)`` maps (sizes may differ; gives a
    list) or an array ``(N, H, W)`` / ``(N, H, W, 1)`` (gives an ``(N, H, W)`` array).
    ``class_weights="balanced"`` balances each map on its own; for dataset-wide balancing pass
    ``class_weights=class_balance_weights(np.stack(label_maps))``.

    Example:
        >>> maps = weight_maps([np.zeros((8, 8), int), np.eye(6, dtype=int)], sigma=3.0)
        >>> [m.shape for m in maps]
        [(8, 8), (6, 6)]
    """
    if isinstance(label_maps, np.ndarray):
        if label_maps.ndim not in (3, 4):
            shape = label_maps.shape
            raise ValueError(f"label_maps must be (N, H, W) or (N, H, W, 1), got shape {shape}.")
        out = [unet_weight_map(m, **kwargs) for m in label_maps]
        return np.stack(out) if out else np.zeros((0, *label_maps.shape[1:3]), np.float32)
    return [unet_weight_map(m, **kwargs) for m in label_maps]
