"""Tests for unet_lib.targets: the one truth preparation and the two confusion counts."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from unet_lib import metrics
from unet_lib.targets import (
    check_ignore_class,
    confusion_counts,
    label_confusion_counts,
    prepare_truth,
)


def np_(x):
    return keras.ops.convert_to_numpy(x)


def random_case(num_classes, seed, shape=(3, 6, 7)):
    """Truth with ignored (-1) and out-of-range (L) pixels, probabilities, decided labels."""
    rng = np.random.default_rng(seed)
    num_labels = max(num_classes, 2)
    truth = rng.integers(0, num_labels, shape)
    truth[rng.random(shape) < 0.2] = -1
    truth[rng.random(shape) < 0.05] = num_labels
    probs = rng.random((*shape, num_classes)).astype("float32")
    if num_classes > 1:
        probs /= probs.sum(-1, keepdims=True)
    decided = (probs[..., 0] >= 0.5).astype(int) if num_classes == 1 else probs.argmax(-1)
    return truth, probs, decided


def one_hot(truth, num_labels):
    """One-hot truth whose rows are all zero where the label is outside 0 .. L-1."""
    rows = np.eye(num_labels, dtype="float32")[np.clip(truth, 0, num_labels - 1)]
    rows[(truth < 0) | (truth >= num_labels)] = 0
    return rows


@pytest.mark.parametrize("num_classes", [1, 2, 4])
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("form", ["label map", "label map (B, H, W, 1)", "one-hot"])
def test_keras_count_equals_the_numpy_twin(num_classes, per_image, form):
    for seed in range(3):
        truth, probs, decided = random_case(num_classes, seed)
        num_labels = max(num_classes, 2)
        want = label_confusion_counts(truth, decided, num_labels, per_image=per_image)
        y_true = {
            "label map": truth,
            "label map (B, H, W, 1)": truth[..., None],
            "one-hot": one_hot(truth, num_labels),
        }[form]
        got = confusion_counts(y_true, probs, num_classes, ignore_class=-1, per_image=per_image)
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape
            np.testing.assert_array_equal(np_(g), w)


@pytest.mark.parametrize("num_classes", [1, 3])
def test_ignore_class_inside_the_label_range_matches_the_twin(num_classes):
    truth, probs, decided = random_case(num_classes, seed=7)
    dropped = np.where(truth == 1, -1, truth)  # the twin counts no pixel labelled -1
    want = label_confusion_counts(dropped, decided, max(num_classes, 2))
    for y_true in (truth, one_hot(truth, max(num_classes, 2))):
        got = confusion_counts(y_true, probs, num_classes, ignore_class=1)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(np_(g), w)


def test_metrics_reexports_the_one_count():
    assert metrics.confusion_counts is confusion_counts


# --------------------------------------------------------------------------- preparation


def test_label_map_prep_by_hand():
    # L = 2, ignore_class = 0:  2 is out of range, 0 is ignored, 1 counts, -1 is invalid.
    truth, weight = prepare_truth([[2, 0, 1, -1]], (1, 4, 2), 2, ignore_class=0)
    np.testing.assert_array_equal(np_(weight), [[0, 0, 1, 0]])
    np.testing.assert_array_equal(np_(truth), [[[0, 0], [1, 0], [0, 1], [0, 0]]])


def test_float_labels_are_rounded():
    # 0.6 -> 1, 1.4 -> 1, -0.4 -> 0, 1.6 -> 2 (outside 0..1, invalid)
    truth, weight = prepare_truth([[[0.6], [1.4], [-0.4], [1.6]]], (1, 4, 1), 2)
    np.testing.assert_array_equal(np_(weight), [[1, 1, 1, 0]])
    np.testing.assert_array_equal(np_(truth)[0, :, 1], [1, 1, 0, 0])


def test_one_hot_prep_keeps_values_and_drops_zero_rows():
    # rows: class 0; all zero (invalid); soft (argmax 2, ignored); class 1
    rows = np.array([[[1, 0, 0], [0, 0, 0], [0.1, 0.2, 0.7], [0, 1, 0]]], "float32")
    truth, weight = prepare_truth(rows, (1, 4, 3), 3, ignore_class=2)
    np.testing.assert_array_equal(np_(truth), rows)
    np.testing.assert_array_equal(np_(weight), [[1, 0, 0, 1]])


@pytest.mark.parametrize(
    "sample_weight, expected",
    [
        ([2.0], [[2, 2, 0]]),  # one weight per image
        ([[0.5, 3.0, 4.0]], [[0.5, 3, 0]]),  # per pixel (B, W)
        ([[[0.5], [3.0], [4.0]]], [[0.5, 3, 0]]),  # per pixel (B, W, 1)
    ],
)
def test_sample_weight_multiplies_the_valid_mask(sample_weight, expected):
    _, weight = prepare_truth([[0, 1, -1]], (1, 3, 1), 2, sample_weight=sample_weight)
    np.testing.assert_array_equal(np_(weight), expected)


def test_float64_prep():
    probe = keras.ops.convert_to_tensor(np.zeros(1), dtype="float64")
    if keras.backend.standardize_dtype(probe.dtype) != "float64":
        pytest.skip("this backend has no float64 (JAX without x64)")
    truth, weight = prepare_truth([[0, 1]], (1, 2, 1), 2, dtype="float64")
    assert keras.backend.standardize_dtype(truth.dtype) == "float64"
    assert keras.backend.standardize_dtype(weight.dtype) == "float64"


@pytest.mark.parametrize(
    "y_true, pred_shape, match",
    [
        (np.zeros((1, 4, 2)), (1, 4, 3), "last dimension 2"),
        (np.zeros((1, 4, 2, 3, 1)), (1, 4, 3), "y_true must be a label map"),  # rank 5 vs 3
        (np.zeros((1, 5)), (1, 4, 3), "differ on axis 1"),
    ],
)
def test_shape_errors(y_true, pred_shape, match):
    with pytest.raises(ValueError, match=match):
        prepare_truth(y_true, pred_shape, 3)


def test_check_ignore_class():
    assert check_ignore_class(None) is None
    assert check_ignore_class(np.int64(-1)) == -1 and type(check_ignore_class(np.int64(2))) is int
    for bad in (1.5, True, "void"):
        with pytest.raises(ValueError, match="ignore_class must be an int"):
            check_ignore_class(bad)


def test_numpy_twin_rejects_bad_predictions():
    with pytest.raises(ValueError, match="outside 0..1"):
        label_confusion_counts(np.array([0, 1]), np.array([0, 2]), 2)
    with pytest.raises(ValueError, match="same shape"):
        label_confusion_counts(np.zeros(2, int), np.zeros(3, int), 2)


def test_label_confusion_matrix_against_a_pixel_by_pixel_count():
    from unet_lib.targets import label_confusion_matrix

    rng = np.random.default_rng(5)
    truth = rng.integers(-1, 3, size=(4, 9, 7))  # -1: ignored
    pred = rng.integers(0, 3, size=(4, 9, 7))
    expected = np.zeros((3, 3), np.int64)
    for t, p in zip(truth.ravel(), pred.ravel(), strict=True):
        if t >= 0:
            expected[t, p] += 1
    np.testing.assert_array_equal(label_confusion_matrix(truth, pred, 3), expected)
