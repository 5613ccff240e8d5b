"""The ISBI 2012 foreground-restricted Rand error of a binary segmentation.

Segments are the 4-connected class-0 regions (the cells between membranes,
:func:`cell_segments`); :func:`adapted_rand` compares two segmentations with the SNEMI3D /
ISBI 2012 formula; :func:`rand_error` does both for a truth / prediction pair.
"""

import math

import cv2
import numpy as np

from unet_lib import IGNORE_LABEL

__all__ = ["adapted_rand", "cell_segments", "rand_error", "segment_overlaps"]


def cell_segments(labels: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """``int32`` ids ``1 .. n`` of the 4-connected class-0 regions (inside ``valid``), else 0.

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
    """Occurrence count of every distinct id (float64)."""
    if ids.size and int(ids.max()) > 4 * ids.size + 1024:  # sparse ids: sort, don't bincount
        return np.unique(ids, return_counts=True)[1].astype(np.float64)
    counts = np.bincount(ids)
    return counts[counts > 0].astype(np.float64)


def segment_overlaps(truth_segments: np.ndarray, pred_segments: np.ndarray):
    """Contingency counts of two segmentations: the core of both Rand errors.

    Pixels with truth segment 0 are not scored; predicted segment 0 is boundary. Returns
    ``(a, b, p, c)``: float64 sizes of the true segments ``a_i``, of the predicted segments
    ``j >= 1`` inside them ``b_j``, of their non-empty overlaps ``p_ij``, and ``c``, the
    number of scored pixels predicted boundary (empty arrays when nothing is scored).

    Example:
        >>> segment_overlaps(np.array([1, 1, 2, 0]), np.array([1, 0, 1, 1]))[2].tolist()
        [1.0, 1.0]
    """
    a, b = np.asarray(truth_segments), np.asarray(pred_segments)
    if a.shape != b.shape:
        raise ValueError(f"segmentations differ in shape: {a.shape} (truth) vs {b.shape}.")
    for name, x in (("truth_segments", a), ("pred_segments", b)):
        if x.dtype.kind not in "uib" or (x.size and x.min() < 0):
            raise ValueError(f"{name} must hold non-negative integer segment ids.")
    scored = a.ravel() > 0
    ta, pb = (x.ravel()[scored].astype(np.int64) for x in (a, b))
    if ta.size == 0:
        return *(np.zeros(0, np.float64),) * 3, 0.0
    inside = pb > 0
    joint = ta[inside] * (int(pb.max()) + 1) + pb[inside]
    boundary = float(np.count_nonzero(~inside))
    return _counts(ta), _counts(pb[inside]), _counts(joint), boundary


def adapted_rand(truth_segments, pred_segments) -> tuple[float, float, float]:
    """Adapted Rand error of a segmentation (the SNEMI3D / ISBI 2012 ``adapted_rand``).

    Predicted boundary (segment 0) counts as singletons. With :func:`segment_overlaps`
    ``a, b, p, c`` and ``n`` pixels::

        sumA = sum_i a_i**2,  sumB = sum_j b_j**2 + c/n,  sumAB = sum_ij p_ij**2 + c/n
        precision = sumAB / sumB,  recall = sumAB / sumA
        error = 1 - 2 precision recall / (precision + recall)

    Returns ``(error, precision, recall)``, all NaN when no pixel has a truth segment, e.g.::

        >>> adapted_rand(np.array([[1, 1, 0, 2, 2]]), np.array([[1, 1, 1, 1, 1]]))[0]  # merge
        0.33333333333333337
    """
    truth_sizes, pred_sizes, overlaps, boundary = segment_overlaps(truth_segments, pred_segments)
    if truth_sizes.size == 0:
        return math.nan, math.nan, math.nan
    c_over_n = boundary / np.asarray(truth_segments).size
    sum_a = float(np.sum(truth_sizes**2))
    sum_b = float(np.sum(pred_sizes**2)) + c_over_n
    sum_ab = float(np.sum(overlaps**2)) + c_over_n
    precision, recall = sum_ab / sum_b, sum_ab / sum_a
    return 1.0 - 2.0 * precision * recall / (precision + recall), precision, recall


def rand_error(truth: np.ndarray, prediction: np.ndarray) -> float:
    """Foreground-restricted Rand error of a binary prediction (ISBI 2012, U-Net paper).

    :func:`adapted_rand` of the :func:`cell_segments` of both, with ignored truth pixels
    cut out of both: in ``[0, 1]`` (0 = perfect), NaN when the truth has no class-0 pixel.

    Example:
        >>> rand_error(np.array([[0, 0, 1, 0, 0]]), np.array([[0, 0, 0, 0, 0]]))  # a merge
        0.33333333333333337
    """
    truth, prediction = np.asarray(truth), np.asarray(prediction)
    if truth.shape != prediction.shape:
        raise ValueError(f"truth {truth.shape} and prediction {prediction.shape} differ in shape.")
    valid = truth != IGNORE_LABEL
    return adapted_rand(cell_segments(truth, valid), cell_segments(prediction, valid))[0]
