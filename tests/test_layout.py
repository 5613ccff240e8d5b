"""The layout fingerprint (does a pixel's row or column tell its class?) and what the plan
does with it and with many classes: the augmentation, the test-time augmentation that
matches it, the loss and the class weights."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from unet_lib.data import AugmentConfig
from unet_lib.training import TrainConfig
from unet_lib.training.calibration import evaluation_settings, trained_tta
from unet_lib.training.plan import DatasetFingerprint, layout_information, plan_training


def test_layout_information_by_hand():
    # 8 x 4 map, two bands of 4 rows: band 0 is 3/4 class 0, band 1 is 3/4 class 1
    m = np.zeros((8, 4), int)
    m[:4, 3], m[4:, :3] = 1, 1  # band 0: 12 zeros, 4 ones; band 1: 4 zeros, 12 ones
    # p(b, c) = [[3/8, 1/8], [1/8, 3/8]], p(b) = p(c) = 1/2:
    # I = 2 (3/8 ln(3/2)) + 2 (1/8 ln(1/2)) = 0.304099 - 0.173287 = 0.130812 nats; H = ln 2
    assert layout_information([m], 2, axis=0, bands=2) == pytest.approx(0.130812 / math.log(2))
    # by columns: columns 0-1 are half 0 / half 1 and so are columns 2-3 -> no information
    assert layout_information([m], 2, axis=1, bands=2) == pytest.approx(0.0, abs=1e-12)


def test_layout_information_edges():
    assert layout_information([np.zeros((6, 6), int)], 2) == 0.0  # one class: no entropy
    m = np.tile(np.array([[0, 1]]), (8, 4))  # stripes by column: rows tell nothing
    assert layout_information([m], 2, axis=0) == pytest.approx(0.0, abs=1e-12)
    assert layout_information([m], 2, axis=1, bands=8) == pytest.approx(1.0)
    ignored = m.copy()
    ignored[:, 0] = -1  # ignored pixels count nowhere: the rest still fixes the class
    assert layout_information([ignored[..., None]], 2, axis=1, bands=8) == pytest.approx(1.0)


def test_a_rotated_copy_has_no_layout():
    # one image and its upside-down copy: the classes no longer depend on the row
    m = np.repeat(np.array([0, 0, 1, 2]), 4)[:, None] * np.ones((1, 16), int)
    assert layout_information([m], 3) > 0.5
    assert layout_information([m, m[::-1]], 3) < layout_information([m], 3) / 2


def _fp(rows=0.0, columns=0.0, fractions=(0.77, 0.23)):
    return DatasetFingerprint(
        num_pairs=100, median_size=(512, 683), min_size=(512, 600), channels=3,
        intensity_mean=[0.5] * 3, intensity_std=[0.2] * 3,
        intensity_percentiles=[[0.0, 1.0]] * 3,
        class_names=[f"c{i}" for i in range(len(fractions))],
        class_fractions=list(fractions), object_diameter={}, object_width={},
        is_stack=False, layout_rows=rows, layout_columns=columns,
    )  # fmt: skip


def test_canonical_up_keeps_photographs_upright():
    plan = plan_training(_fp(rows=0.23))
    augment = AugmentConfig.from_dict(plan.options["augment"])
    assert augment.flip and not augment.flip_vertical and not augment.rotate90
    assert augment.rotation_degrees == 0 and augment.scale_range == (0.9, 1.1)
    assert "left-right flips only" in plan.reasons["augment"]
    # a layout fixed by columns too: no flips at all
    sides = AugmentConfig.from_dict(plan_training(_fp(0.3, 0.2)).options["augment"])
    assert not sides.flip and not sides.rotate90
    # microscopy (the shared sets score <= 0.02): every flip and turn, as before
    plan = plan_training(_fp(rows=0.02, columns=0.01))
    assert plan.options["augment"] is True and "no canonical orientation" in plan.reasons["augment"]


def test_many_classes_take_weighted_cross_entropy():
    nine = (0.054, 0.43, 0.044, 0.008, 0.054, 0.158, 0.131, 0.086, 0.035)  # the facade shares
    plan = plan_training(_fp(rows=0.23, fractions=nine))
    assert plan.options["loss"] == "ce" and plan.options["class_weights"] == "balanced"
    assert "54x" in plan.reasons["class_weights"]  # 0.43 / 0.008 = 53.75
    five = (0.6, 0.3, 0.05, 0.044, 0.006)  # VNC-like: Dice + CE, no weights
    plan = plan_training(_fp(fractions=five))
    assert plan.options["loss"] == "dice_ce" and plan.options["class_weights"] is None


@pytest.mark.parametrize(
    "augment, expected",
    [
        (True, True),  # all eight
        (False, False),
        ({"flip": True, "flip_vertical": False, "rotate90": False}, 2),  # identity, left-right
        ({"flip": True, "rotate90": False}, 4),  # the four flips
        ({"flip": False, "rotate90": False}, False),
        ({"flip": False, "rotate90": True}, True),
    ],
)
def test_test_time_augmentation_follows_training(augment, expected):
    assert trained_tta(TrainConfig(augment=augment)) == expected


def test_evaluation_settings_read_a_count():
    assert evaluation_settings({"eval_tta": 2, "eval_threshold": 0.5}) == (2, 0.5)
    assert evaluation_settings({"eval_tta": "auto"}) == (False, 0.5)
    assert evaluation_settings({"eval_tta": True, "eval_threshold": 0.45}) == (True, 0.45)
    assert TrainConfig(eval_tta=2).eval_tta == 2
    for bad in (0, 9, 2.0, "two"):
        with pytest.raises(ValueError, match="eval_tta"):
            TrainConfig(eval_tta=bad)


def test_upright_augmentation_never_turns_an_image_upside_down():
    import tensorflow as tf

    from unet_lib.data import augment_pair

    image = np.arange(16 * 16, dtype=np.float32).reshape(16, 16, 1) / 256
    mask = (image[..., 0] * 4).astype(np.int32)
    config = dataclasses.replace(AugmentConfig.none(), flip=True, flip_vertical=False)
    seen = set()
    for seed in range(16):
        out, _ = augment_pair(image, mask, config, seed=tf.constant([seed, 1], tf.int64))
        out = out.numpy()
        assert np.array_equal(out, image) or np.array_equal(out, image[:, ::-1])
        seen.add(out.tobytes())
    assert len(seen) == 2  # both the identity and the left-right mirror occur


def test_class_weights_reach_the_loss_once():
    # train() turns class_weights into per-pixel sample weights; the loss gets none itself
    from unet_lib.training import make_loss

    loss = make_loss(TrainConfig(loss="ce", class_weights=[1.0, 5.0]))
    assert loss.get_config()["class_weights"] is None
