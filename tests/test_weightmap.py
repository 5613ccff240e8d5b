"""Tests for unet_lib.weightmap: the U-Net paper's loss weight map.

Distances are Euclidean between pixel centres, from a pixel to the nearest pixel of an object:
a 4-neighbour of an object has d = 1, a diagonal neighbour d = sqrt(2). With w0 = 10 and
sigma = 5 the border term is 10 * exp(-(d1 + d2)**2 / 50).
"""

from __future__ import annotations

import ast
import doctest
import math
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy import ndimage

import unet_lib.weightmap
from unet_lib.weightmap import (
    class_balance_weights,
    nearest_object_distances,
    unet_weight_map,
    weight_maps,
)


def border(d1, d2, w0=10.0, sigma=5.0):
    return w0 * math.exp(-((d1 + d2) ** 2) / (2 * sigma**2))


def two_squares(gap: int) -> np.ndarray:
    """9 x (15 + gap - 1): 5x5 squares at rows 2..6, cols 2..6 and 7+gap..11+gap."""
    mask = np.zeros((9, 14 + gap), np.int32)
    mask[2:7, 2:7] = 1
    mask[2:7, 7 + gap : 12 + gap] = 1
    return mask


# --------------------------------------------------------------------------- hand values


@pytest.mark.parametrize(
    "pixel, expected",
    [
        ((4, 7), 9.231163),  # gap pixel: d1 = d2 = 1 -> 10*exp(-(1+1)**2/50) = 10*exp(-0.08)
        ((2, 7), 9.231163),  # gap pixel on the squares' top row: still 1 and 1
        ((1, 7), 8.521438),  # above the gap: d = sqrt(2) each -> (2*sqrt 2)**2 = 8: exp(-0.16)
        ((0, 7), 6.703200),  # two rows up: d = sqrt(1+4) = sqrt 5 each -> 20/50: 10*exp(-0.4)
        ((4, 0), 1.353353),  # left of A: d1 = 2 (to col 2), d2 = 8 (to col 8) -> 10*exp(-2)
        ((4, 4), 0.0),  # inside an object: no border term
    ],
)
def test_one_pixel_gap_hand_values(pixel, expected):
    w = unet_weight_map(two_squares(gap=1), class_weights=None)  # w_c = 1 everywhere
    assert w.dtype == np.float32 and w.shape == (9, 15)
    assert w[pixel] == pytest.approx(1.0 + expected, abs=1e-5)


def test_two_pixel_gap_hand_values():
    w = unet_weight_map(two_squares(gap=2), class_weights=None)
    # columns 7 and 8 are the gap: d1 = 1, d2 = 2 -> 10*exp(-9/50) = 10*exp(-0.18) = 8.352702
    assert w[4, 7] == pytest.approx(1 + 8.352702, abs=1e-5)
    assert w[4, 8] == pytest.approx(1 + 8.352702, abs=1e-5)
    # above the gap at (1, 7): sqrt(2) to A's (2, 6), sqrt(5) to B's (2, 9)
    assert w[1, 7] == pytest.approx(1 + border(math.sqrt(2), math.sqrt(5)), abs=1e-5)


def test_balanced_class_term_is_added():
    mask = two_squares(gap=1)  # 135 pixels: 50 foreground, 85 background
    w = unet_weight_map(mask)
    w_bg, w_fg = 135 / (2 * 85), 135 / (2 * 50)  # 0.794118, 1.35
    assert w[4, 4] == pytest.approx(w_fg, abs=1e-5)
    assert w[4, 7] == pytest.approx(w_bg + 9.231163, abs=1e-5)
    assert w[8, 14] == pytest.approx(w_bg + border(math.hypot(2, 2), math.hypot(2, 8)), abs=1e-5)


def test_far_pixel_gets_no_border_term():
    mask = np.zeros((100, 100), np.int32)
    mask[5:10, 5:10] = 1
    mask[5:10, 11:16] = 1
    w = unet_weight_map(mask, class_weights=None)
    assert w[7, 10] == pytest.approx(1 + 9.231163, abs=1e-5)
    # (95, 95) is ~115 px from both: the exact term is 10*exp(-230**2/50) ~ 0; cut off to 0
    assert w[95, 95] == 1.0
    assert w[60, 60] == 1.0


def test_single_object_has_no_border_term():
    mask = np.zeros((40, 40), np.int32)
    mask[15:25, 15:25] = 1
    w = unet_weight_map(mask, class_weights=None)
    np.testing.assert_array_equal(w, np.ones((40, 40), np.float32))  # d2 = inf -> term 0
    d1, d2 = nearest_object_distances(mask > 0)
    assert np.isinf(d2).all()
    assert d1[14, 20] == 1.0 and d1[13, 13] == pytest.approx(math.sqrt(8))


