"""Segmentation metrics: confusion counts -> Dice / IoU, as pure functions and Keras metrics.

Everything here is written with ``keras.ops`` only, so it runs on the TensorFlow, JAX and
PyTorch backends and inside a compiled ``train_step``.

Conventions (see ARCHITECTURE.md):

- ``num_classes`` is the model's output channels; ``1`` means binary (one sigmoid channel), so
  there are ``L = 2`` label classes ``[background, foreground]``; otherwise ``L = num_classes``.
- ``y_true`` is an integer label map ``(B, H, W)`` / ``(B, H, W, 1)`` or one-hot
  ``(B, H, W, L)``; ``y_pred`` is ``(B, H, W, num_classes)`` probabilities (or logits with
  ``from_logits=True``).
- Pixels labelled ``ignore_class``, one-hot rows that are all zero, and label values outside
  ``0 .. L-1`` count nowhere.
- Empty rule: a class absent from both truth and prediction has an undefined score (``NaN``),
  which is left out of every mean.

Example:
    >>> import numpy as np
    >>> y_true = np.array([[[0, 1], [1, 1]]])               # (1, 2, 2)
    >>> y_pred = np.array([[[[0.1], [0.9]], [[0.2], [0.7]]]])  # (1, 2, 2, 1)
    >>> round(float(dice_score(y_true, y_pred, num_classes=1)), 3)  # tp=2 fp=0 fn=1: 4/5
    0.8
"""

from __future__ import annotations

import math
import numbers

import keras
from keras import ops

__all__ = [
    "DiceMetric",
    "IoUMetric",
    "confusion_counts",
    "dice_from_counts",
    "dice_score",
    "iou_from_counts",
    "iou_score",
    "nanmean",
    "per_image_scores",
]

_REDUCTIONS = ("mean", "none")


# --------------------------------------------------------------------------- validation


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_options(num_classes, threshold, ignore_class):
    """Validates the shared arguments eagerly; returns them as plain Python values."""
    if not _is_int(num_classes):
        raise ValueError(
            f"num_classes must be an int (the model's output channels), got {num_classes!r}."
        )
    if num_classes < 1:
        raise ValueError(
            f"num_classes must be >= 1 (1 = binary sigmoid, K >= 2 = softmax), got {num_classes}."
        )
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise ValueError(f"threshold must be a float in (0, 1), got {threshold!r}.")
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(
            f"threshold must lie strictly between 0 and 1 (e.g. 0.5), got {threshold}."
        )
    if ignore_class is not None and not _is_int(ignore_class):
        raise ValueError(
            f"ignore_class must be an int label value (e.g. -1) or None, got {ignore_class!r}."
        )
    return int(num_classes), float(threshold), None if ignore_class is None else int(ignore_class)


def _num_labels(num_classes: int) -> int:
    return 2 if num_classes == 1 else num_classes


# --------------------------------------------------------------------------- counting


