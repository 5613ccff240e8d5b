"""The one core behind every metric, loss and score: truth preparation and confusion counts.

``num_classes`` outputs mean ``L = max(2, num_classes)`` label classes. Truth is a label map
(floats are rounded) or one-hot; only pixels whose truth is a class ``0 .. L-1`` other than
``ignore_class`` count. :func:`prepare_truth` and :func:`confusion_counts` use ``keras.ops``;
:func:`label_confusion_matrix` / :func:`label_confusion_counts` are the count's NumPy twin
for decided label maps.

Example:
    >>> tp, fp, fn = label_confusion_counts(np.array([[0, 1, 1, -1]]), np.array([[0, 1, 0, 1]]), 2)
    >>> tp.tolist(), fp.tolist(), fn.tolist()   # class 1: one hit, one miss; -1 ignored
    ([1, 1], [1, 0], [0, 1])
"""

import math

import keras
import numpy as np
from keras import ops

from unet_lib.checks import is_int, is_number


def check_ignore_class(ignore_class):
    """``ignore_class`` as an int or ``None``, else ValueError (the one validator)."""
    if ignore_class is not None and not is_int(ignore_class):
        raise ValueError(
            f"ignore_class must be an int label value such as unet_lib.IGNORE_LABEL "
            f"(-1), or None; got {ignore_class!r}."
        )
    return None if ignore_class is None else int(ignore_class)


def check_options(num_classes, threshold, ignore_class):
    """Validates the options of a confusion count; returns them as plain Python values."""
    if not is_int(num_classes) or num_classes < 1:
        need = ">= 1 (1 = binary sigmoid, K >= 2 = softmax)" if is_int(num_classes) else "an int"
        raise ValueError(f"num_classes must be {need} (the model's output channels), "
                         f"got {num_classes!r}.")  # fmt: skip
    if not (is_number(threshold) and 0.0 < float(threshold) < 1.0):
        raise ValueError(
            f"threshold must be a number strictly between 0 and 1 (e.g. 0.5), got {threshold!r}."
        )
    return int(num_classes), float(threshold), check_ignore_class(ignore_class)


def check_prediction(y_pred, num_classes=None, dtype="float32"):
    """``y_pred`` as a ``dtype`` tensor ``(B, *spatial, C)``; ``C`` must be known (and match)."""
    y_pred = ops.cast(ops.convert_to_tensor(y_pred), dtype)
    shape, example = tuple(y_pred.shape), num_classes or "num_classes"
    if len(shape) < 3 or shape[-1] is None:
        raise ValueError(
            f"y_pred must be (batch, *spatial, num_classes) with a known last axis, e.g. "
            f"(B, H, W, {example}); got shape {shape}."
        )
    if num_classes is not None and shape[-1] != num_classes:
        raise ValueError(
            f"y_pred has {shape[-1]} channels but num_classes={num_classes}; pass the "
            "model's output channels as num_classes (1 for a binary sigmoid output)."
        )
    return y_pred


def _is_one_hot(true_shape, pred_shape, num_labels) -> bool:
    """Checks the truth's shape against the prediction's; whether it is one-hot."""
    same_rank = len(true_shape) == len(pred_shape)
    if (same_rank and true_shape[-1] not in (1, num_labels)) or not (
        same_rank or len(true_shape) == len(pred_shape) - 1
    ):
        last = f" (last dimension {true_shape[-1]})" if same_rank else ""
        raise ValueError(
            f"y_true must be a label map (B, H, W) / (B, H, W, 1) or one-hot (B, H, W, "
            f"{num_labels}) matching y_pred {pred_shape}; got shape {true_shape}{last}."
        )
    spatial = true_shape[:-1] if same_rank else true_shape
    for axis, (t, p) in enumerate(zip(spatial, pred_shape[:-1], strict=True)):
        if t is not None and p is not None and t != p:
            raise ValueError(
                f"y_true shape {true_shape} and y_pred shape {pred_shape} differ on axis "
                f"{axis} ({t} vs {p}); resize or crop the masks to the prediction size."
            )
    return same_rank and true_shape[-1] != 1