def test_nearest_object_distances_simple():
    m = np.zeros((1, 5), bool)
    m[0, 0] = m[0, 4] = True
    d1, d2 = nearest_object_distances(m)
    np.testing.assert_allclose(d1[0], [0, 1, 2, 1, 0])
    np.testing.assert_allclose(d2[0], [4, 3, 2, 3, 4])
    d1, d2 = nearest_object_distances(m, max_distance=2.5)
    np.testing.assert_allclose(d2[0], [np.inf, np.inf, 2, np.inf, np.inf])


def test_no_objects_gives_class_term_only():
    w = unet_weight_map(np.zeros((6, 6), np.int32), class_weights=None)
    np.testing.assert_array_equal(w, 1.0)


# --------------------------------------------------------------------------- class balance


def test_class_balance_weights_hand_values():
    # 8 pixels: 6 of class 0, 2 of class 1 -> w_c = 8 / (2 * n_c): 8/12, 8/4
    w = class_balance_weights(np.array([[0, 0, 0, 0], [0, 0, 1, 1]]))
    assert w.dtype == np.float32
    np.testing.assert_allclose(w, [2 / 3, 2.0], rtol=1e-6)
    # three classes, counts 1, 1, 2 of 4 -> 4/3, 4/3, 4/6; mean over pixels = 1
    labels = np.array([[0, 1, 2, 2]])
    w = class_balance_weights(labels)
    np.testing.assert_allclose(w, [4 / 3, 4 / 3, 2 / 3], rtol=1e-6)
    assert w[labels].mean() == pytest.approx(1.0)


def test_class_balance_ignore_absent_and_num_classes():
    # ignored pixel not counted: N = 3, counts 1, 2 -> 3/2, 3/4
    np.testing.assert_allclose(class_balance_weights([[0, -1], [1, 1]]), [1.5, 0.75])
    # num_classes=3: class 2 absent gets 0, the present ones are balanced among themselves
    np.testing.assert_allclose(class_balance_weights([[0, -1], [1, 1]], 3), [1.5, 0.75, 0.0])
    # binary model (num_classes=1) -> two label classes
    assert class_balance_weights(np.zeros((3, 3), int), 1).tolist() == [1.0, 0.0]
    # a stack of maps is balanced over all of them: 4 zeros, 4 ones
    stack = np.array([np.zeros((2, 2), int), np.ones((2, 2), int)])
    np.testing.assert_allclose(class_balance_weights(stack), [1.0, 1.0])
    with pytest.raises(ValueError, match="num_classes"):
        class_balance_weights([[0, 2]], 2)


def test_sequence_class_weights():
    mask = np.array([[0, 1], [2, 0]])
    w = unet_weight_map(mask, class_weights=[0.5, 2.0, 3.0], w0=0.0)
    np.testing.assert_allclose(w, [[0.5, 2.0], [3.0, 0.5]])
    with pytest.raises(ValueError, match="one weight per class"):
        unet_weight_map(mask, class_weights=[1.0, 1.0])


# --------------------------------------------------------------------------- ignore, objects


def test_ignored_pixels_get_zero_and_are_not_objects():
    mask = two_squares(gap=1)
    mask[0, :] = -1
    mask[4, 7] = -1
    w = unet_weight_map(mask)
    assert (w[0] == 0).all() and w[4, 7] == 0
    assert (w[mask >= 0] > 0).all()
    # an ignored square is no object: the gap next to the remaining square gets no term
    mask = two_squares(gap=1)
    mask[2:7, 8:13] = -1
    w = unet_weight_map(mask, class_weights=None)
    assert w[4, 7] == 1.0 and (w[2:7, 8:13] == 0).all()


def test_background_objects_membrane():
    membrane = np.zeros((7, 11), np.int32)
    membrane[:, 5] = 1  # two cells (background components) split by a 1-px membrane
    w = unet_weight_map(membrane, objects="background", class_weights=None)
    # membrane pixel: 1 to each cell -> 1 + 10*exp(-0.08) = 10.231163
    np.testing.assert_allclose(w[:, 5], 10.231163, atol=1e-5)
    np.testing.assert_array_equal(w[:, [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]], 1.0)
    # as foreground objects the membrane is one object: no border term anywhere
    np.testing.assert_array_equal(unet_weight_map(membrane, class_weights=None), 1.0)


def test_diagonal_membrane_needs_4_connectivity():
    diag = np.eye(8, dtype=np.int32)  # cells above and below touch only diagonally
    w4 = unet_weight_map(diag, objects="background", class_weights=None)
    # (3, 3): d = 1 to (3, 4) above and (4, 3) below -> 1 + 9.231163
    assert w4[3, 3] == pytest.approx(10.231163, abs=1e-5)
    w8 = unet_weight_map(diag, objects="background", class_weights=None, connectivity=8)
    assert w8[3, 3] == 1.0  # 8-connected, the two cells are one object


# --------------------------------------------------------------------------- brute force


