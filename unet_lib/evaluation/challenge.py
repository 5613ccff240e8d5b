"""The ISBI 2012 challenge's scores: best F-scores over thresholds of a probability map.

Unlike :func:`~unet_lib.evaluation.evaluate`, the challenge (Fiji's
``trainableSegmentation.metrics``) scores F of the *cell* pixels, takes the best threshold
``t`` of the cell probability (``cells = 1 - p > t``, chosen on the test labels) and counts
Rand pixel pairs pooled over the stack. With ``P`` / ``T`` the predicted / true cell pixels
of all slices (ignored pixels excluded) and ``C(x) = x (x - 1) / 2`` pairs, per ``t``::

    pixel:  precision = |P & T| / |P|,  recall = |P & T| / |T|
    Rand:   tp = sum C(p_ij),  precision = tp / sum_j C(b_j),  recall = tp / sum_i C(a_i)
            (p, a, b as in randerror.segment_overlaps: overlaps, true, predicted cell sizes)
    F = 2 precision recall / (precision + recall)
    pixel_error = 1 - max_t F_pixel(t)        rand_error = 1 - max_t F_Rand(t)

Example:
    >>> truth = np.array([[0, 1, 0, 0]])              # 1 = membrane
    >>> prob = np.array([[0.1, 0.8, 0.4, 0.2]])       # membrane probability
    >>> challenge_scores([truth], [prob])["pixel_error"]
    0.0
"""

from collections.abc import Sequence
from operator import itemgetter

import numpy as np

from unet_lib import IGNORE_LABEL
from unet_lib.evaluation.randerror import cell_segments, segment_overlaps

__all__ = ["THRESHOLDS", "challenge_scores", "cell_fscore", "rand_pair_counts"]

THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(11))  # the challenge's: 0.0, 0.1, ..., 1.0


def _fscore(tp: float, predicted: float, true: float) -> tuple[float, float, float]:
    """``(f, precision, recall)``; a zero denominator gives 0 (as the Fiji code does)."""
    precision = tp / predicted if predicted else 0.0
    recall = tp / true if true else 0.0
    f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return f, precision, recall


def cell_fscore(truth_cells: np.ndarray, pred_cells: np.ndarray) -> tuple[float, float, float]:
    """F-score, precision and recall of the predicted cell pixels (boolean arrays).

    Example:
        >>> cell_fscore(np.array([True, True, False]), np.array([True, False, False]))
        (0.6666666666666666, 1.0, 0.5)
    """
    truth_cells, pred_cells = np.asarray(truth_cells, bool), np.asarray(pred_cells, bool)
    tp = float(np.count_nonzero(truth_cells & pred_cells))
    return _fscore(tp, float(np.count_nonzero(pred_cells)), float(np.count_nonzero(truth_cells)))


def _pairs(counts: np.ndarray) -> float:
    return float(np.sum(counts * (counts - 1) / 2))


def rand_pair_counts(truth_segments: np.ndarray, pred_segments: np.ndarray):
    """The Rand pair counts ``(tp, sum_i C(a_i), sum_j C(b_j))`` of the module docstring.

    Segment ids as in :func:`.randerror.segment_overlaps`; Fiji's ``RandError`` counts these.

    Example:
        >>> rand_pair_counts(np.array([1, 1, 2, 2]), np.array([1, 1, 1, 1]))  # one merge
        (2.0, 2.0, 6.0)
    """
    truth_sizes, pred_sizes, overlap_sizes, _ = segment_overlaps(truth_segments, pred_segments)
    return _pairs(overlap_sizes), _pairs(truth_sizes), _pairs(pred_sizes)


def _threshold_row(t: float, probs, valid, truth_cells, segments) -> dict:
    """The pixel and Rand scores of the cells ``1 - p > t`` against the true cells."""
    cells = [(1.0 - p) > t for p in probs]
    pred_cells = np.concatenate([c.ravel() for c in cells])[valid]
    f, precision, recall = cell_fscore(truth_cells, pred_cells)
    pairs = [rand_pair_counts(s, cell_segments(~c)) for s, c in zip(segments, cells, strict=True)]
    tp, true_pairs, pred_pairs = np.sum(pairs, axis=0)
    cell = {"cell_fscore": f, "cell_precision": precision, "cell_recall": recall}
    return {"threshold": float(t), **cell, "rand_fscore": _fscore(tp, pred_pairs, true_pairs)[0]}


def challenge_scores(
    truths, membrane_probabilities, *, thresholds: Sequence[float] = THRESHOLDS, membrane: int = 1
) -> dict:
    """The ISBI 2012 challenge's pixel and Rand errors of a stack of probability maps.

    Args:
        truths: ``(H, W)`` label maps: ``membrane``, cells (any other class) or ``IGNORE_LABEL``.
        membrane_probabilities: Matching ``(H, W)`` membrane probabilities, or ``(H, W, 1 | 2)``
            model outputs whose last channel is the membrane.
        thresholds: Cell-probability thresholds ``t`` (``cells = 1 - p > t``).
        membrane: The membrane class in ``truths``.

    Returns:
        ``{"pixel_error", "pixel_threshold", "rand_error", "rand_threshold", "per_threshold":
        [{"threshold", "cell_fscore", "cell_precision", "cell_recall", "rand_fscore"}, ...]}``,
        each best threshold the first of ties.
    """
    if len(truths) != len(membrane_probabilities) or not truths:
        raise ValueError(
            f"give one probability map per truth label map: got {len(truths)} truths and "
            f"{len(membrane_probabilities)} maps."
        )
    if not len(thresholds):
        raise ValueError("give at least one threshold, e.g. challenge.THRESHOLDS")
    truths = [np.asarray(t) for t in truths]
    probs = [np.asarray(p, np.float32) for p in membrane_probabilities]
    probs = [p[..., -1] if p.ndim == 3 else p for p in probs]  # (H, W, 1 | 2): the membrane
    for p, t in zip(probs, truths, strict=True):
        if p.shape != t.shape:
            raise ValueError(
                f"probability map {p.shape} and truth {t.shape} differ in shape; give one (H, W) "
                "membrane probability per truth label map."
            )
    valid = np.concatenate([(t != IGNORE_LABEL).ravel() for t in truths])
    truth_cells = np.concatenate([(t != membrane).ravel() for t in truths])[valid]
    segments = [cell_segments(t == membrane, t != IGNORE_LABEL) for t in truths]
    rows = [_threshold_row(t, probs, valid, truth_cells, segments) for t in thresholds]
    result = {}
    for name, key in (("pixel", "cell_fscore"), ("rand", "rand_fscore")):
        best = max(rows, key=itemgetter(key))
        result.update({f"{name}_error": 1.0 - best[key], f"{name}_threshold": best["threshold"]})
    return {**result, "per_threshold": rows}
