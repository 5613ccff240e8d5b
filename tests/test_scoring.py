"""Tests for evaluation.scoring: hand-worked values and cross-checks with unet_lib.metrics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from keras import ops

from unet_lib import IGNORE_LABEL
from unet_lib.evaluation.randerror import rand_error
from unet_lib.evaluation.report import per_image_table, to_jsonable
from unet_lib.evaluation.scoring import foreground_classes, score_label_maps
from unet_lib.metrics import dice_score, iou_score, per_image_scores


def np_(x):
    return np.asarray(ops.convert_to_numpy(x), np.float64)


def onehot(labels, k):
    return np.eye(k, dtype=np.float32)[labels]


def random_maps(seed, num_labels, n=3, shape=(6, 7), ignore=True):
    rng = np.random.default_rng(seed)
    truths = rng.integers(0, num_labels, (n, *shape)).astype(np.int32)
    preds = rng.integers(0, num_labels, (n, *shape)).astype(np.int32)
    if ignore:
        truths[rng.random(truths.shape) < 0.15] = IGNORE_LABEL
    return truths, preds


@pytest.mark.parametrize("num_labels", [2, 3])
def test_scores_match_metrics_functions(num_labels):
    truths, preds = random_maps(num_labels, num_labels)
    names = ["background", *(f"c{k}" for k in range(1, num_labels))]
    r = score_label_maps(truths, preds, names)
    num_classes = 1 if num_labels == 2 else num_labels
    y_pred = preds[..., None].astype(np.float32) if num_labels == 2 else onehot(preds, num_labels)
    kw = dict(reduction="none", include_background=True, ignore_class=IGNORE_LABEL)
    dice = np_(dice_score(truths, y_pred, num_classes, **kw))
    iou = np_(iou_score(truths, y_pred, num_classes, **kw))
    per_image = per_image_scores(truths, y_pred, num_classes, ignore_class=IGNORE_LABEL)
    for k, name in enumerate(names):
        assert r["per_class"][name]["dice"] == pytest.approx(dice[k])
        assert r["per_class"][name]["iou"] == pytest.approx(iou[k])
        for i, record in enumerate(r["per_image"]):
            assert record["dice"][name] == pytest.approx(np_(per_image["dice"])[i, k])
            assert record["iou"][name] == pytest.approx(np_(per_image["iou"])[i, k])
    assert r["mean_dice"] == pytest.approx(np.mean(dice[1:]))
    mean_iou = np_(iou_score(truths, y_pred, num_classes, ignore_class=IGNORE_LABEL))
    assert r["mean_iou"] == pytest.approx(float(mean_iou))
    valid = truths != IGNORE_LABEL
    accuracy = np.mean(truths[valid] == preds[valid])
    assert r["pixel_accuracy"] == pytest.approx(accuracy)
    assert r["pixel_error"] == pytest.approx(1 - accuracy)
    assert ("rand_error" in r) == (num_labels == 2)
    if num_labels == 2:
        each = [rand_error(t, p) for t, p in zip(truths, preds, strict=True)]
        assert r["rand_error"] == pytest.approx(np.nanmean(each))
        assert [x["rand_error"] for x in r["per_image"]] == pytest.approx(each)


def test_precision_recall_by_hand():
    truth = np.array([[0, 1, 1, 1], [0, 0, 2, 2]], np.int32)
    pred = np.array([[0, 1, 0, 2], [1, 0, 2, 2]], np.int32)
    # class 1: tp = 1 (0,1); fp = 1 (1,0); fn = 2 (0,2), (0,3) -> precision 1/2, recall 1/3
    # class 2: tp = 2; fp = 1 (0,3); fn = 0 -> precision 2/3, recall 1
    # class 0: tp = 2; fp = 1 (0,2); fn = 1 (1,0) -> precision 2/3, recall 2/3
    r = score_label_maps([truth], [pred], ["background", "a", "b"])
    pc = r["per_class"]
    assert (pc["a"]["precision"], pc["a"]["recall"]) == pytest.approx((1 / 2, 1 / 3))
    assert (pc["b"]["precision"], pc["b"]["recall"]) == pytest.approx((2 / 3, 1.0))
    assert (pc["background"]["precision"], pc["background"]["recall"]) == pytest.approx(
        (2 / 3,) * 2
    )
    assert (pc["a"]["tp"], pc["a"]["fp"], pc["a"]["fn"]) == (1, 1, 2)
    assert r["pixel_accuracy"] == pytest.approx(5 / 8)  # 5 of 8 pixels right


def test_pooled_differs_from_per_image_mean():
    truths = np.array([[[1, 0, 0, 0]], [[1, 1, 1, 1]]], np.int32)
    preds = np.array([[[1, 0, 0, 0]], [[1, 0, 0, 0]]], np.int32)
    # image 0: foreground tp = 1 -> Dice 1; image 1: tp = 1, fn = 3 -> 2 / (2 + 3) = 0.4
    # per-image mean = (1 + 0.4) / 2 = 0.7; pooled: tp = 2, fn = 3 -> 4 / 7 = 0.5714
    r = score_label_maps(truths, preds, ["background", "foreground"], stems=["a", "b"])
    assert r["per_class"]["foreground"]["dice"] == pytest.approx(4 / 7)
    assert r["mean_dice"] == pytest.approx(4 / 7)
    assert r["per_image_mean_dice"] == pytest.approx(0.7)
    assert [x["dice"]["foreground"] for x in r["per_image"]] == pytest.approx([1.0, 0.4])
    assert [row["stem"] for row in per_image_table(r)] == ["b", "a"]  # worst first


def test_mean_excludes_background_and_skips_nan():
    truth = np.array([[0, 0, 1, 1]], np.int32)
    pred = np.array([[0, 1, 1, 1]], np.int32)
    # background 2/3, a: tp 2 fp 1 -> 4/5, b absent from both -> NaN (left out)
    r = score_label_maps([truth], [pred], ["background", "a", "b"])
    assert math.isnan(r["per_class"]["b"]["dice"])
    assert r["per_class"]["background"]["dice"] == pytest.approx(2 / 3)
    assert r["mean_dice"] == pytest.approx(4 / 5)  # the foreground classes a, b only
    assert r["foreground_classes"] == ["a", "b"]
    r = score_label_maps([truth], [pred], ["x", "a", "b"])  # no "background": all classes
    assert r["mean_dice"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert foreground_classes(["Background", "cell"]) == ["cell"]


def test_ignored_pixels_change_nothing():
    truths, preds = random_maps(7, 2, shape=(10, 10))
    changed = np.where(truths == IGNORE_LABEL, 1 - preds, preds)
    names = ["background", "membrane"]
    a, b = score_label_maps(truths, preds, names), score_label_maps(truths, changed, names)
    assert json.dumps(to_jsonable(a)) == json.dumps(to_jsonable(b))
    labelled = int((truths != IGNORE_LABEL).sum())
    counted = sum(c["tp"] + c["fn"] for c in a["per_class"].values())
    assert counted == labelled < truths.size


def test_score_label_maps_rejects_bad_predictions():
    truth = np.zeros((2, 2), np.int32)
    with pytest.raises(ValueError, match="outside 0..1"):
        score_label_maps([truth], [np.full((2, 2), 2)], ["background", "fg"])
    with pytest.raises(ValueError, match="integer label map"):
        score_label_maps([truth], [np.zeros((2, 2), np.float32)], ["background", "fg"])
    with pytest.raises(ValueError, match="same"):
        score_label_maps([truth], [np.zeros((2, 3), np.int32)], ["background", "fg"])


def test_scorer_streams_the_same_result_and_names_the_image():
    from unet_lib.evaluation import Scorer

    truths, preds = random_maps(5, 3)
    names = ["background", "a", "b"]
    scorer = Scorer(names)
    records = [
        scorer.add(f"s{i}", t, p) for i, (t, p) in enumerate(zip(truths, preds, strict=True))
    ]
    expected = score_label_maps(truths, preds, names, stems=["s0", "s1", "s2"])
    assert json.dumps(to_jsonable(scorer.result())) == json.dumps(to_jsonable(expected))
    assert records == expected["per_image"]
    with pytest.raises(ValueError, match=r"^bad: prediction holds labels \[3\] outside 0\.\.2"):
        scorer.add("bad", truths[0], np.full_like(preds[0], 3))
