"""Tests for unet_lib.losses: hand-worked values, a brute-force NumPy reference, Keras plumbing."""

from __future__ import annotations

import inspect
import math

import keras
import numpy as np
import pytest

from unet_lib import losses
from unet_lib.losses import (
    DiceCELoss,
    DiceLoss,
    FocalLoss,
    TverskyLoss,
    dice_ce_loss,
    dice_loss,
    focal_loss,
    tversky_loss,
)

FUNCTIONS = [dice_loss, dice_ce_loss, focal_loss, tversky_loss]
CLASSES = [DiceLoss, DiceCELoss, FocalLoss, TverskyLoss]


def value(x) -> float:
    return float(keras.ops.convert_to_numpy(x))


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def random_case(num_classes, seed=0, shape=(2, 3, 4), ignore_fraction=0.2):
    """Label map with some -1 pixels, logits and probabilities for ``num_classes`` outputs."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, max(num_classes, 2), shape).astype("int32")
    labels[rng.random(shape) < ignore_fraction] = -1
    logits = rng.normal(0, 2, (*shape, num_classes)).astype("float32")
    probs = sigmoid(logits) if num_classes == 1 else softmax(logits)
    return labels, logits, probs.astype("float32")


# --------------------------------------------------------------------------- NumPy reference
def _pixels(labels, probs, ignore_class, sample_weight):
    """Per pixel: (image index, true class or None, class probabilities, weight)."""
    num_labels = max(probs.shape[-1], 2)
    if probs.shape[-1] == 1:
        probs = np.concatenate([1 - probs, probs], -1)
    weights = np.ones(labels.shape) if sample_weight is None else sample_weight
    for index in np.ndindex(labels.shape):
        label = int(labels[index])
        ok = 0 <= label < num_labels and label != ignore_class
        yield index[0], (label if ok else None), probs[index], (weights[index] if ok else 0.0)


def ref_overlap(
    labels,
    probs,
    *,
    alpha=0.5,
    beta=0.5,
    smooth=1.0,
    class_weights=None,
    include_background=True,
    batch_dice=True,
    ignore_class=None,
    sample_weight=None,
):
    num_labels = max(probs.shape[-1], 2)
    first = 1 if probs.shape[-1] == 1 or not include_background else 0
    cw = np.ones(num_labels) if class_weights is None else np.asarray(class_weights, float)
    groups = [None] if batch_dice else range(labels.shape[0])
    results = []
    for group in groups:
        tp, sp, sg = np.zeros(num_labels), np.zeros(num_labels), np.zeros(num_labels)
        total = 0.0
        for image, label, p, w in _pixels(labels, probs, ignore_class, sample_weight):
            if group is not None and image != group:
                continue
            g = np.eye(num_labels)[label] if label is not None else np.zeros(num_labels)
            tp, sp, sg, total = tp + w * p * g, sp + w * p, sg + w * g, total + w
        if group is not None and total == 0:
            continue  # image without valid pixels
        fp, fn = sp - tp, sg - tp
        den = 2 * tp + 2 * alpha * fp + 2 * beta * fn + smooth
        score = np.where(den > 0, (2 * tp + smooth) / np.where(den > 0, den, 1), 1.0)
        per_class = (1 - score)[first:]
        results.append(np.sum(per_class * cw[first:]) / np.sum(cw[first:]))
    return float(np.mean(results)) if results else 0.0


def ref_pixel(labels, probs, *, gamma=0.0, alpha=None, ignore_class=None, sample_weight=None):
    num_labels = max(probs.shape[-1], 2)
    if isinstance(alpha, float):
        alpha = [1 - alpha] + [alpha] * (num_labels - 1)
    total = weight_sum = 0.0
    for _, label, p, w in _pixels(labels, probs, ignore_class, sample_weight):
        if label is None:
            continue
        p_t = np.clip(p[label], 1e-7, 1 - 1e-7)
        a = 1.0 if alpha is None else alpha[label]
        total += w * -a * (1 - p_t) ** gamma * np.log(p_t)
        weight_sum += w
    return total / weight_sum if weight_sum else 0.0


# --------------------------------------------------------------------------- hand-worked values
# Binary 2x2 example: truth [[1, 0], [1, 1]], foreground probability [[0.9, 0.2], [0.6, 0.3]].
BIN_TRUE = np.array([[[1, 0], [1, 1]]], dtype="int32")
BIN_PRED = np.array([[[[0.9], [0.2]], [[0.6], [0.3]]]], dtype="float32")


def test_binary_dice_by_hand():
    # TP = 0.9 + 0.6 + 0.3 = 1.8, sum p = 2.0, sum g = 3  ->  1 - (3.6 + 1) / (5 + 1) = 0.23333
    assert value(dice_loss(BIN_TRUE, BIN_PRED)) == pytest.approx(1.4 / 6, abs=1e-6)
    # smooth 0: 1 - 3.6 / 5 = 0.28
    assert value(dice_loss(BIN_TRUE, BIN_PRED, smooth=0)) == pytest.approx(0.28, abs=1e-6)


def test_binary_ce_focal_tversky_by_hand():
    # CE = -(ln 0.9 + ln 0.8 + ln 0.6 + ln 0.3) / 4 = (0.10536 + 0.22314 + 0.51083 + 1.20397) / 4
    ce = -(math.log(0.9) + math.log(0.8) + math.log(0.6) + math.log(0.3)) / 4
    assert ce == pytest.approx(0.510826, abs=1e-6)
    assert value(dice_ce_loss(BIN_TRUE, BIN_PRED)) == pytest.approx(1.4 / 6 + ce, abs=1e-5)
    # focal, gamma 2: (0.1^2 0.10536 + 0.2^2 0.22314 + 0.4^2 0.51083 + 0.7^2 1.20397) / 4
    #   = (0.0010536 + 0.0089257 + 0.0817333 + 0.5899461) / 4 = 0.1704147
    assert value(focal_loss(BIN_TRUE, BIN_PRED)) == pytest.approx(0.1704147, abs=1e-6)
    # alpha 0.25: foreground terms x 0.25, background x 0.75
    #   = (0.25 (0.0010536 + 0.0817333 + 0.5899461) + 0.75 0.0089257) / 4 = 0.0437195
    assert value(focal_loss(BIN_TRUE, BIN_PRED, alpha=0.25)) == pytest.approx(0.0437195, abs=1e-6)
    # Tversky alpha 0.3 (FP), beta 0.7 (FN), smooth 0: TP 1.8, FP 2.0 - 1.8 = 0.2, FN 3 - 1.8 = 1.2
    #   1 - 3.6 / (3.6 + 0.12 + 1.68) = 1 - 2/3
    loss = tversky_loss(BIN_TRUE, BIN_PRED, alpha=0.3, beta=0.7, smooth=0)
    assert value(loss) == pytest.approx(1 / 3, abs=1e-6)


# Multi-class 1x2 example, 2 softmax channels: truth [0, 1], probabilities [0.8, 0.2], [0.4, 0.6].
MC_TRUE = np.array([[[0, 1]]], dtype="int32")
MC_PRED = np.array([[[[0.8, 0.2], [0.4, 0.6]]]], dtype="float32")


def test_multiclass_dice_and_class_weights_by_hand():
    # class 0: TP 0.8, sum p 1.2, sum g 1 -> 1 - 1.6 / 2.2 = 0.272727
    # class 1: TP 0.6, sum p 0.8, sum g 1 -> 1 - 1.2 / 1.8 = 0.333333
    loss = dice_loss(MC_TRUE, MC_PRED, smooth=0)
    assert value(loss) == pytest.approx((0.272727 + 0.333333) / 2, abs=1e-5)
    weighted = dice_loss(MC_TRUE, MC_PRED, smooth=0, class_weights=[1, 3])
    assert value(weighted) == pytest.approx((0.272727 + 3 * 0.333333) / 4, abs=1e-5)
    no_background = dice_loss(MC_TRUE, MC_PRED, smooth=0, include_background=False)
    assert value(no_background) == pytest.approx(1 / 3, abs=1e-5)


def test_multiclass_ce_class_weights_by_hand():
    # CE = (-ln 0.8 - ln 0.6) / 2 = (0.22314 + 0.51083) / 2
    # class weights [1, 3] (not renormalised): (0.22314 + 3 * 0.51083) / 2
    ce = dice_ce_loss(MC_TRUE, MC_PRED, dice_weight=0)
    assert value(ce) == pytest.approx((0.223144 + 0.510826) / 2, abs=1e-5)
    weighted = dice_ce_loss(MC_TRUE, MC_PRED, dice_weight=0, class_weights=[1, 3])
    assert value(weighted) == pytest.approx((0.223144 + 3 * 0.510826) / 2, abs=1e-5)
    # the same weights through focal's alpha list with gamma 0
    focal = focal_loss(MC_TRUE, MC_PRED, gamma=0, alpha=[1, 3])
    assert value(focal) == pytest.approx(value(weighted), abs=1e-6)


# --------------------------------------------------------------------------- NumPy reference
OVERLAP_OPTIONS = [
    {},
    {"smooth": 0.0, "batch_dice": False},
    {"class_weights": [0.5, 1.0, 2.0], "include_background": False},
    {"ignore_class": -1, "batch_dice": False, "smooth": 0.5},
]


@pytest.mark.parametrize("options", OVERLAP_OPTIONS)
@pytest.mark.parametrize("num_classes", [1, 3])
def test_overlap_losses_match_numpy_reference(num_classes, options):
    labels, _, probs = random_case(num_classes, seed=num_classes)
    if num_classes == 1 and "class_weights" in options:
        options = {**options, "class_weights": [0.5, 2.0]}
    expected = ref_overlap(labels, probs, **options)
    assert value(dice_loss(labels, probs, **options)) == pytest.approx(expected, abs=1e-5)
    expected = ref_overlap(labels, probs, alpha=0.2, beta=0.8, **options)
    actual = tversky_loss(labels, probs, alpha=0.2, beta=0.8, **options)
    assert value(actual) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("num_classes", [1, 3])
@pytest.mark.parametrize("gamma, alpha", [(0.0, None), (2.0, 0.25), (1.5, "list")])
def test_pixel_losses_match_numpy_reference(num_classes, gamma, alpha):
    labels, _, probs = random_case(num_classes, seed=10 + num_classes)
    if alpha == "list":
        alpha = [0.2, 0.5, 0.3][: max(num_classes, 2)]
    sw = np.random.default_rng(3).uniform(0.5, 2.0, labels.shape).astype("float32")
    expected = ref_pixel(labels, probs, gamma=gamma, alpha=alpha, ignore_class=-1, sample_weight=sw)
    actual = focal_loss(labels, probs, gamma=gamma, alpha=alpha, ignore_class=-1, sample_weight=sw)
    assert value(actual) == pytest.approx(expected, rel=1e-5)
    cw = None if alpha is None or isinstance(alpha, float) else alpha
    expected = ref_overlap(labels, probs, class_weights=cw, ignore_class=-1, sample_weight=sw)
    expected += ref_pixel(labels, probs, alpha=cw, ignore_class=-1, sample_weight=sw)
    actual = dice_ce_loss(labels, probs, class_weights=cw, ignore_class=-1, sample_weight=sw)
    assert value(actual) == pytest.approx(expected, rel=1e-5)


# --------------------------------------------------------------------------- truth formats
def truth_formats(labels, num_classes):
    """The same truth as (B,H,W) int, (B,H,W,1) int, (B,H,W,1) float and one-hot (-1 -> zeros)."""
    one_hot = np.eye(max(num_classes, 2), dtype="float32")[np.maximum(labels, 0)]
    one_hot[labels < 0] = 0
    return [labels, labels[..., None], labels[..., None].astype("float32"), one_hot]


@pytest.mark.parametrize("fn", FUNCTIONS)
@pytest.mark.parametrize("num_classes", [1, 3])
def test_truth_formats_agree(fn, num_classes):
    labels, _, probs = random_case(num_classes, seed=5)
    values = [value(fn(t, probs, ignore_class=-1)) for t in truth_formats(labels, num_classes)]
    assert values == pytest.approx([values[0]] * 4, abs=1e-6)
    # without ignore_class, -1 is out of range: it counts nowhere either
    assert value(fn(labels, probs)) == pytest.approx(values[0], abs=1e-6)


def test_volumes_with_three_spatial_axes():
    labels, _, probs = random_case(3, seed=6, shape=(2, 2, 3, 4))
    flat = dice_ce_loss(labels.reshape(2, 6, 4), probs.reshape(2, 6, 4, 3), ignore_class=-1)
    assert value(dice_ce_loss(labels, probs, ignore_class=-1)) == pytest.approx(value(flat))


# --------------------------------------------------------------------------- properties
@pytest.mark.parametrize("fn", FUNCTIONS)
@pytest.mark.parametrize("num_classes", [1, 3])
def test_perfect_prediction_is_near_zero(fn, num_classes):
    labels, _, _ = random_case(num_classes, seed=7, ignore_fraction=0)
    if num_classes == 1:
        probs = labels[..., None].astype("float32")
    else:
        probs = np.eye(num_classes, dtype="float32")[labels]
    kwargs = {"smooth": 1e-6} if fn is not focal_loss else {}
    assert value(fn(labels, probs, **kwargs)) == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("fn", [dice_loss, tversky_loss])
@pytest.mark.parametrize("num_classes", [1, 3])
def test_completely_wrong_prediction_is_near_one(fn, num_classes):
    labels, _, _ = random_case(num_classes, seed=8, ignore_fraction=0)
    if num_classes == 1:
        probs = 1.0 - labels[..., None].astype("float32")
    else:
        probs = np.eye(num_classes, dtype="float32")[(labels + 1) % num_classes]
    assert value(fn(labels, probs, smooth=1e-6)) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("fn", FUNCTIONS)
@pytest.mark.parametrize("num_classes", [1, 3])
def test_from_logits_matches_probabilities(fn, num_classes):
    labels, logits, probs = random_case(num_classes, seed=9)
    from_logits = value(fn(labels, logits, from_logits=True, ignore_class=-1))
    assert from_logits == pytest.approx(value(fn(labels, probs, ignore_class=-1)), abs=1e-5)


@pytest.mark.parametrize("fn", FUNCTIONS)
@pytest.mark.parametrize("num_classes", [1, 3])
@pytest.mark.parametrize("batch_dice", [True, False])
def test_ignored_pixels_count_nowhere(fn, num_classes, batch_dice):
    labels, logits, _ = random_case(num_classes, seed=11, ignore_fraction=0.3)
    labels[1] = -1  # one image with no valid pixel at all
    kwargs = {"from_logits": True, "ignore_class": -1}
    if fn is not focal_loss:
        kwargs["batch_dice"] = batch_dice
    changed = logits.copy()
    changed[labels == -1] = np.random.default_rng(0).normal(0, 5, changed[labels == -1].shape)
    assert value(fn(labels, changed, **kwargs)) == pytest.approx(
        value(fn(labels, logits, **kwargs))
    )
    # the same as the loss over the valid pixels alone
    valid = labels != -1
    only = value(fn(labels[valid][None, None], logits[valid][None, None], **kwargs))
    assert value(fn(labels, logits, **kwargs)) == pytest.approx(only, abs=1e-6)


def test_ignore_class_inside_the_label_range():
    labels, _, probs = random_case(3, seed=12, ignore_fraction=0)
    one_hot = np.eye(3, dtype="float32")[labels]
    by_label = value(dice_ce_loss(labels, probs, ignore_class=2))
    assert value(dice_ce_loss(one_hot, probs, ignore_class=2)) == pytest.approx(by_label)
    assert value(dice_ce_loss(np.where(labels == 2, -1, labels), probs)) == pytest.approx(by_label)


@pytest.mark.parametrize("num_classes", [1, 3])
def test_tversky_half_half_equals_dice(num_classes):
    labels, logits, _ = random_case(num_classes, seed=13)
    for options in OVERLAP_OPTIONS:
        if "class_weights" in options:
            options = {**options, "class_weights": [0.5, 1.0, 2.0][: max(num_classes, 2)]}
        dice = value(dice_loss(labels, logits, from_logits=True, **options))
        tversky = tversky_loss(labels, logits, from_logits=True, alpha=0.5, beta=0.5, **options)
        assert value(tversky) == pytest.approx(dice, abs=1e-7)


def test_tversky_beta_penalises_missed_foreground():
    # prediction misses foreground (FN only): a larger beta gives a larger loss
    labels = np.array([[[1, 1, 0, 0]]], dtype="int32")
    probs = np.array([[[[0.9], [0.1], [0.0], [0.0]]]], dtype="float32")
    low = value(tversky_loss(labels, probs, alpha=0.7, beta=0.3))
    assert value(tversky_loss(labels, probs, alpha=0.3, beta=0.7)) > low


@pytest.mark.parametrize("num_classes", [1, 3])
def test_focal_gamma_zero_is_cross_entropy(num_classes):
    labels, logits, _ = random_case(num_classes, seed=14)
    ce = dice_ce_loss(labels, logits, from_logits=True, dice_weight=0, ignore_class=-1)
    focal = focal_loss(labels, logits, from_logits=True, gamma=0, ignore_class=-1)
    assert value(focal) == pytest.approx(value(ce), abs=1e-6)
    assert value(focal_loss(labels, logits, from_logits=True, gamma=2, ignore_class=-1)) < value(ce)


def test_class_weights_raise_the_weight_of_a_class():
    labels, _, probs = random_case(3, seed=15, ignore_fraction=0)
    plain = value(dice_ce_loss(labels, probs))
    per_class = [value(dice_loss(labels, probs, class_weights=w)) for w in np.eye(3) + 1e-6]
    heavy = int(np.argmax(per_class))  # the worst class
    weights = [1.0, 1.0, 1.0]
    weights[heavy] = 5.0
    assert value(dice_loss(labels, probs, class_weights=weights)) > value(dice_loss(labels, probs))
    assert value(dice_ce_loss(labels, probs, class_weights=weights)) > plain


# --------------------------------------------------------------------------- sample weights
@pytest.mark.parametrize("fn", FUNCTIONS)
@pytest.mark.parametrize("num_classes", [1, 3])
def test_integer_sample_weight_equals_repeated_pixels(fn, num_classes):
    labels, logits, _ = random_case(num_classes, seed=16, shape=(1, 1, 6))
    counts = np.array([[[1, 2, 0, 3, 1, 2]]])
    weighted = fn(labels, logits, from_logits=True, ignore_class=-1, sample_weight=counts)
    repeated = np.repeat(np.arange(6), counts.ravel())
    copies = fn(labels[..., repeated], logits[..., repeated, :], from_logits=True, ignore_class=-1)
    assert value(weighted) == pytest.approx(value(copies), abs=1e-6)


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_sample_weight_shapes(fn):
    labels, logits, _ = random_case(3, seed=17)
    sw = np.random.default_rng(1).uniform(0, 2, labels.shape).astype("float32")
    kwargs = {"from_logits": True, "ignore_class": -1}
    base = value(fn(labels, logits, sample_weight=sw, **kwargs))
    assert value(fn(labels, logits, sample_weight=sw[..., None], **kwargs)) == pytest.approx(base)
    zero = fn(labels, logits, sample_weight=(labels != 0).astype("float32"), **kwargs)
    ignored = fn(np.where(labels == 0, -1, labels), logits, **kwargs)
    assert value(zero) == pytest.approx(value(ignored), abs=1e-6)
    per_image = np.array([1.0, 0.0], dtype="float32")  # the second image counts nowhere
    first = fn(labels[:1], logits[:1], **kwargs)
    assert value(fn(labels, logits, sample_weight=per_image, **kwargs)) == pytest.approx(
        value(first), abs=1e-6
    )


# --------------------------------------------------------------------------- classes
def make_loss(cls, **kwargs):
    extra = {"class_weights": [1.0, 2.0, 0.5]} if cls is not FocalLoss else {"alpha": 0.25}
    return cls(from_logits=True, ignore_class=-1, **extra, **kwargs)


@pytest.mark.parametrize("cls, fn", list(zip(CLASSES, FUNCTIONS, strict=True)))
def test_class_equals_function(cls, fn):
    labels, logits, _ = random_case(3, seed=18)
    loss = make_loss(cls)
    options = {k: v for k, v in loss.get_config().items() if k not in ("name", "reduction")}
    assert value(loss(labels, logits)) == pytest.approx(value(fn(labels, logits, **options)))
    sw = np.random.default_rng(2).uniform(0, 3, labels.shape).astype("float32")
    assert value(loss(labels, logits, sample_weight=sw[..., None])) == pytest.approx(
        value(fn(labels, logits, sample_weight=sw, **options))
    )


@pytest.mark.parametrize("cls", CLASSES)
def test_config_round_trip_and_registration(cls):
    loss = make_loss(cls, name="custom")
    config = loss.get_config()
    clone = cls.from_config(config)
    assert clone.get_config() == config and config["name"] == "custom"
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is cls and restored.get_config() == config
    assert keras.saving.get_registered_name(cls) == f"unet_lib>{cls.__name__}"
    assert (
        cls().name
        == {
            DiceLoss: "dice_loss",
            DiceCELoss: "dice_ce_loss",
            FocalLoss: "focal_loss",
            TverskyLoss: "tversky_loss",
        }[cls]
    )


def tiny_model(num_classes=3):
    inputs = keras.Input((4, 4, 2))
    outputs = keras.layers.Conv2D(num_classes, 1, name="head")(inputs)
    return keras.Model(inputs, outputs)


def tiny_batch(num_classes=3):
    rng = np.random.default_rng(19)
    x = rng.normal(size=(2, 4, 4, 2)).astype("float32")
    y = rng.integers(0, max(num_classes, 2), (2, 4, 4, 1)).astype("int32")
    y[0, 0, 0, 0] = -1
    return x, y


@pytest.mark.parametrize("cls, fn", list(zip(CLASSES, FUNCTIONS, strict=True)))
def test_compiled_model_trains_saves_and_reloads(cls, fn, tmp_path):
    keras.utils.set_random_seed(0)
    x, y = tiny_batch()
    model = tiny_model()
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=make_loss(cls), jit_compile=False)
    options = {k: v for k, v in model.loss.get_config().items() if k not in ("name", "reduction")}
    expected = value(fn(y, model.predict(x, verbose=0), **options))
    assert model.evaluate(x, y, verbose=0) == pytest.approx(expected, abs=1e-5)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    assert type(reloaded.loss) is cls and reloaded.loss.get_config() == model.loss.get_config()
    assert reloaded.evaluate(x, y, verbose=0) == pytest.approx(expected, abs=1e-5)
    # gradients are finite and non-zero: a few steps on a fixed batch lower the loss
    sw = np.random.default_rng(4).uniform(0.5, 2.0, (2, 4, 4)).astype("float32")
    before = [w.copy() for w in model.get_weights()]
    first = model.train_on_batch(x, y, sample_weight=sw)
    for _ in range(5):
        last = model.train_on_batch(x, y, sample_weight=sw)
    after = model.get_weights()
    assert np.isfinite(last) and last < first
    assert all(np.isfinite(w).all() for w in after)
    assert any(not np.allclose(a, b) for a, b in zip(after, before, strict=True))


def test_binary_model_with_dice_ce():
    x, y = tiny_batch(num_classes=1)
    model = tiny_model(num_classes=1)
    model.compile(
        optimizer="sgd", loss=DiceCELoss(from_logits=True, ignore_class=-1), jit_compile=False
    )
    expected = dice_ce_loss(y, model.predict(x, verbose=0), from_logits=True, ignore_class=-1)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(value(expected), abs=1e-5)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: DiceLoss(smooth=-1), "smooth must be a number >= 0"),
        (lambda: DiceLoss(smooth=float("nan")), "smooth must be a number"),
        (lambda: DiceLoss(class_weights=[1, 0]), "class_weights must be a list of positive"),
        (lambda: DiceLoss(class_weights=3), "class_weights must be a list"),
        (lambda: DiceLoss(ignore_class=1.5), "ignore_class must be an int"),
        (lambda: DiceCELoss(ce_weight=-1), "ce_weight must be a number >= 0"),
        (lambda: DiceCELoss(dice_weight=0, ce_weight=0), "both 0"),
        (lambda: FocalLoss(gamma=-0.5), "gamma must be a number >= 0"),
        (lambda: FocalLoss(alpha=1.5), r"alpha must be a number in \[0, 1\]"),
        (lambda: FocalLoss(alpha=[0.5, -1]), "alpha must be a list of non-negative"),
        (lambda: TverskyLoss(alpha=-0.1), "alpha must be a number >= 0"),
        (lambda: TverskyLoss(beta=-1), "beta must be a number >= 0"),
        (lambda: TverskyLoss(alpha=0, beta=0), "alpha \\+ beta must be > 0"),
        (lambda: dice_loss(BIN_TRUE, BIN_PRED, smooth=-1), "smooth must be"),
        (lambda: focal_loss(BIN_TRUE, BIN_PRED, gamma=-1), "gamma must be"),
    ],
)
def test_invalid_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_shape_errors_at_call():
    with pytest.raises(ValueError, match="class_weights has 3 entries .* 2 classes"):
        dice_loss(BIN_TRUE, BIN_PRED, class_weights=[1, 2, 3])
    with pytest.raises(ValueError, match="alpha has 2 entries .* 3 classes"):
        focal_loss(np.zeros((1, 2, 2)), np.full((1, 2, 2, 3), 1 / 3), alpha=[1, 2])
    with pytest.raises(ValueError, match="y_true must be a label map"):
        dice_loss(np.zeros((1, 2, 2, 2)), np.full((1, 2, 2, 3), 1 / 3))
    with pytest.raises(ValueError, match="y_pred must be"):
        dice_loss(np.zeros((4,)), np.zeros((4, 1)))


@pytest.mark.parametrize("cls, fn", list(zip(CLASSES, FUNCTIONS, strict=True)))
def test_class_options_are_the_function_keywords(cls, fn):
    """Each class takes its function's keyword arguments (defaults included) and no others."""
    wanted = {
        name: p.default
        for name, p in inspect.signature(fn).parameters.items()
        if p.kind is p.KEYWORD_ONLY and name != "sample_weight"
    }
    params = inspect.signature(cls).parameters
    assert {name: params[name].default for name in wanted} == wanted
    assert list(params)[-3:] == ["name", "reduction", "dtype"]
    config = cls().get_config()
    assert {key: config[key] for key in wanted} == {
        key: (float(v) if isinstance(v, float) else v) for key, v in wanted.items()
    }
    with pytest.raises(TypeError, match="unknown option"):
        cls(smoth=1.0)


def test_public_names():
    import unet_lib

    for name in (
        "DiceLoss",
        "DiceCELoss",
        "FocalLoss",
        "TverskyLoss",
        "dice_loss",
        "dice_ce_loss",
        "focal_loss",
        "tversky_loss",
    ):
        assert getattr(unet_lib, name) is getattr(losses, name)
