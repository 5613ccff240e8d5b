"""The ISBI 2012 challenge's scores: best F-scores over thresholds of a probability map.

The U-Net paper's ISBI 2012 figures (pixel error 0.0611, Rand error 0.0382) are the
challenge's own scores, which differ from the fixed-threshold figures of
:func:`unet_lib.evaluation.evaluator.evaluate` in three ways (the challenge's evaluation page and
its Fiji code, ``trainableSegmentation.metrics``):

* **Pixel error** is ``1 - F``, where ``F`` is the F-score of the *cell* pixels (truth
  label > 0 in the challenge's images, where membranes are 0), pooled over the stack, not the
  fraction of misclassified pixels. With membranes ~22 % of the pixels the two differ: a
  prediction with 8 % of its pixels wrong and membrane Dice 0.81 has a cell F-score of
  about 0.95, a challenge pixel error of about 0.05.
* **Both scores are maximised over thresholds** of the submitted cell probability map:
  ``cells = probability > t`` for ``t = 0.0, 0.1, ..., 1.0``, the best ``t`` chosen on the
  test labels themselves (an oracle choice, part of the challenge's protocol).
* **The Rand error counts pixel pairs pooled over the stack** (Fiji's ``RandError``):
  segments are the 4-connected cells of the truth and of the thresholded prediction
  (:func:`unet_lib.evaluation.randerror.cell_segments`); only pairs of true-cell pixels count, and a
  predicted boundary pixel is in no predicted segment. :func:`.randerror.rand_error`
  (used by :func:`~unet_lib.evaluation.evaluator.evaluate`) is the SNEMI3D form of the same score,
  squared counts per slice, then averaged over slices.

Formulas, per threshold ``t``, with ``P`` the predicted and ``T`` the true cell pixels over
all slices (ignored truth pixels excluded), and ``C(x) = x (x - 1) / 2`` pairs::

    pixel:  precision = |P & T| / |P|,  recall = |P & T| / |T|
    Rand:   tp = sum C(n_ij) over true cells i, predicted cells j (pooled over slices)
            precision = tp / sum_j C(b_j),  recall = tp / sum_i C(a_i)
            (a_i: true cell sizes; b_j: predicted cells' pixels inside true cells)
    F = 2 precision recall / (precision + recall)
    pixel_error = 1 - max_t F_pixel(t)        rand_error = 1 - max_t F_Rand(t)

Example:
    >>> truth = np.array([[0, 1, 0, 0]])              # 1 = membrane
    >>> prob = np.array([[0.1, 0.8, 0.4, 0.2]])       # membrane probability
    >>> challenge_scores([truth], [prob])["pixel_error"]
    0.0
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from unet_lib import IGNORE_LABEL
from unet_lib.evaluation.randerror import cell_segments, segment_overlaps

__all__ = ["THRESHOLDS", "challenge_scores", "cell_fscore", "rand_pair_counts"]

# the challenge's thresholds: 0.0 to 1.0 in steps of 0.1
THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(11))


def cell_fscore(truth_cells: np.ndarray, pred_cells: np.ndarray) -> tuple[float, float, float]:
    """F-score, precision and recall of the predicted cell pixels (boolean arrays).

    Args:
        truth_cells: bool, the true cell pixels (scored pixels only).
        pred_cells: bool, same shape, the predicted cell pixels.

    Returns:
        ``(f, precision, recall)``; a zero denominator gives 0 (as the Fiji code does).

    Example:
        >>> cell_fscore(np.array([True, True, False]), np.array([True, False, False]))
        (0.6666666666666666, 1.0, 0.5)
    """
    truth_cells = np.asarray(truth_cells, bool)
    pred_cells = np.asarray(pred_cells, bool)
    tp = float(np.count_nonzero(truth_cells & pred_cells))
    predicted, true = float(np.count_nonzero(pred_cells)), float(np.count_nonzero(truth_cells))
    precision = tp / predicted if predicted else 0.0
    recall = tp / true if true else 0.0
    return _fscore(tp, predicted, true), precision, recall


def _pairs(counts: np.ndarray) -> float:
    return float(np.sum(counts * (counts - 1) / 2))


def rand_pair_counts(truth_segments: np.ndarray, pred_segments: np.ndarray):
    """Pixel-pair counts of the foreground-restricted Rand index (Fiji's ``RandError``).

    Args:
        truth_segments: non-negative segment ids; 0 = not scored (membrane or ignored).
        pred_segments: same shape; 0 = predicted boundary (in no segment).

    Returns:
        ``(tp, true_pairs, predicted_pairs)``: pairs in one true and one predicted segment,
        pairs in one true segment, pairs in one predicted segment (pixels in true segments
        only). Precision is ``tp / predicted_pairs``, recall ``tp / true_pairs``.

    Example:
        >>> rand_pair_counts(np.array([1, 1, 2, 2]), np.array([1, 1, 1, 1]))  # one merge
        (2.0, 2.0, 6.0)
    """
    truth_sizes, pred_sizes, overlap_sizes, _ = segment_overlaps(truth_segments, pred_segments)
    return _pairs(overlap_sizes), _pairs(truth_sizes), _pairs(pred_sizes)


def _fscore(tp: float, predicted: float, true: float) -> float:
    precision = tp / predicted if predicted else 0.0
    recall = tp / true if true else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _membrane_probability(prob: np.ndarray, shape) -> np.ndarray:
    prob = np.asarray(prob, np.float32)
    if prob.ndim == 3:  # (H, W, 1) sigmoid or (H, W, 2) softmax: keep the membrane channel
        prob = prob[..., -1]
    if prob.shape != tuple(shape):
        raise ValueError(
            f"probability map {prob.shape} and truth {tuple(shape)} differ in shape; give "
            "one (H, W) membrane probability per truth label map."
        )
    return prob


def challenge_scores(
    truths: Sequence[np.ndarray],
    membrane_probabilities: Sequence[np.ndarray],
    *,
    thresholds: Sequence[float] = THRESHOLDS,
    membrane: int = 1,
) -> dict:
    """The ISBI 2012 challenge's pixel and Rand errors of a stack of probability maps.

    Args:
        truths: ``(H, W)`` label maps: ``membrane`` for membrane pixels, any other class for
            cells, ``IGNORE_LABEL`` for pixels scored nowhere.
        membrane_probabilities: matching ``(H, W)`` membrane probabilities (or ``(H, W, 1)``
            sigmoid / ``(H, W, 2)`` softmax outputs, the last channel being the membrane).
        thresholds: cell-probability thresholds (``cells = 1 - p_membrane > t``).
        membrane: the membrane class index in ``truths``.

    Returns:
        ``{"pixel_error", "pixel_threshold", "rand_error", "rand_threshold", "per_threshold":
        [{"threshold", "cell_fscore", "cell_precision", "cell_recall", "rand_fscore"}, ...]}``
        with the best threshold of each score (the first, when several tie).

    Raises:
        ValueError: on mismatched lists or shapes, or no threshold.
    """
    if len(truths) != len(membrane_probabilities) or not truths:
        raise ValueError(
            f"give one probability map per truth label map: got {len(truths)} truths and "
            f"{len(membrane_probabilities)} maps."
        )
    if not len(thresholds):
        raise ValueError("give at least one threshold, e.g. challenge.THRESHOLDS")
    truths = [np.asarray(t) for t in truths]
    probs = [_membrane_probability(p, t.shape) for p, t in zip(membrane_probabilities, truths,
                                                                 strict=True)]  # fmt: skip
    valid = np.concatenate([(t != IGNORE_LABEL).ravel() for t in truths])
    truth_cells = np.concatenate([(t != membrane).ravel() for t in truths])[valid]
    # cell_segments numbers the 4-connected class-0 regions: cells 0, membrane 1
    truth_segments = [cell_segments((t == membrane).astype(np.uint8), t != IGNORE_LABEL)
                      for t in truths]  # fmt: skip
    rows = []
    for t in thresholds:
        pred_cells = [(1.0 - p) > t for p in probs]
        f, precision, recall = cell_fscore(truth_cells, np.concatenate(
            [c.ravel() for c in pred_cells])[valid])  # fmt: skip
        counts = np.sum(
            [
                rand_pair_counts(ts, cell_segments((~c).astype(np.uint8)))
                for ts, c in zip(truth_segments, pred_cells, strict=True)
            ],
            axis=0,
        )
        rows.append({
            "threshold": float(t),
            "cell_fscore": f,
            "cell_precision": precision,
            "cell_recall": recall,
            "rand_fscore": _fscore(counts[0], counts[2], counts[1]),
        })  # fmt: skip
    best_pixel = max(rows, key=lambda r: r["cell_fscore"])
    best_rand = max(rows, key=lambda r: r["rand_fscore"])
    return {
        "pixel_error": 1.0 - best_pixel["cell_fscore"],
        "pixel_threshold": best_pixel["threshold"],
        "rand_error": 1.0 - best_rand["rand_fscore"],
        "rand_threshold": best_rand["threshold"],
        "per_threshold": rows,
    }
