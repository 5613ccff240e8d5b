"""Tests for evaluation.evaluator: prediction folders, JSON and reports, a model end to end.

Scoring (hand-worked values, metric cross-checks): test_scoring.py; Rand error:
test_randerror.py.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from unet_lib import IGNORE_LABEL
from unet_lib.data.folder import DatasetError, LabelMapping, load_dataset
from unet_lib.evaluation import (
    evaluate,
    evaluate_folder,
    format_report,
    per_image_table,
    save_json,
    score_label_maps,
    to_jsonable,
)

ISBI = {"labels": {"background": 255, "membrane": 0}, "ignore_value": 128}
TOP_KEYS = {
    "num_images", "classes", "foreground_classes", "mean_dice", "mean_iou", "pixel_accuracy",
    "pixel_error", "per_image_mean_dice", "per_image_mean_iou", "per_class", "per_image",
    "confusion_matrix",
}  # fmt: skip


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
    assert "--stems" not in str(err.value)  # no such flag: the fix it names must exist
    assert err.value.header.startswith(f"predictions {pred_dir}")
    (pred_dir / "zz.png").unlink()
    assert evaluate_folder(pred_dir, data, stems=["s0", "s1"])["num_images"] == 2
    cv2.imwrite(str(pred_dir / "s2.png"), np.full((16, 16), 7, np.uint8))  # unknown grey value
    with pytest.raises(DatasetError, match=r"s2\.png.*values \{7\}") as err:
        evaluate_folder(pred_dir, data)
    assert err.value.header == f"a problem in the predictions {pred_dir}:"  # not "dataset"
    cv2.imwrite(str(pred_dir / "s2.png"), np.zeros((8, 16), np.uint8))
    with pytest.raises(DatasetError, match="differs from the mask") as err:
        evaluate_folder(pred_dir, data)
    assert "predictions" in err.value.header
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
    (tn, fp), (fn, tp) = loaded["confusion_matrix"]  # rows: truth background, membrane
    membrane = loaded["per_class"]["membrane"]
    assert (tp, fp, fn) == (membrane["tp"], membrane["fp"], membrane["fn"])
    assert tn + fp + fn + tp == sum(int((t >= 0).sum()) for t in truths)  # scored pixels
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
    from unet_lib.inference.predictor import predict

    data, truths, _ = isbi
    model = unet_lib.build_unet((None, None, 1), 1, depth=2, base_filters=2)
    dataset = load_dataset(data)
    for tta in (False, True):
        r = evaluate(model, data, tta=tta, stems=["s0", "s2"], verbose=1 + tta)  # bar, lines
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


def test_split_out_names_still_importable_from_evaluation():
    # randerror, report and scoring were split out of evaluation.py, which re-exports them
    from unet_lib import evaluation
    from unet_lib.evaluation import randerror, report, scoring

    for module in (randerror, report, scoring):
        for name in module.__all__:
            assert getattr(evaluation, name) is getattr(module, name), name
            assert name in evaluation.__all__, name
