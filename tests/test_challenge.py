"""evaluation.challenge: the ISBI 2012 challenge's best-over-thresholds scores, against hand
arithmetic and a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest

from unet_lib import IGNORE_LABEL
from unet_lib.evaluation.challenge import (
    THRESHOLDS,
    cell_fscore,
    challenge_scores,
    rand_pair_counts,
)
from unet_lib.evaluation.randerror import cell_segments


def test_thresholds_are_the_challenge_grid():
    assert THRESHOLDS == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@pytest.mark.parametrize(
    "truth, pred, want",
    [
        # tp 1, 1 predicted, 2 true: precision 1, recall 1/2, F = 2 * 0.5 / 1.5 = 2/3
        ([1, 1, 0], [1, 0, 0], (2 / 3, 1.0, 0.5)),
        ([1, 0, 1, 0], [1, 0, 1, 0], (1.0, 1.0, 1.0)),  # perfect
        ([1, 1, 0], [0, 0, 1], (0.0, 0.0, 0.0)),  # disjoint
        ([0, 0], [0, 0], (0.0, 0.0, 0.0)),  # nothing on either side: 0 as in Fiji
    ],
)
def test_cell_fscore_by_hand(truth, pred, want):
    got = cell_fscore(np.array(truth, bool), np.array(pred, bool))
    np.testing.assert_allclose(got, want)


def test_scores_by_hand():
    truth = np.array([[0, 1, 0, 0]])  # 1 = membrane; cells at 0, 2, 3
    prob = np.array([[0.1, 0.8, 0.45, 0.2]])  # membrane probability; cells 0.9 .2 .55 .8
    r = challenge_scores([truth], [prob])
    rows = {row["threshold"]: row for row in r["per_threshold"]}
    # t = 0.1: cell prob > 0.1 everywhere -> 4 predicted, 3 right: P 3/4, R 1, F 6/7
    assert rows[0.1]["cell_fscore"] == pytest.approx(6 / 7)
    # t = 0.2 .. 0.5: cells 0, 2, 3 exactly -> F 1; t = 0.6: cells 0, 3 -> P 1, R 2/3, F 0.8
    assert rows[0.2]["cell_fscore"] == 1.0 and rows[0.5]["cell_fscore"] == 1.0
    assert rows[0.6]["cell_fscore"] == pytest.approx(0.8)
    assert rows[1.0]["cell_fscore"] == 0.0  # nothing is > 1
    assert r["pixel_error"] == 0.0 and r["pixel_threshold"] == 0.2  # the first best
    assert r["rand_error"] == 0.0 and r["rand_threshold"] == 0.2


def test_pixel_error_is_not_the_misclassified_fraction():
    # 100 pixels: 22 membrane, 78 cells; 4 membrane pixels called cells, 4 cells called
    # membrane: 8 % misclassified, membrane Dice 2*18 / (2*18 + 8) = 0.818; cell F-score:
    # tp 74, 78 predicted, 78 true -> 74 / 78 = 0.9487, challenge pixel error 0.0513
    truth = np.zeros((10, 10), np.int32)
    truth.flat[:22] = 1
    prob = truth.astype(np.float32).copy()
    prob.flat[:4] = 0.0  # membranes missed
    prob.flat[22:26] = 1.0  # cells called membrane
    r = challenge_scores([truth], [prob], thresholds=[0.5])
    assert r["pixel_error"] == pytest.approx(1 - 74 / 78)
    assert np.mean((prob > 0.5) != (truth == 1)) == pytest.approx(0.08)


def _brute_pairs(truth_ids, pred_ids):
    """Every pair of scored pixels, one by one: the definition, not the formula."""
    a, b = np.ravel(truth_ids), np.ravel(pred_ids)
    idx = np.flatnonzero(a > 0)
    tp = true = pred = 0
    for k, i in enumerate(idx):
        for j in idx[k + 1 :]:
            same_true = a[i] == a[j]
            same_pred = b[i] > 0 and b[i] == b[j]
            tp += same_true and same_pred
            true += same_true
            pred += same_pred
    return tp, true, pred


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rand_pair_counts_against_enumerated_pairs(seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 4, (6, 7))  # 0 = not scored
    pred = rng.integers(0, 3, (6, 7))  # 0 = predicted boundary
    assert rand_pair_counts(truth, pred) == pytest.approx(_brute_pairs(truth, pred))


def test_rand_pair_counts_by_hand():
    # truth cells {0,1} and {2,3}; prediction merges them: 1 + 1 true pairs, C(4, 2) = 6
    # predicted pairs, 2 right -> precision 1/3, recall 1
    assert rand_pair_counts(np.array([1, 1, 2, 2]), np.array([1, 1, 1, 1])) == (2, 2, 6)
    # a predicted boundary pixel inside a true cell is in no predicted pair
    assert rand_pair_counts(np.array([1, 1, 1]), np.array([1, 0, 1])) == (1, 3, 1)
    assert rand_pair_counts(np.array([0, 0]), np.array([1, 1])) == (0, 0, 0)


def test_against_brute_force_reference():
    rng = np.random.default_rng(0)
    truths = [(rng.random((9, 11)) < 0.3).astype(np.int32) for _ in range(3)]
    truths[1][0, :5] = IGNORE_LABEL
    probs = [np.clip(t * 0.7 + rng.random(t.shape) * 0.5, 0, 1) for t in truths]
    r = challenge_scores(truths, probs)
    for row in r["per_threshold"]:
        t = row["threshold"]
        tp = pred = true = 0
        rand = np.zeros(3)
        for truth, prob in zip(truths, probs, strict=True):
            said_cell = 1 - prob > t
            for y in range(truth.shape[0]):
                for x in range(truth.shape[1]):
                    if truth[y, x] == IGNORE_LABEL:
                        continue
                    is_cell = truth[y, x] == 0
                    tp += is_cell and said_cell[y, x]
                    pred += said_cell[y, x]
                    true += is_cell
            # pooled over slices, as Fiji sums its pair counts over the stack
            valid = truth != IGNORE_LABEL
            rand += _brute_pairs(cell_segments(truth == 1, valid),
                                 cell_segments((~said_cell).astype(np.uint8)))  # fmt: skip
        p, rc = (tp / pred if pred else 0.0), tp / true
        want_f = 2 * p * rc / (p + rc) if p + rc else 0.0
        assert row["cell_fscore"] == pytest.approx(want_f)
        p, rc = (rand[0] / rand[2] if rand[2] else 0.0), rand[0] / rand[1]
        assert row["rand_fscore"] == pytest.approx(2 * p * rc / (p + rc) if p + rc else 0.0)
    assert r["pixel_error"] == pytest.approx(1 - max(x["cell_fscore"] for x in r["per_threshold"]))
    assert r["rand_error"] == pytest.approx(1 - max(x["rand_fscore"] for x in r["per_threshold"]))


def test_ignored_pixels_count_nowhere():
    truth = np.array([[0, 1, IGNORE_LABEL, 0]])
    good = np.array([[0.0, 1.0, 0.0, 0.0]])
    bad_where_ignored = np.array([[0.0, 1.0, 1.0, 0.0]])
    a = challenge_scores([truth], [good])
    b = challenge_scores([truth], [bad_where_ignored])
    assert a["pixel_error"] == b["pixel_error"] == 0.0
    assert a["rand_error"] == b["rand_error"]


@pytest.mark.parametrize("channels", [1, 2])
def test_model_outputs_are_accepted(channels):
    truth = np.array([[0, 1], [0, 0]])
    p = truth.astype(np.float32)
    out = p[..., None] if channels == 1 else np.stack([1 - p, p], axis=-1)
    assert challenge_scores([truth], [out])["pixel_error"] == 0.0


def test_clear_errors():
    truth = np.zeros((4, 4), np.int32)
    with pytest.raises(ValueError, match="one probability map per truth"):
        challenge_scores([truth], [])
    with pytest.raises(ValueError, match="differ in shape"):
        challenge_scores([truth], [np.zeros((4, 5))])
    with pytest.raises(ValueError, match="at least one threshold"):
        challenge_scores([truth], [np.zeros((4, 4))], thresholds=[])