def prepare_truth(y_true, pred_shape, num_labels, *, ignore_class=None, sample_weight=None,
                  dtype="float32"):  # fmt: skip
    """One-hot truth ``(B, ..., L)`` and per-pixel weights ``(B, ...)`` for losses and metrics.

    A label map ``(B, ...)`` / ``(B, ..., 1)`` becomes one-hot (rows of invalid labels are all
    zero); one-hot truth ``(B, ..., L)`` is kept as given, soft values included, and a row
    counts as its argmax for ``ignore_class``. ``weight = valid * sample_weight`` is 0 on
    invalid pixels; ``sample_weight`` may be ``(B,)``, ``(B, ...)`` or ``(B, ..., 1)``. The
    truth must match ``pred_shape`` ``(B, ..., C)``; both results have ``dtype``.

    Example:
        >>> truth, weight = prepare_truth([[2, 0, 1, -1]], (1, 4, 2), 2, ignore_class=0)
        >>> ops.convert_to_numpy(weight).tolist()    # out of range, ignored, valid, invalid
        [[0.0, 0.0, 1.0, 0.0]]
    """
    y_true = ops.convert_to_tensor(y_true)
    pred_shape = tuple(pred_shape)
    if _is_one_hot(tuple(y_true.shape), pred_shape, num_labels):
        truth = ops.cast(y_true, dtype)
        index = ops.argmax(truth, axis=-1)
    else:
        labels = y_true[..., 0] if len(y_true.shape) == len(pred_shape) else y_true
        if keras.backend.is_float_dtype(labels.dtype):
            labels = ops.round(labels)
        index = ops.cast(labels, "int32")
        classes = ops.arange(num_labels, dtype="int32")
        truth = ops.cast(ops.equal(ops.expand_dims(index, -1), classes), dtype)
    valid = ops.sum(truth, axis=-1) > 0  # all-zero rows and labels outside 0 .. L-1
    if ignore_class is not None:
        valid = ops.logical_and(valid, ops.not_equal(index, ignore_class))
    weight = ops.cast(valid, dtype)
    if sample_weight is not None:
        sw = ops.cast(ops.convert_to_tensor(sample_weight), dtype)
        while len(sw.shape) > len(weight.shape) and sw.shape[-1] == 1:
            sw = ops.squeeze(sw, axis=-1)
        while len(sw.shape) < len(weight.shape):
            sw = ops.expand_dims(sw, axis=-1)
        weight = weight * sw
    return truth, weight


def confusion_counts(y_true, y_pred, num_classes, *, from_logits=False, threshold=0.5,
                     ignore_class=None, per_image=False, sample_weight=None):  # fmt: skip
    """Per-class true positives, false positives and false negatives (``keras.ops``).

    The predicted class of a pixel is ``y_pred >= threshold`` for binary (``num_classes=1``,
    on logits when ``from_logits``) and ``argmax(y_pred)`` otherwise; a one-hot truth row
    counts as its argmax. ``y_true`` (label map or one-hot), ``ignore_class`` and
    ``sample_weight`` are those of :func:`prepare_truth`. ``per_image`` sums over each image
    separately instead of over the whole batch.

    Returns:
        ``(tp, fp, fn)``: float32 tensors of shape ``(L,)`` (or ``(B, L)`` if ``per_image``).

    Example:
        >>> tp, fp, fn = confusion_counts([[[0, 1]]], [[[[0.2], [0.6]]]], num_classes=1)
        >>> [float(v) for v in tp]                       # [background, foreground]
        [1.0, 1.0]
    """
    num_classes, threshold, ignore_class = check_options(num_classes, threshold, ignore_class)
    y_pred = check_prediction(y_pred, num_classes)
    labels = max(num_classes, 2)
    truth, weight = prepare_truth(
        y_true, y_pred.shape, labels, ignore_class=ignore_class, sample_weight=sample_weight
    )
    if num_classes == 1:
        cut = math.log(threshold / (1.0 - threshold)) if from_logits else threshold
        pred = ops.cast(y_pred[..., 0] >= cut, "int32")
    else:  # argmax(softmax(z)) == argmax(z): logits need no activation
        pred = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
    t = ops.one_hot(ops.argmax(truth, axis=-1), labels, dtype="float32")
    p = ops.one_hot(pred, labels, dtype="float32")
    w = ops.expand_dims(weight, axis=-1)
    axes = tuple(range(1 if per_image else 0, len(t.shape) - 1))
    tp = ops.sum(t * p * w, axis=axes)
    return tp, ops.sum((1.0 - t) * p * w, axis=axes), ops.sum(t * (1.0 - p) * w, axis=axes)


