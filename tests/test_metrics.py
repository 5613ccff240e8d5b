"""Tests for unet_lib.metrics: hand-worked values, the empty rule, Keras cross-checks, saving."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from unet_lib.metrics import (
    DiceMetric,
    IoUMetric,
    confusion_counts,
    dice_from_counts,
    dice_score,
    iou_from_counts,
    iou_score,
    nanmean,
    per_image_scores,
)

NAN = float("nan")


def np_(x):
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)


def onehot(labels, k):
    return np.eye(k, dtype=np.float32)[labels]


def close(a, b):
    np.testing.assert_allclose(np_(a), np.asarray(b, dtype=np.float64), rtol=1e-5, atol=1e-6)


def brute_counts(truth, pred, num_labels, valid=None):
    """Plain-loop reference: per-class tp, fp, fn of label maps over valid pixels."""
    truth, pred = np.asarray(truth).ravel(), np.asarray(pred).ravel()
    valid = np.ones(truth.shape, bool) if valid is None else np.asarray(valid).ravel()
    tp, fp, fn = (np.zeros(num_labels) for _ in range(3))
    for t, p, v in zip(truth, pred, valid, strict=True):
        if not v:
            continue
        if t == p:
            tp[t] += 1
        else:
            fp[p] += 1
            fn[t] += 1
    return tp, fp, fn


def random_case(seed, num_classes, shape=(3, 5, 6)):
    rng = np.random.default_rng(seed)
    labels = 2 if num_classes == 1 else num_classes
    y_true = rng.integers(0, labels, size=shape).astype(np.int32)
    probs = rng.random((*shape, num_classes)).astype(np.float32)
    if num_classes > 1:
        probs /= probs.sum(-1, keepdims=True)
    pred = (probs[..., 0] >= 0.5).astype(int) if num_classes == 1 else probs.argmax(-1)
    return y_true, probs, pred


# --------------------------------------------------------------------------- hand-worked


# binary, one 2x3 image; predicted fg where p >= 0.5
#   truth [[0, 1, 1], [0, 0, 1]]   pred [[0, 1, 0], [1, 0, 1]]
#   fg: tp=2 (two agreeing 1s), fp=1 (pixel (1,0)), fn=1 (pixel (0,2))
#   bg: tp=2 ((0,0), (1,1)), fp=1 ((0,2)), fn=1 ((1,0))
#   dice = 2*2 / (4 + 1 + 1) = 2/3 for both; iou = 2 / (2 + 1 + 1) = 1/2
BIN_TRUE = np.array([[[0, 1, 1], [0, 0, 1]]], np.int32)
BIN_PROB = np.array([[[0.2, 0.9, 0.4], [0.6, 0.1, 0.5]]], np.float32)[..., None]


def test_binary_hand_worked():
    tp, fp, fn = confusion_counts(BIN_TRUE, BIN_PROB, 1)
    close(tp, [2, 2])
    close(fp, [1, 1])
    close(fn, [1, 1])
    close(dice_score(BIN_TRUE, BIN_PROB, 1, reduction="none"), [2 / 3])
    close(dice_score(BIN_TRUE, BIN_PROB, 1, include_background=True, reduction="none"), [2 / 3] * 2)
    close(iou_score(BIN_TRUE, BIN_PROB, 1), 0.5)


# 3 classes, one 1x6 image
#   truth [0, 0, 1, 1, 2, 2]   pred [0, 1, 1, 1, 0, 2]
#   class 0: tp=1 fp=1 (px 4) fn=1 (px 1) -> dice 2/4 = 0.5,   iou 1/3
#   class 1: tp=2 fp=1 (px 1) fn=0        -> dice 4/5 = 0.8,   iou 2/3
#   class 2: tp=1 fp=0        fn=1 (px 4) -> dice 2/3,         iou 1/2
#   mean without background: dice (0.8 + 2/3) / 2, iou (2/3 + 1/2) / 2
MC_TRUE = np.array([[[0, 0, 1, 1, 2, 2]]], np.int32)
MC_PROB = onehot(np.array([[[0, 1, 1, 1, 0, 2]]]), 3) * 0.8 + 0.2 / 3


def test_multiclass_hand_worked():
    close(
        dice_score(MC_TRUE, MC_PROB, 3, include_background=True, reduction="none"),
        [0.5, 0.8, 2 / 3],
    )
    close(
        iou_score(MC_TRUE, MC_PROB, 3, include_background=True, reduction="none"),
        [1 / 3, 2 / 3, 0.5],
    )
    close(dice_score(MC_TRUE, MC_PROB, 3), (0.8 + 2 / 3) / 2)
    close(iou_score(MC_TRUE, MC_PROB, 3), (2 / 3 + 0.5) / 2)
    close(dice_score(MC_TRUE, MC_PROB, 3, include_background=True), (0.5 + 0.8 + 2 / 3) / 3)


def test_counts_from_scalars_and_nanmean():
    close(dice_from_counts(2.0, 0.0, 1.0), 0.8)  # 4 / 5
    close(iou_from_counts(2.0, 0.0, 1.0), 2 / 3)  # 2 / 3
    assert np.isnan(np_(dice_from_counts(0.0, 0.0, 0.0)))
    assert np.isnan(np_(iou_from_counts([0.0], [0.0], [0.0]))).all()
    close(nanmean([0.5, NAN, 1.0]), 0.75)
    close(nanmean([[1.0, NAN], [NAN, NAN]], axis=-1)[0], 1.0)
    assert np.isnan(np_(nanmean([[1.0, NAN], [NAN, NAN]]))[1])


# --------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("score", [dice_score, iou_score])
@pytest.mark.parametrize("num_classes", [1, 3])
def test_perfect_and_disjoint(score, num_classes):
    y_true, _, _ = random_case(0, num_classes)
    labels = 2 if num_classes == 1 else num_classes
    perfect = y_true[..., None].astype(np.float32) if num_classes == 1 else onehot(y_true, 3)
    close(
        score(y_true, perfect, num_classes, include_background=True, reduction="none"), [1] * labels
    )
    wrong = (y_true + 1) % labels  # every pixel gets another class
    disjoint = wrong[..., None].astype(np.float32) if num_classes == 1 else onehot(wrong, 3)
    close(
        score(y_true, disjoint, num_classes, include_background=True, reduction="none"),
        [0] * labels,
    )


def test_empty_truth_and_prediction_is_nan_and_excluded():
    y_true = np.zeros((2, 4, 4), np.int32)
    y_pred = np.full((2, 4, 4, 1), 0.1, np.float32)
    # foreground absent from truth and prediction: NaN, not 0 or 1
    assert np.isnan(np_(dice_score(y_true, y_pred, 1, reduction="none"))).all()
    assert np.isnan(np_(iou_score(y_true, y_pred, 1)))
    # with background the mean skips the NaN foreground: mean([1, NaN]) = 1
    close(dice_score(y_true, y_pred, 1, include_background=True), 1.0)
    metric = DiceMetric(1)
    metric.update_state(y_true, y_pred)
    assert np.isnan(np_(metric.result()))
    close(metric.result_per_class()[0], 1.0)


def test_empty_truth_with_prediction_is_zero():
    y_true = np.zeros((1, 4, 4), np.int32)
    y_pred = np.full((1, 4, 4, 1), 0.1, np.float32)
    y_pred[0, 0, 0, 0] = 0.9  # one false-positive pixel: fg tp=0 fp=1 fn=0 -> 0
    close(dice_score(y_true, y_pred, 1), 0.0)
    close(iou_score(y_true, y_pred, 1), 0.0)


def test_absent_class_in_three_class_problem():
    # class 2 appears nowhere; class 1: truth [1,1,0,0] pred [1,0,0,0] -> tp=1 fp=0 fn=1
    y_true = np.array([[[1, 1, 0, 0]]], np.int32)
    y_pred = onehot(np.array([[[1, 0, 0, 0]]]), 3)
    per_class = np_(dice_score(y_true, y_pred, 3, reduction="none"))
    close(per_class[0], 2 / 3)  # 2*1 / (2 + 0 + 1)
    assert np.isnan(per_class[1])
    close(dice_score(y_true, y_pred, 3), 2 / 3)  # mean over class 1 only
    # class 0: tp=2 fp=1 fn=0 -> 4/5; mean(0.8, 2/3) over the two present classes
    close(dice_score(y_true, y_pred, 3, include_background=True), (0.8 + 2 / 3) / 2)


def test_ignored_pixels_label_map_and_one_hot():
    y_true, probs, _ = random_case(1, 3, shape=(2, 4, 5))
    ignored = np.random.default_rng(2).random(y_true.shape) < 0.3
    expected = dice_score(
        y_true[~ignored][None, None], probs[~ignored][None, None], 3, reduction="none"
    )
    with_minus_one = np.where(ignored, -1, y_true)
    got = dice_score(with_minus_one, probs, 3, ignore_class=-1, reduction="none")
    close(got, np_(expected))
    zero_rows = onehot(y_true, 3) * ~ignored[..., None]  # all-zero one-hot row = ignored
    close(dice_score(zero_rows, probs, 3, reduction="none"), np_(expected))
    # out-of-range labels (255) count nowhere as well
    close(dice_score(np.where(ignored, 255, y_true), probs, 3, reduction="none"), np_(expected))


def test_ignore_class_that_is_a_class_index():
    # ignore_class=2 drops the truth-2 pixels; truth [0, 1, 2] pred [0, 1, 1]
    y_true = np.array([[[0, 1, 2]]], np.int32)
    y_pred = onehot(np.array([[[0, 1, 1]]]), 3)
    close(dice_score(y_true, y_pred, 3, ignore_class=2, include_background=True), 1.0)


@pytest.mark.parametrize(
    "make_true",
    [
        lambda y: y,  # (B, H, W) int32
        lambda y: y[..., None],  # (B, H, W, 1)
        lambda y: y.astype(np.float32),  # float labels are cast
        lambda y: y[..., None].astype(np.float64),
        lambda y: onehot(y, 3),  # one-hot (B, H, W, K)
    ],
    ids=["hw", "hw1", "float", "float64-hw1", "one-hot"],
)
def test_truth_encodings_agree(make_true):
    y_true, probs, pred = random_case(3, 3)
    tp, fp, fn = confusion_counts(make_true(y_true), probs, 3)
    for got, want in zip((tp, fp, fn), brute_counts(y_true, pred, 3), strict=True):
        close(got, want)


def test_binary_two_channel_one_hot_truth():
    close(confusion_counts(onehot(BIN_TRUE, 2), BIN_PROB, 1)[0], [2, 2])


# --------------------------------------------------------------------------- options


def test_logits_equal_probabilities():
    y_true, probs, _ = random_case(4, 1)
    logits = np.log(probs / (1 - probs))
    for t in (0.3, 0.5, 0.8):
        want = np_(dice_score(y_true, probs, 1, threshold=t, reduction="none"))
        close(dice_score(y_true, logits, 1, threshold=t, from_logits=True, reduction="none"), want)
    y_true, probs, _ = random_case(5, 4)
    logits = np.log(probs) + 1.7  # softmax(log p + c) = p
    want = np_(iou_score(y_true, probs, 4, reduction="none"))
    close(iou_score(y_true, logits, 4, from_logits=True, reduction="none"), want)


def test_threshold():
    # probs [0.2, 0.4, 0.6, 0.8], truth [0, 1, 1, 1]
    y_true = np.array([[[0, 1, 1, 1]]], np.int32)
    y_pred = np.array([[[[0.2], [0.4], [0.6], [0.8]]]], np.float32)
    close(dice_score(y_true, y_pred, 1, threshold=0.5), 0.8)  # tp=2 fn=1: 4/5
    close(dice_score(y_true, y_pred, 1, threshold=0.3), 1.0)  # tp=3
    close(dice_score(y_true, y_pred, 1, threshold=0.7), 0.5)  # tp=1 fn=2: 2/4
    close(dice_score(y_true, y_pred, 1, threshold=0.1), 6 / 7)  # tp=3 fp=1: 6/7


def test_include_background():
    y_true, probs, _ = random_case(6, 3)
    full = np_(dice_score(y_true, probs, 3, include_background=True, reduction="none"))
    without = np_(dice_score(y_true, probs, 3, reduction="none"))
    assert full.shape == (3,) and without.shape == (2,)
    close(without, full[1:])
    close(dice_score(y_true, probs, 3), full[1:].mean())
    close(dice_score(y_true, probs, 3, include_background=True), full.mean())


@pytest.mark.parametrize("num_classes", [1, 2, 5])
def test_dice_iou_identity(num_classes):
    y_true, probs, _ = random_case(7 + num_classes, num_classes, shape=(2, 9, 7))
    kw = {"include_background": True, "reduction": "none"}
    dice = np_(dice_score(y_true, probs, num_classes, **kw))
    iou = np_(iou_score(y_true, probs, num_classes, **kw))
    np.testing.assert_allclose(dice, 2 * iou / (1 + iou), rtol=1e-5)


@pytest.mark.parametrize("num_classes", [1, 3])
def test_per_image_scores_brute_force(num_classes):
    y_true, probs, pred = random_case(8, num_classes, shape=(4, 3, 3))
    y_true[0] = 0  # image 0: no foreground in truth ...
    probs[0] = 0.1 if num_classes == 1 else onehot(np.zeros((3, 3), int), 3)  # ... nor in pred
    pred[0] = 0
    labels = 2 if num_classes == 1 else num_classes
    scores = per_image_scores(y_true, probs, num_classes)
    for b in range(4):
        tp, fp, fn = brute_counts(y_true[b], pred[b], labels)
        with np.errstate(invalid="ignore", divide="ignore"):
            close(scores["dice"][b], 2 * tp / (2 * tp + fp + fn))
            close(scores["iou"][b], tp / (tp + fp + fn))
    assert np.isnan(np_(scores["dice"])[0, 1:]).all()


def test_sample_weight():
    y_true, probs, pred = random_case(9, 3, shape=(2, 4, 4))
    # per-image weight (B,): image 1 counts twice
    metric = DiceMetric(3, include_background=True)
    metric.update_state(y_true, probs, sample_weight=np.array([1.0, 2.0]))
    counts = [
        a + 2 * b
        for a, b in zip(
            brute_counts(y_true[0], pred[0], 3), brute_counts(y_true[1], pred[1], 3), strict=True
        )
    ]
    close(metric.result_per_class(), np_(dice_from_counts(*counts)))
    # per-pixel zero weight (B, H, W, 1) == ignoring those pixels
    mask = np.random.default_rng(10).random(y_true.shape) < 0.5
    metric = IoUMetric(3)
    metric.update_state(y_true, probs, sample_weight=mask[..., None].astype(np.float32))
    close(metric.result(), np_(iou_score(np.where(mask, y_true, -1), probs, 3, ignore_class=-1)))


# --------------------------------------------------------------------------- streaming metrics


@pytest.mark.parametrize("cls,score", [(DiceMetric, dice_score), (IoUMetric, iou_score)])
def test_streaming_equals_one_big_batch(cls, score):
    y_true, probs, _ = random_case(11, 3, shape=(4, 6, 6))
    metric = cls(3)
    metric.update_state(y_true[:1], probs[:1])
    metric.update_state(y_true[1:], probs[1:])
    close(metric.result(), np_(score(y_true, probs, 3)))
    close(
        metric.result_per_class(),
        np_(score(y_true, probs, 3, include_background=True, reduction="none")),
    )
    metric.reset_state()
    assert np.isnan(np_(metric.result()))
    metric.update_state(y_true[:2], probs[:2])
    close(metric.result(), np_(score(y_true[:2], probs[:2], 3)))


def test_iou_matches_keras_mean_iou():
    y_true, probs, _ = random_case(12, 4, shape=(3, 8, 8))
    keras_iou = keras.metrics.MeanIoU(num_classes=4, sparse_y_pred=False)
    keras_iou.update_state(y_true, probs)
    cm = np_(keras_iou.total_cm)
    want = np.diag(cm) / (cm.sum(0) + cm.sum(1) - np.diag(cm))
    close(iou_score(y_true, probs, 4, include_background=True, reduction="none"), want)
    close(iou_score(y_true, probs, 4, include_background=True), np_(keras_iou.result()))
    # MeanIoU with ignore_class agrees too
    y_ign = np.where(np.random.default_rng(13).random(y_true.shape) < 0.2, -1, y_true)
    keras_iou = keras.metrics.MeanIoU(num_classes=4, ignore_class=-1, sparse_y_pred=False)
    keras_iou.update_state(y_ign, probs)
    close(
        iou_score(y_ign, probs, 4, include_background=True, ignore_class=-1),
        np_(keras_iou.result()),
    )


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_iou_matches_keras_binary_iou(threshold):
    y_true, probs, _ = random_case(14, 1, shape=(2, 7, 7))
    for ids, include_background in (([0, 1], True), ([1], False)):
        keras_iou = keras.metrics.BinaryIoU(target_class_ids=ids, threshold=threshold)
        keras_iou.update_state(y_true[..., None], probs)
        ours = iou_score(
            y_true, probs, 1, include_background=include_background, threshold=threshold
        )
        close(ours, np_(keras_iou.result()))


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: dice_score(BIN_TRUE, BIN_PROB, 0), "num_classes must be >= 1"),
        (lambda: dice_score(BIN_TRUE, BIN_PROB, 2.5), "num_classes must be an int"),
        (lambda: dice_score(BIN_TRUE, BIN_PROB, 2), "1 channels but num_classes=2"),
        (lambda: dice_score(BIN_TRUE[:, :1], BIN_PROB, 1), "differ on axis 1"),
        (lambda: dice_score(BIN_TRUE, BIN_PROB, 1, threshold=0.0), "strictly between 0 and 1"),
        (lambda: dice_score(BIN_TRUE, BIN_PROB, 1, threshold=1.5), "strictly between 0 and 1"),
        (lambda: dice_score(BIN_TRUE, BIN_PROB, 1, reduction="sum"), "reduction must be one of"),
        (
            lambda: dice_score(BIN_TRUE, BIN_PROB, 1, ignore_class=0.5),
            "ignore_class must be an int",
        ),
        (lambda: dice_score(onehot(MC_TRUE % 2, 2), MC_PROB, 3), "last dimension 2"),
        (lambda: dice_score(MC_TRUE[0], MC_PROB, 3), "must be a label map"),
        (lambda: dice_score(BIN_TRUE[0], BIN_PROB[0, ..., 0], 1), "y_pred must be"),
        (lambda: DiceMetric(0), "num_classes must be >= 1"),
        (lambda: IoUMetric(1, threshold=1.0), "strictly between 0 and 1"),
        (lambda: IoUMetric(3, ignore_class="void"), "ignore_class must be an int"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------- serialization


@pytest.mark.parametrize("cls", [DiceMetric, IoUMetric])
def test_config_round_trip(cls):
    metric = cls(
        3, include_background=True, from_logits=True, threshold=0.3, ignore_class=-1, name="m"
    )
    config = metric.get_config()
    assert config["num_classes"] == 3 and config["ignore_class"] == -1 and config["name"] == "m"
    clone = cls.from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(restored) is cls and restored.get_config() == config
    assert cls(1).name == ("dice" if cls is DiceMetric else "iou")


def test_model_fit_evaluate_save_load(tmp_path):
    rng = np.random.default_rng(15)
    x = rng.random((4, 8, 8, 1)).astype(np.float32)
    y = (x > 0.5).astype(np.int32)
    y[:, 0, 0] = -1  # ignored pixels
    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Conv2D(3, 3, padding="same")(inputs)  # 3-class logits
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1),
        metrics=[
            DiceMetric(3, from_logits=True, ignore_class=-1, include_background=True),
            IoUMetric(3, from_logits=True, ignore_class=-1, include_background=True),
        ],
    )
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["dice"][0]) and np.isfinite(history.history["iou"][0])
    scores = model.evaluate(x, y, batch_size=2, verbose=0, return_dict=True)
    assert np.isfinite(scores["dice"]) and np.isfinite(scores["iou"])
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    again = loaded.evaluate(x, y, batch_size=2, verbose=0, return_dict=True)
    np.testing.assert_allclose(
        [again["dice"], again["iou"]], [scores["dice"], scores["iou"]], rtol=1e-5
    )
    # the reported value is the dataset's Dice, not a mean of per-batch values
    want = dice_score(
        y,
        model.predict(x, verbose=0),
        3,
        from_logits=True,
        ignore_class=-1,
        include_background=True,
    )
    close(scores["dice"], np_(want))