def brute_force(labels, w0, sigma):
    """All-pairs reference: per object min distance, two smallest, full exp (no cut-off)."""
    comp, n = ndimage.label(labels >= 1)  # 4-connectivity
    h, w = labels.shape
    grid = np.stack(np.mgrid[:h, :w], -1).reshape(-1, 2).astype(np.float64)
    dist = np.full((h * w, max(n, 2)), np.inf)
    for i in range(1, n + 1):
        pts = np.argwhere(comp == i).astype(np.float64)
        dist[:, i - 1] = np.sqrt(((grid[:, None] - pts[None]) ** 2).sum(-1)).min(1)
    dist.sort(axis=1)
    d1, d2 = dist[:, 0].reshape(h, w), dist[:, 1].reshape(h, w)
    counts = np.bincount(labels.ravel())
    present = counts > 0
    cw = np.zeros(counts.size)
    cw[present] = labels.size / (present.sum() * counts[present])
    term = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
    return cw[labels] + np.where(labels >= 1, 0.0, term), d1, d2


@pytest.mark.parametrize("sigma", [5.0, 2.0])
def test_matches_brute_force(sigma):
    rng = np.random.default_rng(3)
    labels = (ndimage.gaussian_filter(rng.random((32, 36)), 1.5) > 0.55).astype(np.int32)
    labels[labels == 1] += rng.integers(0, 2, (labels == 1).sum())  # classes 1 and 2
    assert ndimage.label(labels >= 1)[1] >= 4
    ref, d1_ref, d2_ref = brute_force(labels, 10.0, sigma)
    d1, d2 = nearest_object_distances(labels >= 1)
    np.testing.assert_allclose(d1, d1_ref, atol=1e-4)
    np.testing.assert_allclose(d2, d2_ref, atol=1e-4)
    exact = unet_weight_map(labels, sigma=sigma, truncate=None)
    np.testing.assert_allclose(exact, ref, atol=1e-4)
    # cut-off at d1 + d2 > 6 sigma: error <= 10 * exp(-18) = 1.5e-7 (sigma=2: cut at 12 px)
    np.testing.assert_allclose(unet_weight_map(labels, sigma=sigma), ref, atol=1e-4)
    assert np.abs(unet_weight_map(labels, sigma=sigma) - exact).max() <= 2e-7 + 1e-5


def test_weight_maps_list_and_array():
    masks = [two_squares(1), two_squares(2)]
    out = weight_maps(masks, class_weights=None)
    assert isinstance(out, list) and [m.shape for m in out] == [(9, 15), (9, 16)]
    np.testing.assert_array_equal(out[1], unet_weight_map(masks[1], class_weights=None))
    arr = weight_maps(np.stack([masks[0], masks[0]])[..., None], w0=0.0)
    assert arr.shape == (2, 9, 15) and arr.dtype == np.float32


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sigma": 0.0}, "sigma"),
        ({"sigma": -1.0}, "sigma"),
        ({"w0": -1.0}, "w0"),
        ({"w0": float("nan")}, "w0"),
        ({"objects": "cells"}, "objects"),
        ({"class_weights": "inverse"}, "class_weights"),
        ({"truncate": 0}, "truncate"),
        ({"connectivity": 6}, "connectivity"),
    ],
)
def test_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        unet_weight_map(two_squares(1), **kwargs)


def test_label_map_errors():
    with pytest.raises(ValueError, match="shape"):
        unet_weight_map(np.zeros((2, 4, 4), np.int32))
    with pytest.raises(ValueError, match="probabilities"):
        unet_weight_map(np.full((4, 4), 0.3, np.float32))
    with pytest.raises(ValueError, match="ignore_label"):
        unet_weight_map(np.array([[0, -2], [1, 1]]))


def test_speed_512_with_hundreds_of_objects():
    rng = np.random.default_rng(0)
    labels = np.zeros((512, 512), np.uint8)
    for _ in range(300):
        y, x = (int(v) for v in rng.integers(5, 507, 2))
        cv2.circle(labels, (x, y), int(rng.integers(3, 8)), 1, -1)
    n = cv2.connectedComponents(labels, connectivity=4)[0] - 1
    assert n >= 150
    unet_weight_map(labels[:64, :64])  # warm-up
    start = time.perf_counter()
    w = unet_weight_map(labels.astype(np.int32))
    elapsed = time.perf_counter() - start
    assert w.shape == (512, 512) and np.isfinite(w).all()
    assert elapsed < 2.0, f"{n} objects took {elapsed:.2f} s"


def test_docstring_examples_and_imports():
    result = doctest.testmod(unet_lib.weightmap, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted >= 10
    tree = ast.parse(Path(unet_lib.weightmap.__file__).read_text())
    imported = {
        a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    imported |= {
        n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
    }
    own = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert {m for m in own if m.startswith("unet_lib")} <= {"unet_lib.checks"}, own  # no Keras
    assert imported <= {"__future__", "math", "numbers", "collections", "cv2", "numpy", "unet_lib"}