def _label_maps(y_true, y_pred, num_classes, from_logits, threshold, ignore_class):
    """Validates shapes and returns (truth, prediction, valid): int32 maps and a float mask."""
    y_true = ops.convert_to_tensor(y_true)
    y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")
    labels = _num_labels(num_classes)
    pred_shape, true_shape = tuple(y_pred.shape), tuple(y_true.shape)
    if len(pred_shape) < 3:
        raise ValueError(
            f"y_pred must be (batch, *spatial, num_classes), e.g. (B, H, W, {num_classes}); "
            f"got shape {pred_shape}."
        )
    if pred_shape[-1] is not None and pred_shape[-1] != num_classes:
        raise ValueError(
            f"y_pred has {pred_shape[-1]} channels but num_classes={num_classes}; pass the "
            "model's output channels as num_classes (1 for a binary sigmoid output)."
        )
    one_hot = len(true_shape) == len(pred_shape) and true_shape[-1] != 1
    if len(true_shape) == len(pred_shape):
        if true_shape[-1] not in (1, labels, None):
            raise ValueError(
                f"y_true has last dimension {true_shape[-1]}; expected 1 (label map) or "
                f"{labels} (one-hot over the {labels} label classes)."
            )
        if true_shape[-1] is None:
            raise ValueError("y_true's last dimension must be known (1 or the class count).")
    elif len(true_shape) != len(pred_shape) - 1:
        raise ValueError(
            f"y_true must be a label map (B, H, W) / (B, H, W, 1) or one-hot (B, H, W, {labels})"
            f" matching y_pred {pred_shape}; got shape {true_shape}."
        )
    true_spatial = true_shape[:-1] if len(true_shape) == len(pred_shape) else true_shape
    for axis, (t, p) in enumerate(zip(true_spatial, pred_shape[:-1], strict=True)):
        if t is not None and p is not None and t != p:
            raise ValueError(
                f"y_true shape {true_shape} and y_pred shape {pred_shape} differ on axis "
                f"{axis} ({t} vs {p}); resize or crop the masks to the prediction size."
            )

    # prediction -> class index
    if num_classes == 1:
        cut = math.log(threshold / (1.0 - threshold)) if from_logits else threshold
        pred = ops.cast(y_pred[..., 0] >= cut, "int32")
    else:  # argmax(softmax(z)) == argmax(z): logits need no activation
        pred = ops.cast(ops.argmax(y_pred, axis=-1), "int32")

    # truth -> class index + validity mask
    if one_hot:
        y_true = ops.cast(y_true, "float32")
        truth = ops.cast(ops.argmax(y_true, axis=-1), "int32")
        valid = ops.max(y_true, axis=-1) > 0  # an all-zero row is ignored
    else:
        if len(true_shape) == len(pred_shape):
            y_true = y_true[..., 0]
        if keras.backend.is_float_dtype(y_true.dtype):
            y_true = ops.round(y_true)
        truth = ops.cast(y_true, "int32")
        valid = ops.logical_and(truth >= 0, truth < labels)
    if ignore_class is not None:
        valid = ops.logical_and(valid, ops.not_equal(truth, ignore_class))
    truth = ops.where(valid, truth, ops.zeros_like(truth))  # safe index for one_hot
    return truth, pred, ops.cast(valid, "float32")


def confusion_counts(
    y_true,
    y_pred,
    num_classes,
    *,
    from_logits=False,
    threshold=0.5,
    ignore_class=None,
    per_image=False,
    sample_weight=None,
):
    """Per-class true positives, false positives and false negatives.

    The predicted class of a pixel is ``y_pred >= threshold`` for binary (``num_classes=1``)
    and ``argmax(y_pred)`` otherwise. Pixels whose truth is ``ignore_class``, an all-zero
    one-hot row, or a value outside ``0 .. L-1`` count nowhere.

    Args:
        y_true: Integer (or float / bool, which is cast) label map ``(B, H, W)`` or
            ``(B, H, W, 1)``, or one-hot ``(B, H, W, L)``.
        y_pred: ``(B, H, W, num_classes)`` probabilities, or logits if ``from_logits``.
        num_classes: The model's output channels (1 = binary).
        from_logits: Whether ``y_pred`` holds logits (sigmoid for binary, softmax otherwise).
        threshold: Binary decision threshold on the probability, in ``(0, 1)``.
        ignore_class: Label value whose pixels count nowhere, or ``None``.
        per_image: Sum over each image separately instead of over the whole batch.
        sample_weight: Optional per-pixel weight broadcastable to ``(B, H, W)`` (e.g.
            ``(B,)`` or ``(B, H, W, 1)``), multiplied into the counts.

    Returns:
        ``(tp, fp, fn)``: float32 tensors of shape ``(L,)`` (or ``(B, L)`` if ``per_image``),
        ``L = 2`` for binary else ``num_classes``.

    Example:
        >>> tp, fp, fn = confusion_counts([[[0, 1]]], [[[[0.2], [0.6]]]], num_classes=1)
        >>> [float(v) for v in tp]                       # [background, foreground]
        [1.0, 1.0]
    """
    num_classes, threshold, ignore_class = _check_options(num_classes, threshold, ignore_class)
    truth, pred, weight = _label_maps(
        y_true, y_pred, num_classes, from_logits, threshold, ignore_class
    )
    if sample_weight is not None:
        sw = ops.cast(ops.convert_to_tensor(sample_weight), "float32")
        while len(sw.shape) > len(weight.shape) and sw.shape[-1] == 1:
            sw = ops.squeeze(sw, axis=-1)
        while len(sw.shape) < len(weight.shape):
            sw = ops.expand_dims(sw, axis=-1)
        weight = weight * sw
    labels = _num_labels(num_classes)
    t = ops.one_hot(truth, labels, dtype="float32")
    p = ops.one_hot(pred, labels, dtype="float32")
    w = ops.expand_dims(weight, axis=-1)
    axes = tuple(range(1 if per_image else 0, len(t.shape) - 1))
    tp = ops.sum(t * p * w, axis=axes)
    fp = ops.sum((1.0 - t) * p * w, axis=axes)
    fn = ops.sum(t * (1.0 - p) * w, axis=axes)
    return tp, fp, fn


