"""Tests for unet_lib.evaluation.randerror: hand-worked Rand errors and a brute-force pair count."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from unet_lib import IGNORE_LABEL
from unet_lib.evaluation.randerror import adapted_rand, cell_segments, rand_error


def random_maps(seed, num_labels, n=3, shape=(6, 7), ignore=True):
    rng = np.random.default_rng(seed)
    truths = rng.integers(0, num_labels, (n, *shape)).astype(np.int32)
    preds = rng.integers(0, num_labels, (n, *shape)).astype(np.int32)
    if ignore:
        truths[rng.random(truths.shape) < 0.15] = IGNORE_LABEL
    return truths, preds


# Two cells A, B (9 pixels each) separated by a membrane column (class 1).
TWO_CELLS = np.array([[0, 0, 0, 1, 0, 0, 0]] * 3, np.int32)
ONE_CELL = np.zeros((3, 7), np.int32)


def test_rand_perfect_prediction_is_zero():
    assert rand_error(TWO_CELLS, TWO_CELLS) == 0.0
    r = np.random.default_rng(1).integers(0, 2, (12, 12)).astype(np.int32)
    assert rand_error(r, r) == pytest.approx(0.0, abs=1e-12)


def test_rand_merge_by_hand():
    # The prediction removes the membrane: one segment S holding A and B.
    # Scored pixels: the 18 truth-cell pixels. p_AS = p_BS = 9, c = 0.
    # sumA = 9^2 + 9^2 = 162, sumB = 18^2 = 324, sumAB = 9^2 + 9^2 = 162
    # precision = 162 / 324 = 0.5, recall = 162 / 162 = 1
    # error = 1 - 2 * 0.5 * 1 / 1.5 = 1/3
    error, precision, recall = adapted_rand(cell_segments(TWO_CELLS), cell_segments(ONE_CELL))
    assert (precision, recall) == pytest.approx((0.5, 1.0))
    assert error == pytest.approx(1 / 3)
    assert rand_error(TWO_CELLS, ONE_CELL) == pytest.approx(1 / 3)


def test_rand_split_by_hand():
    # The truth is one cell of 21 pixels; the prediction draws a membrane through it:
    # segments S1, S2 (9 pixels each) and c = 3 predicted-boundary pixels inside the cell.
    # n = 21: sumA = 21^2 = 441, sumB = 9^2 + 9^2 + 3/21 = 162.142857,
    # sumAB = 9^2 + 9^2 + 3/21 = 162.142857
    # precision = 1, recall = 162.142857 / 441 = 0.367671
    # error = 1 - 2 * 0.367671 / 1.367671 = 1 - 0.537660 = 0.462340
    error, precision, recall = adapted_rand(cell_segments(ONE_CELL), cell_segments(TWO_CELLS))
    assert precision == pytest.approx(1.0)
    assert recall == pytest.approx((162 + 3 / 21) / 441)
    assert error == pytest.approx(0.462340, abs=1e-6)
    assert rand_error(ONE_CELL, TWO_CELLS) == pytest.approx(error)


def brute_adapted_rand(truth_segments, pred_segments, boundary_weight=None):
    """Ordered pixel pairs over the truth-cell pixels (self pairs included).

    Two pixels agree in the prediction when they share a segment j >= 1; a predicted
    boundary pixel only pairs with itself, with weight ``boundary_weight`` (the reference's
    ``1 / n``; ``None`` = plain pair counting, only valid without such pixels).
    """
    t, p = np.ravel(truth_segments), np.ravel(pred_segments)
    idx = np.flatnonzero(t > 0)
    sum_a = sum_b = sum_ab = 0.0
    for x, y in itertools.product(idx, idx):
        same_t = t[x] == t[y]
        if p[x] > 0:
            same_p = float(p[x] == p[y])
        else:
            assert boundary_weight is not None, "plain pair counting needs c = 0"
            same_p = boundary_weight if x == y else 0.0
        sum_a += same_t
        sum_b += same_p
        sum_ab += same_t * same_p
    precision, recall = sum_ab / sum_b, sum_ab / sum_a
    return 1 - 2 * precision * recall / (precision + recall), precision, recall


@pytest.mark.parametrize("seed", range(4))
def test_adapted_rand_matches_pair_counting(seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 5, (6, 7))  # 0 = boundary, 1..4 = cells (any shape)
    pred = rng.integers(1, 6, (6, 7))  # no predicted boundary inside the truth cells
    pred[truth == 0] = rng.integers(0, 6, int((truth == 0).sum()))  # anything on boundaries
    assert adapted_rand(truth, pred) == pytest.approx(brute_adapted_rand(truth, pred))
    pred_c = pred.copy()  # predicted boundary inside cells: singletons of weight 1 / n
    pred_c[rng.random(pred.shape) < 0.2] = 0
    assert adapted_rand(truth, pred_c) == pytest.approx(
        brute_adapted_rand(truth, pred_c, boundary_weight=1 / truth.size)
    )


def test_rand_error_ignores_ignored_pixels_and_nan_without_cells():
    truth, pred = random_maps(3, 2, n=1, shape=(10, 10))
    truth, pred = truth[0], pred[0]
    flipped = np.where(truth == IGNORE_LABEL, 1 - pred, pred)
    assert rand_error(truth, flipped) == pytest.approx(rand_error(truth, pred))
    assert math.isnan(rand_error(np.ones((4, 4), np.int32), np.zeros((4, 4), np.int32)))
