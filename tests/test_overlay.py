"""Tests for unet_lib.viz.palette: the class palette and label-map overlays."""

from __future__ import annotations

import ast

import numpy as np
import pytest

from unet_lib.viz import palette as overlay_module
from unet_lib.viz.palette import label_colors, overlay


def square_mask(h=12, w=12, top=2, left=3, side=5, value=1):
    mask = np.zeros((h, w), np.int32)
    mask[top : top + side, left : left + side] = value
    return mask


def test_label_colors():
    pal = label_colors(3)
    assert pal.shape == (3, 3) and pal.dtype == np.uint8
    assert pal[0].tolist() == [0, 0, 0]  # background black
    assert pal[1].tolist() == [230, 159, 0]  # Okabe-Ito orange
    big = label_colors(40)
    np.testing.assert_array_equal(big[:3], pal)  # fixed: a prefix of the longer palette
    assert len({tuple(c) for c in big}) == 40  # all distinct
    assert label_colors(0).shape == (0, 3)


def test_overlay_tint_changes_only_labelled_pixels():
    image = np.full((12, 12, 1), 0.2, np.float32)  # grey 0.2 -> 51
    mask = square_mask()
    mask[11, 11] = -1
    out = overlay(image, mask, alpha=0.45)
    assert out.shape == (12, 12, 3) and out.dtype == np.uint8
    background = mask == 0
    assert (out[background] == 51).all()  # untouched grey
    orange = np.array([230, 159, 0])
    expected = np.round(0.55 * 51 + 0.45 * orange)  # 131.55 -> 132, 99.6 -> 100, 28.05 -> 28
    assert (out[mask == 1] == expected).all()
    np.testing.assert_array_equal(out[11, 11], np.round(0.55 * 51 + 0.45 * 128))  # ignore grey
    out = overlay(image, mask, ignore_color=None)
    assert (out[11, 11] == 51).all()


def test_overlay_outline_marks_only_the_boundary():
    image = np.full((12, 12), 0.5, np.float32)
    mask = square_mask()  # 5x5 square at rows 2..6, cols 3..7
    out = overlay(image, mask[..., None], mode="outline")
    changed = (out != 128).any(-1)
    ring = np.zeros((12, 12), bool)
    ring[2:7, 3:8] = True
    ring[3:6, 4:7] = False  # the 3x3 interior stays
    np.testing.assert_array_equal(changed, ring)  # 16 boundary pixels
    assert (out[ring] == [230, 159, 0]).all()


def test_overlay_inputs_and_errors():
    rgb = np.zeros((8, 8, 3), np.uint8)
    assert overlay(rgb, np.zeros((8, 8), np.int64)).shape == (8, 8, 3)
    two_channel = np.ones((8, 8, 2), np.float32)
    assert overlay(two_channel, np.zeros((8, 8), int))[0, 0].tolist() == [255, 255, 0]
    custom = overlay(rgb, np.ones((8, 8), int), colors=[[0, 0, 0], [1.0, 0, 0]], alpha=1)
    assert (custom == [255, 0, 0]).all()
    with pytest.raises(ValueError, match="shape"):
        overlay(rgb, np.zeros((4, 4), int))
    with pytest.raises(ValueError, match="mode"):
        overlay(rgb, np.zeros((8, 8), int), mode="fill")
    with pytest.raises(ValueError, match="alpha"):
        overlay(rgb, np.zeros((8, 8), int), alpha=1.5)
    with pytest.raises(ValueError, match="colors"):
        overlay(rgb, np.full((8, 8), 2), colors=[[0, 0, 0], [255, 0, 0]])
    with pytest.raises(ValueError, match="integer"):
        overlay(rgb, np.full((8, 8), 0.4))


def test_no_matplotlib_tensorflow_or_keras_import():
    # pixels only: overlays work without a plotting or deep-learning stack
    tree = ast.parse(open(overlay_module.__file__).read())
    imported = {
        a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    imported |= {
        n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
    }
    assert not imported & {"matplotlib", "tensorflow", "keras", "torch", "jax"}, imported


def test_error_map_paints_true_and_false_positives_and_false_negatives():
    from unet_lib.viz.palette import ERROR_COLORS, error_map

    image = np.full((2, 3), 0.5, np.float32)  # grey 128 after to_rgb (round(0.5 * 255))
    truth = np.array([[1, 0, 2], [2, -1, 0]])
    pred = np.array([[1, 1, 1], [0, 2, 0]])
    out = error_map(image, truth, pred, alpha=0.5).astype(int)
    base = round(128 * 0.6)  # 77: the dimmed grey image
    tp, fp, fn = (np.array(c) for c in ERROR_COLORS.values())
    # mixed = 0.5 * 76.8 + 0.5 * colour (the dimmed grey before rounding is 76.8)
    mix = lambda c: np.round(0.5 * 76.8 + 0.5 * c).astype(int)  # noqa: E731
    np.testing.assert_array_equal(out[0, 0], mix(tp))  # class 1 predicted as 1
    np.testing.assert_array_equal(out[0, 1], mix(fp))  # background predicted as 1
    np.testing.assert_array_equal(out[0, 2], mix(fp))  # class 2 predicted as class 1
    np.testing.assert_array_equal(out[1, 0], mix(fn))  # class 2 predicted as background
    np.testing.assert_array_equal(out[1, 1], [base] * 3)  # ignored: not scored
    np.testing.assert_array_equal(out[1, 2], [base] * 3)  # correct background
    assert len({tuple(c) for c in ERROR_COLORS.values()}) == 3
    with pytest.raises(ValueError, match="must have one size"):
        error_map(image, truth, pred[:, :2])