# --------------------------------------------------------------------------- scores


def _safe_ratio(numerator, denominator):
    denominator = ops.convert_to_tensor(denominator)
    defined = denominator > 0
    ratio = numerator / ops.where(defined, denominator, ops.ones_like(denominator))
    return ops.where(defined, ratio, ops.full_like(ratio, float("nan")))


def dice_from_counts(tp, fp, fn):
    """Dice = 2 tp / (2 tp + fp + fn), NaN where the class is absent from truth and prediction.

    Args:
        tp: True positives, any shape.
        fp: False positives, same shape.
        fn: False negatives, same shape.

    Returns:
        Dice per entry (float32), ``NaN`` where ``2 tp + fp + fn == 0``.

    Example:
        >>> round(float(dice_from_counts(2.0, 0.0, 1.0)), 3)  # 4 / 5
        0.8
    """
    tp, fp, fn = (ops.cast(ops.convert_to_tensor(v), "float32") for v in (tp, fp, fn))
    return _safe_ratio(2.0 * tp, 2.0 * tp + fp + fn)


def iou_from_counts(tp, fp, fn):
    """IoU (Jaccard) = tp / (tp + fp + fn), NaN where the class is absent from both.

    Args:
        tp: True positives, any shape.
        fp: False positives, same shape.
        fn: False negatives, same shape.

    Returns:
        IoU per entry (float32), ``NaN`` where ``tp + fp + fn == 0``.

    Example:
        >>> round(float(iou_from_counts(2.0, 0.0, 1.0)), 3)  # 2 / 3
        0.667
    """
    tp, fp, fn = (ops.cast(ops.convert_to_tensor(v), "float32") for v in (tp, fp, fn))
    return _safe_ratio(tp, tp + fp + fn)


def nanmean(x, axis=-1):
    """Mean along ``axis`` ignoring NaN entries; NaN where every entry is NaN.

    Args:
        x: Float tensor.
        axis: Axis (or tuple of axes, or ``None`` for all) to average over.

    Returns:
        ``sum(x[~isnan]) / count(~isnan)`` along ``axis``.

    Example:
        >>> float(nanmean([0.5, float("nan"), 1.0]))
        0.75
    """
    x = ops.cast(ops.convert_to_tensor(x), "float32")
    defined = ops.logical_not(ops.isnan(x))
    total = ops.sum(ops.where(defined, x, ops.zeros_like(x)), axis=axis)
    count = ops.sum(ops.cast(defined, "float32"), axis=axis)
    return total / count  # 0 / 0 -> NaN when nothing is defined


def _score(score_fn, y_true, y_pred, num_classes, include_background, reduction, **kwargs):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}.")
    per_class = score_fn(*confusion_counts(y_true, y_pred, num_classes, **kwargs))
    if not include_background:
        per_class = per_class[1:]
    return per_class if reduction == "none" else nanmean(per_class)


def dice_score(
    y_true,
    y_pred,
    num_classes,
    *,
    include_background=False,
    reduction="mean",
    from_logits=False,
    threshold=0.5,
    ignore_class=None,
):
    """Dataset-level Dice: counts pooled over the whole batch, then 2 tp / (2 tp + fp + fn).

    Args:
        y_true: Label map ``(B, H, W)`` / ``(B, H, W, 1)`` or one-hot ``(B, H, W, L)``.
        y_pred: ``(B, H, W, num_classes)`` probabilities (logits if ``from_logits``).
        num_classes: The model's output channels (1 = binary).
        include_background: Keep label class 0; ``False`` drops it (binary: foreground only).
        reduction: ``"none"`` for the per-class vector, ``"mean"`` for its NaN-ignoring mean.
        from_logits: Whether ``y_pred`` holds logits.
        threshold: Binary decision threshold, in ``(0, 1)``.
        ignore_class: Label value whose pixels count nowhere, or ``None``.

    Returns:
        Scalar (``"mean"``) or ``(L,)`` / ``(L - 1,)`` vector (``"none"``); classes absent
        from both truth and prediction are ``NaN`` and left out of the mean.

    Example:
        >>> y_true = [[[0, 1, 2]]]                      # (1, 1, 3)
        >>> y_pred = [[[[1, 0, 0], [0, 1, 0], [0, 1, 0]]]]
        >>> [round(float(v), 3) for v in dice_score(y_true, y_pred, 3, reduction="none")]
        [0.667, 0.0]
    """
    return _score(
        dice_from_counts, y_true, y_pred, num_classes, include_background, reduction,
        from_logits=from_logits, threshold=threshold, ignore_class=ignore_class,
    )  # fmt: skip


