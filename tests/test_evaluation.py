"""Tests for unet_lib.evaluation: hand-worked values, metric cross-checks, Rand error, folders."""

from __future__ import annotations

import itertools
import json
import math

import cv2
import numpy as np
import pytest
from keras import ops

from unet_lib import IGNORE_LABEL
from unet_lib.data.folder import DatasetError, LabelMapping, load_dataset
from unet_lib.evaluation import (
    adapted_rand,
    cell_segments,
    evaluate,
    evaluate_folder,
    foreground_classes,
    format_report,
    per_image_table,
    rand_error,
    save_json,
    score_label_maps,
    to_jsonable,
)
from unet_lib.metrics import dice_score, iou_score, per_image_scores

ISBI = {"labels": {"background": 255, "membrane": 0}, "ignore_value": 128}
TOP_KEYS = {
    "num_images", "classes", "foreground_classes", "mean_dice", "mean_iou", "pixel_accuracy",
    "pixel_error", "per_image_mean_dice", "per_image_mean_iou", "per_class", "per_image",
}  # fmt: skip


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


def write_dataset(root, masks, mapping=ISBI, stems=None):
    """A dataset folder: random grey images, masks in the mapping's grey values."""
    m = LabelMapping.from_dict(mapping)
    stems = stems or [f"s{i}" for i in range(len(masks))]
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "dataset.json").write_text(json.dumps(mapping))
    rng = np.random.default_rng(0)
    for stem, mask in zip(stems, masks, strict=True):
        cv2.imwrite(
            str(root / "images" / f"{stem}.png"), rng.integers(0, 256, mask.shape, np.uint8)
        )
        cv2.imwrite(str(root / "masks" / f"{stem}.png"), m.decode(mask))
    return root


def write_predictions(folder, preds, mapping=ISBI, stems=None):
    m = LabelMapping.from_dict(mapping)
    folder.mkdir(parents=True, exist_ok=True)
    stems = stems or [f"s{i}" for i in range(len(preds))]
    for stem, pred in zip(stems, preds, strict=True):
        cv2.imwrite(str(folder / f"{stem}.png"), m.decode(pred))
    return folder


# --------------------------------------------------------------------------- Rand error

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


# --------------------------------------------------------------------------- scores


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


# --------------------------------------------------------------------------- folders + JSON


@pytest.fixture
def isbi(tmp_path):
    truths, preds = random_maps(11, 2, n=3, shape=(16, 16))
    data = write_dataset(tmp_path / "data", truths)
    return data, truths, preds


def test_evaluate_folder_matches_direct_scores(isbi, tmp_path):
    data, truths, preds = isbi
    raw = cv2.imread(str(data / "masks" / "s0.png"), cv2.IMREAD_UNCHANGED)
    assert raw[truths[0] == 1].max() == 0 and raw[truths[0] == 0].min() == 255  # inverted
    pred_dir = write_predictions(tmp_path / "pred", preds)
    r = evaluate_folder(pred_dir, data)
    direct = score_label_maps(truths, preds, ["background", "membrane"], stems=["s0", "s1", "s2"])
    in_memory = evaluate(None, data, predictions={f"s{i}": p for i, p in enumerate(preds)})
    for other in (direct, in_memory):
        assert json.dumps(to_jsonable({k: r[k] for k in TOP_KEYS | {"rand_error"}})) == json.dumps(
            to_jsonable({k: other[k] for k in TOP_KEYS | {"rand_error"}})
        )
    assert r["settings"]["predictions"] == str(pred_dir)
    sub = evaluate_folder(pred_dir, load_dataset(data), stems=["s2", "s0"])  # held-out subset
    assert [x["stem"] for x in sub["per_image"]] == ["s2", "s0"]
    assert sub["per_image"][0] == r["per_image"][2]


