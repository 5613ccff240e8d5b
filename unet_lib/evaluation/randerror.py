"""Rand error: the ISBI 2012 foreground-restricted Rand error of a binary segmentation.

A binary label map is cut into segments, the 4-connected components of class 0 (with a
boundary foreground such as membranes, the cells between them): :func:`cell_segments`.
:func:`adapted_rand` compares two segmentations with the SNEMI3D / ISBI 2012 adapted Rand
formula, and :func:`rand_error` does both for a truth / prediction pair, the score the U-Net
paper reports on ISBI 2012. Ignored truth pixels (``IGNORE_LABEL``) are cut out of both
segmentations. NumPy and OpenCV only (no Keras).

Example:
    >>> rand_error(np.array([[0, 0, 1, 0, 0]]), np.array([[0, 0, 0, 0, 0]]))  # merge
    0.33333333333333337
"""

from __future__ import annotations

import cv2
import numpy as np

from unet_lib import IGNORE_LABEL

__all__ = ["adapted_rand", "cell_segments", "rand_error"]

_NAN = float("nan")


def cell_segments(labels: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Segments of a binary label map: the 4-connected components of class 0.

    With a boundary foreground (membranes) class 0 is the cells, so each segment is a cell.

    Args:
        labels: ``(H, W)`` integer label map (0 = background/cells).
        valid: Optional ``(H, W)`` bool mask; pixels outside it belong to no segment.

    Returns:
        ``int32`` ``(H, W)`` segment ids ``1 .. n``; 0 where the label is not 0 (or invalid).

    Example:
        >>> cell_segments(np.array([[0, 1, 0]])).tolist()
        [[1, 0, 2]]
    """
    cells = np.asarray(labels) == 0
    if valid is not None:
        cells &= np.asarray(valid, bool)
    _, segments = cv2.connectedComponents(cells.astype(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    return segments


def _counts(ids: np.ndarray) -> np.ndarray:
    """Occurrence count of every distinct id (bincount when ids are compact)."""
    if ids.size == 0:
        return np.zeros(0, np.float64)
    if int(ids.max()) <= 4 * ids.size + 1024:
        counts = np.bincount(ids)
        return counts[counts > 0].astype(np.float64)
    return np.unique(ids, return_counts=True)[1].astype(np.float64)


def segment_overlaps(truth_segments: np.ndarray, pred_segments: np.ndarray):
    """Contingency counts of two segmentations over the scored pixels (truth segment >= 1).

    The shared core of :func:`adapted_rand` and
    :func:`unet_lib.evaluation.challenge.rand_pair_counts`.

    Args:
        truth_segments: Non-negative integer segment ids, any shape (0 = not scored).
        pred_segments: Non-negative integer segment ids, same shape (0 = boundary).

    Returns:
        ``(truth_sizes, pred_sizes, overlap_sizes, boundary)``: float64 arrays of the sizes of
        the true segments ``a_i``, of the predicted segments ``j >= 1`` inside them ``b_j``,
        and of their non-empty overlaps ``p_ij`` (``j >= 1``); and ``c``, the number of scored
        pixels that are predicted boundary. Empty arrays when no pixel is scored.

    Example:
        >>> segment_overlaps(np.array([1, 1, 2, 0]), np.array([1, 0, 1, 1]))[2].tolist()
        [1.0, 1.0]
    """
    a = np.asarray(truth_segments)
    b = np.asarray(pred_segments)
    if a.shape != b.shape:
        raise ValueError(f"segmentations differ in shape: {a.shape} (truth) vs {b.shape}.")
    for name, x in (("truth_segments", a), ("pred_segments", b)):
        if x.dtype.kind not in "uib" or (x.size and x.min() < 0):
            raise ValueError(f"{name} must hold non-negative integer segment ids.")
    scored = a.ravel() > 0
    ta = a.ravel()[scored].astype(np.int64)
    pb = b.ravel()[scored].astype(np.int64)
    if ta.size == 0:
        empty = np.zeros(0, np.float64)
        return empty, empty, empty, 0.0
    inside = pb > 0
    joint = ta[inside] * (int(pb.max()) + 1) + pb[inside]
    boundary = float(np.count_nonzero(~inside))
    return _counts(ta), _counts(pb[inside]), _counts(joint), boundary


def adapted_rand(
    truth_segments: np.ndarray, pred_segments: np.ndarray
) -> tuple[float, float, float]:
    """Adapted Rand error of a segmentation (the SNEMI3D / ISBI 2012 ``adapted_rand``).

    Truth segment 0 is excluded (boundary or ignored pixels): only pixels with a truth segment
    ``i >= 1`` are scored. Predicted segment 0 (predicted boundary) is a set of singletons.
    With contingency counts ``p_ij`` over those pixels, ``a_i = sum_j p_ij`` (all ``j``),
    ``b_j = sum_i p_ij`` (``j >= 1``), ``c = sum_i p_i0`` and ``n`` the number of pixels::

        sumA  = sum_i a_i**2
        sumB  = sum_{j>=1} b_j**2 + c / n
        sumAB = sum_i sum_{j>=1} p_ij**2 + c / n
        precision = sumAB / sumB,  recall = sumAB / sumA
        error = 1 - 2 precision recall / (precision + recall)

    Args:
        truth_segments: Non-negative integer segment ids, any shape (0 = not scored).
        pred_segments: Non-negative integer segment ids, same shape (0 = boundary).

    Returns:
        ``(error, precision, recall)``; all NaN when no pixel has a truth segment.

    Example:
        >>> adapted_rand(np.array([[1, 1, 0, 2, 2]]), np.array([[1, 1, 1, 1, 1]]))[0]  # merge
        0.33333333333333337
    """
    truth_sizes, pred_sizes, overlap_sizes, boundary = segment_overlaps(
        truth_segments, pred_segments
    )
    if truth_sizes.size == 0:
        return _NAN, _NAN, _NAN
    c_over_n = boundary / np.asarray(truth_segments).size
    sum_a = float(np.sum(truth_sizes**2))
    sum_b = float(np.sum(pred_sizes**2)) + c_over_n
    sum_ab = float(np.sum(overlap_sizes**2)) + c_over_n
    precision, recall = sum_ab / sum_b, sum_ab / sum_a
    return 1.0 - 2.0 * precision * recall / (precision + recall), precision, recall


def rand_error(truth: np.ndarray, prediction: np.ndarray) -> float:
    """Foreground-restricted Rand error of a binary prediction (ISBI 2012, U-Net paper).

    Segments are the 4-connected components of class 0 (the cells between membranes) in the
    truth and in the prediction (:func:`cell_segments`); :func:`adapted_rand` scores them on
    the pixels that are class 0 in the truth. Ignored truth pixels (``IGNORE_LABEL``) are cut
    out of both segmentations, so the prediction there changes nothing.

    Args:
        truth: ``(H, W)`` label map, 0 / 1, ``IGNORE_LABEL`` for ignored pixels.
        prediction: ``(H, W)`` predicted label map, 0 / 1.

    Returns:
        The error in ``[0, 1]`` (0 = perfect); NaN when the truth has no class-0 pixel.

    Example:
        >>> rand_error(np.array([[0, 0, 1, 0, 0]]), np.array([[0, 0, 1, 0, 0]]))
        0.0
    """
    truth, prediction = np.asarray(truth), np.asarray(prediction)
    if truth.shape != prediction.shape:
        raise ValueError(f"truth {truth.shape} and prediction {prediction.shape} differ in shape.")
    valid = truth != IGNORE_LABEL
    return adapted_rand(cell_segments(truth, valid), cell_segments(prediction, valid))[0]