def iou_score(
    y_true,
    y_pred,
    num_classes,
    *,
    include_background=False,
    reduction="mean",
    from_logits=False,
    threshold=0.5,
    ignore_class=None,
):
    """Dataset-level IoU: counts pooled over the whole batch, then tp / (tp + fp + fn).

    Args and Returns are those of :func:`dice_score`, with IoU in place of Dice
    (per class ``IoU = Dice / (2 - Dice)``).

    Example:
        >>> float(iou_score([[[0, 1, 1]]], [[[[0.1], [0.9], [0.4]]]], num_classes=1))  # 1/2
        0.5
    """
    return _score(
        iou_from_counts, y_true, y_pred, num_classes, include_background, reduction,
        from_logits=from_logits, threshold=threshold, ignore_class=ignore_class,
    )  # fmt: skip


def per_image_scores(
    y_true, y_pred, num_classes, *, from_logits=False, threshold=0.5, ignore_class=None
):
    """Dice and IoU of every image and every label class.

    Args:
        y_true: Label map ``(B, H, W)`` / ``(B, H, W, 1)`` or one-hot ``(B, H, W, L)``.
        y_pred: ``(B, H, W, num_classes)`` probabilities (logits if ``from_logits``).
        num_classes: The model's output channels (1 = binary).
        from_logits: Whether ``y_pred`` holds logits.
        threshold: Binary decision threshold, in ``(0, 1)``.
        ignore_class: Label value whose pixels count nowhere, or ``None``.

    Returns:
        ``{"dice": (B, L), "iou": (B, L)}``, ``NaN`` where a class is absent from both the
        image's truth and its prediction. Background (class 0) is included.

    Example:
        >>> s = per_image_scores([[[0, 0]], [[1, 1]]], [[[[0.1], [0.2]]], [[[0.9], [0.1]]]], 1)
        >>> [[round(float(v), 3) for v in row] for row in s["dice"]]
        [[1.0, nan], [0.0, 0.667]]
    """
    counts = confusion_counts(
        y_true, y_pred, num_classes, from_logits=from_logits, threshold=threshold,
        ignore_class=ignore_class, per_image=True,
    )  # fmt: skip
    return {"dice": dice_from_counts(*counts), "iou": iou_from_counts(*counts)}


# --------------------------------------------------------------------------- Keras metrics