def test_evaluate_folder_errors_name_the_stems(isbi, tmp_path):
    data, truths, preds = isbi
    pred_dir = write_predictions(tmp_path / "pred", preds[:2], stems=["s0", "s1"])
    cv2.imwrite(str(pred_dir / "zz.png"), np.zeros((16, 16), np.uint8))
    with pytest.raises(DatasetError) as err:
        evaluate_folder(pred_dir, data)
    assert "s2" in str(err.value) and "zz" in str(err.value)
    (pred_dir / "zz.png").unlink()
    assert evaluate_folder(pred_dir, data, stems=["s0", "s1"])["num_images"] == 2
    cv2.imwrite(str(pred_dir / "s2.png"), np.full((16, 16), 7, np.uint8))  # unknown grey value
    with pytest.raises(DatasetError, match=r"s2\.png.*values \{7\}"):
        evaluate_folder(pred_dir, data)
    cv2.imwrite(str(pred_dir / "s2.png"), np.zeros((8, 16), np.uint8))
    with pytest.raises(DatasetError, match="differs from the mask"):
        evaluate_folder(pred_dir, data)
    with pytest.raises(DatasetError, match="not found"):
        evaluate_folder(tmp_path / "nope", data)
    with pytest.raises(ValueError, match="not in the dataset"):
        evaluate_folder(pred_dir, data, stems=["s9"])
    with pytest.raises(ValueError, match="either a model or predictions"):
        evaluate(None, data)


def test_save_json_writes_null_and_the_contract_keys(isbi, tmp_path):
    data, truths, preds = isbi
    truths = truths.copy()
    truths[2][truths[2] == 0] = 1  # image s2 has no cells: its Rand error is undefined
    r = score_label_maps(truths, preds, ["background", "membrane"], stems=["s0", "s1", "s2"])
    path = save_json(r, tmp_path / "out" / "evaluation.json")
    text = path.read_text()
    assert "NaN" not in text and '"rand_error": null' in text
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    loaded = json.loads(text)
    assert set(loaded) == TOP_KEYS | {"rand_error"}
    assert set(loaded["per_class"]) == {"background", "membrane"}
    assert set(loaded["per_class"]["membrane"]) == {"dice", "iou", "precision", "recall",
                                                    "tp", "fp", "fn"}  # fmt: skip
    assert set(loaded["per_image"][0]) == {"stem", "dice", "iou", "mean_dice", "mean_iou",
                                           "pixel_accuracy", "rand_error"}  # fmt: skip
    assert loaded["rand_error"] == pytest.approx(
        np.nanmean([x["rand_error"] for x in r["per_image"]])
    )
    report = format_report(loaded)  # works on the JSON form too
    assert "membrane" in report and "Rand error" in report and "worst images" in report
    assert format_report(r) == report
    rows = per_image_table(loaded)
    dice = [row["dice"] for row in rows]
    assert dice == sorted(dice) and rows[0].keys() >= {"stem", "dice", "iou", "rand_error"}
    with pytest.raises(TypeError):
        to_jsonable({"x": object()})


# --------------------------------------------------------------------------- with a model


def test_evaluate_with_a_tiny_model_end_to_end(isbi):
    import unet_lib
    from unet_lib.inference import predict

    data, truths, _ = isbi
    model = unet_lib.build_unet((None, None, 1), 1, depth=2, base_filters=2)
    dataset = load_dataset(data)
    for tta in (False, True):
        r = evaluate(model, data, tta=tta, stems=["s0", "s2"], verbose=1)
        labels = [predict(model, dataset.images[i], tta=tta).labels for i in (0, 2)]
        direct = score_label_maps([truths[0], truths[2]], labels, ["background", "membrane"])
        assert r["num_images"] == 2 and r["settings"]["tta"] is tta
        assert r["mean_dice"] == pytest.approx(direct["mean_dice"], nan_ok=True)
        assert r["pixel_accuracy"] == pytest.approx(direct["pixel_accuracy"])
        assert r["rand_error"] == pytest.approx(direct["rand_error"], nan_ok=True)
    assert "pixel accuracy" in format_report(r)
    tiled = evaluate(model, load_dataset(data), tile_size=8, overlap=0.5, stems=["s1"])
    labels = predict(model, dataset.images[1], tile_size=8, overlap=0.5).labels
    names = ["background", "membrane"]
    direct = score_label_maps([truths[1]], [labels], names, stems=["s1"])
    assert tiled["per_image"] == direct["per_image"]
    wrong = unet_lib.build_unet((None, None, 1), 3, depth=2, base_filters=2)
    with pytest.raises(ValueError, match="output channel"):
        evaluate(wrong, data)
    with pytest.raises(ValueError, match="tta and tile_size"):
        evaluate(None, data, predictions={}, tta=True)