def label_confusion_matrix(truth, prediction, num_labels: int) -> np.ndarray:
    """The confusion matrix of label maps (NumPy): ``C[t, p]`` = pixels of truth ``t``
    predicted ``p``, int64 ``(L, L)``; the count behind :func:`label_confusion_counts`.

    ``truth`` and ``prediction`` are integer label maps of the same shape; truth values outside
    ``0 .. num_labels-1`` (``IGNORE_LABEL``) are left out, a counted prediction outside that
    range is a ValueError.

    Example:
        >>> label_confusion_matrix(np.array([0, 1, 1, -1]), np.array([0, 1, 0, 1]), 2).tolist()
        [[1, 0], [1, 1]]
    """
    truth, prediction = np.asarray(truth), np.asarray(prediction)
    if truth.shape != prediction.shape:
        raise ValueError(
            f"truth {truth.shape} and prediction {prediction.shape} must have the same shape."
        )
    valid = (truth >= 0) & (truth < num_labels)
    t = truth[valid].astype(np.int64)
    p = prediction[valid].astype(np.int64)
    if p.size and (p.min() < 0 or p.max() >= num_labels):
        bad = np.unique(p[(p < 0) | (p >= num_labels)]).tolist()
        raise ValueError(f"prediction holds labels {bad} outside 0..{num_labels - 1}.")
    confusion = np.bincount(t * num_labels + p, minlength=num_labels * num_labels)
    return confusion.reshape(num_labels, num_labels)


def counts_from_confusion(confusion: np.ndarray):
    """``(tp, fp, fn)`` per class of a confusion matrix ``C[t, p]``: ``tp = diag(C)``,
    ``fp = C.sum(0) - tp``, ``fn = C.sum(1) - tp``."""
    confusion = np.asarray(confusion)
    tp = np.diag(confusion).copy()
    return tp, confusion.sum(0) - tp, confusion.sum(1) - tp


def label_confusion_counts(truth, prediction, num_labels: int, *, per_image: bool = False):
    """Per-class true positives, false positives and false negatives of label maps (NumPy):
    :func:`counts_from_confusion` of :func:`label_confusion_matrix` (its rules for ignored
    and out-of-range labels). ``per_image`` counts each entry of the first axis separately.

    Returns:
        ``(tp, fp, fn)``: int64 arrays ``(L,)`` (``(N, L)`` with ``per_image``).
    """
    if per_image:
        truth, prediction = np.asarray(truth), np.asarray(prediction)
        if truth.shape != prediction.shape:
            label_confusion_matrix(truth, prediction, num_labels)  # raises with the shapes
        pairs = zip(truth, prediction, strict=True)
        counts = [label_confusion_counts(t, p, num_labels) for t, p in pairs]
        return tuple(np.stack(c).reshape(-1, num_labels) for c in zip(*counts, strict=True))
    return counts_from_confusion(label_confusion_matrix(truth, prediction, num_labels))