class _ConfusionMetric(keras.metrics.Metric):
    """Streaming base: accumulates per-class tp / fp / fn over every batch of an epoch."""

    _score_fn = None  # set by subclasses: (tp, fp, fn) -> per-class score

    def __init__(
        self,
        num_classes,
        *,
        include_background=False,
        from_logits=False,
        threshold=0.5,
        ignore_class=None,
        name=None,
        dtype=None,
    ):
        super().__init__(name=name, dtype=dtype)
        num_classes, threshold, ignore_class = _check_options(num_classes, threshold, ignore_class)
        self.num_classes = num_classes
        self.include_background = bool(include_background)
        self.from_logits = bool(from_logits)
        self.threshold = threshold
        self.ignore_class = ignore_class
        self._direction = "up"
        shape = (_num_labels(self.num_classes),)
        self.true_positives = self.add_variable(
            shape=shape, initializer="zeros", dtype="float32", name="true_positives"
        )
        self.false_positives = self.add_variable(
            shape=shape, initializer="zeros", dtype="float32", name="false_positives"
        )
        self.false_negatives = self.add_variable(
            shape=shape, initializer="zeros", dtype="float32", name="false_negatives"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Adds the batch's counts (``sample_weight``: per-pixel, broadcastable to (B, H, W))."""
        tp, fp, fn = confusion_counts(
            y_true, y_pred, self.num_classes, from_logits=self.from_logits,
            threshold=self.threshold, ignore_class=self.ignore_class,
            sample_weight=sample_weight,
        )  # fmt: skip
        self.true_positives.assign_add(tp)
        self.false_positives.assign_add(fp)
        self.false_negatives.assign_add(fn)

    def reset_state(self):
        for variable in (self.true_positives, self.false_positives, self.false_negatives):
            variable.assign(ops.zeros(variable.shape, dtype=variable.dtype))

    def result_per_class(self):
        """The ``(L,)`` score of every label class (background included), ``NaN`` if absent."""
        return self._score_fn(
            self.true_positives.value, self.false_positives.value, self.false_negatives.value
        )

    def result(self):
        """NaN-ignoring mean over the reported classes (NaN if none is present)."""
        per_class = self.result_per_class()
        if not self.include_background:
            per_class = per_class[1:]
        return ops.cast(nanmean(per_class), self.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            include_background=self.include_background,
            from_logits=self.from_logits,
            threshold=self.threshold,
            ignore_class=self.ignore_class,
        )
        return config


_METRIC_DOC = """Streaming {title} for ``model.compile(metrics=[...])``.

    Per-class tp / fp / fn are summed over every batch since the last ``reset_state()``, so
    ``result()`` is the dataset's {title} ({formula}), not a mean of per-batch values.
    ``result()`` averages the reported classes (background only with ``include_background``)
    that are present in truth or prediction: by the empty rule an absent class is ``NaN`` and
    left out, and the result is ``NaN`` if none is present. ``result_per_class()`` gives the
    ``(L,)`` vector, background included.

    Args:
        num_classes: The model's output channels (1 = binary sigmoid, ``L = 2`` classes).
        include_background: Include label class 0 in ``result()``.
        from_logits: Whether the model outputs logits.
        threshold: Binary decision threshold on the probability, in ``(0, 1)``.
        ignore_class: Label value whose pixels count nowhere (e.g. ``IGNORE_LABEL = -1``).
        name: Metric name shown in the logs.
        dtype: Dtype of the metric's result (the counts are always float32).

    ``update_state(y_true, y_pred, sample_weight=None)`` takes the inputs of
    :func:`confusion_counts`; ``sample_weight`` is a per-pixel weight broadcastable to
    ``(B, H, W)`` multiplied into the counts.

    Example:
        >>> metric = {cls}(num_classes=1)   # model.compile(..., metrics=[metric])
        >>> metric.update_state([[[0, 1, 1]]], [[[[0.1], [0.9], [0.4]]]])
        >>> round(float(metric.result()), 3)  # foreground: tp=1 fp=0 fn=1
        {value}
    """


@keras.saving.register_keras_serializable(package="unet_lib")
class DiceMetric(_ConfusionMetric):
    __doc__ = _METRIC_DOC.format(
        title="Dice", formula="2 tp / (2 tp + fp + fn)", cls="DiceMetric", value="0.667"
    )
    _score_fn = staticmethod(dice_from_counts)

    def __init__(
        self,
        num_classes,
        *,
        include_background=False,
        from_logits=False,
        threshold=0.5,
        ignore_class=None,
        name="dice",
        dtype=None,
    ):
        super().__init__(
            num_classes, include_background=include_background, from_logits=from_logits,
            threshold=threshold, ignore_class=ignore_class, name=name, dtype=dtype,
        )  # fmt: skip


@keras.saving.register_keras_serializable(package="unet_lib")
class IoUMetric(_ConfusionMetric):
    __doc__ = _METRIC_DOC.format(
        title="IoU", formula="tp / (tp + fp + fn)", cls="IoUMetric", value="0.5"
    )
    _score_fn = staticmethod(iou_from_counts)

    def __init__(
        self,
        num_classes,
        *,
        include_background=False,
        from_logits=False,
        threshold=0.5,
        ignore_class=None,
        name="iou",
        dtype=None,
    ):
        super().__init__(
            num_classes, include_background=include_background, from_logits=from_logits,
            threshold=threshold, ignore_class=ignore_class, name=name, dtype=dtype,
        )  # fmt: skip
