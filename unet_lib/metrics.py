"""Segmentation metrics: confusion counts -> Dice / IoU, as pure functions and Keras metrics.

``keras.ops`` only (any backend, inside a compiled ``train_step``); the counts and their
conventions are :func:`unet_lib.targets.confusion_counts` (re-exported here). Empty rule: a
class absent from both truth and prediction scores ``NaN``, left out of every mean.

Example:
    >>> y_true = [[[0, 1], [1, 1]]]                          # (1, 2, 2)
    >>> y_pred = [[[[0.1], [0.9]], [[0.2], [0.7]]]]          # (1, 2, 2, 1)
    >>> round(float(dice_score(y_true, y_pred, num_classes=1)), 3)  # tp=2 fp=0 fn=1: 4/5
    0.8
"""

import keras
from keras import ops

from unet_lib.targets import check_options, confusion_counts

__all__ = [
    "DiceMetric", "IoUMetric", "confusion_counts", "dice_from_counts", "dice_score",
    "iou_from_counts", "iou_score", "nanmean", "per_image_scores",
]  # fmt: skip


def _safe_ratio(numerator, denominator):
    denominator = ops.convert_to_tensor(denominator)
    defined = denominator > 0
    ratio = numerator / ops.where(defined, denominator, ops.ones_like(denominator))
    return ops.where(defined, ratio, ops.full_like(ratio, float("nan")))


def dice_from_counts(tp, fp, fn):
    """Dice = 2 tp / (2 tp + fp + fn) per entry (float32), NaN where ``2 tp + fp + fn == 0``.

    Example:
        >>> round(float(dice_from_counts(2.0, 0.0, 1.0)), 3)  # 4 / 5
        0.8
    """
    tp, fp, fn = (ops.cast(ops.convert_to_tensor(v), "float32") for v in (tp, fp, fn))
    return _safe_ratio(2.0 * tp, 2.0 * tp + fp + fn)


def iou_from_counts(tp, fp, fn):
    """IoU (Jaccard) = tp / (tp + fp + fn) per entry (float32), NaN where ``tp + fp + fn == 0``.

    Example:
        >>> round(float(iou_from_counts(2.0, 0.0, 1.0)), 3)  # 2 / 3
        0.667
    """
    tp, fp, fn = (ops.cast(ops.convert_to_tensor(v), "float32") for v in (tp, fp, fn))
    return _safe_ratio(tp, tp + fp + fn)


def nanmean(x, axis=-1):
    """Mean along ``axis`` (an axis, a tuple, or ``None`` for all) ignoring NaN entries.

    Returns ``sum(x[~isnan]) / count(~isnan)``: NaN where every entry is NaN.

    Example:
        >>> float(nanmean([0.5, float("nan"), 1.0]))
        0.75
    """
    x = ops.cast(ops.convert_to_tensor(x), "float32")
    defined = ops.logical_not(ops.isnan(x))
    total = ops.sum(ops.where(defined, x, ops.zeros_like(x)), axis=axis)
    count = ops.sum(ops.cast(defined, "float32"), axis=axis)
    return total / count  # 0 / 0 -> NaN when nothing is defined


def _score(score_fn, include_background, reduction, **counts_options):
    """``score_fn`` of the counts of ``confusion_counts(**counts_options)``, reduced."""
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be one of ('mean', 'none'), got {reduction!r}.")
    per_class = score_fn(*confusion_counts(**counts_options))
    if not include_background:
        per_class = per_class[1:]
    return per_class if reduction == "none" else nanmean(per_class)


def dice_score(y_true, y_pred, num_classes, *, include_background=False, reduction="mean",
               from_logits=False, threshold=0.5, ignore_class=None):  # fmt: skip
    """Dataset-level Dice: counts pooled over the whole batch, then 2 tp / (2 tp + fp + fn).

    ``include_background=False`` drops label class 0 (binary: foreground only);
    ``reduction="none"`` gives the per-class vector, ``"mean"`` its NaN-ignoring mean (classes
    absent from truth and prediction are ``NaN``). The other arguments are those of
    :func:`confusion_counts`.

    Example:
        >>> y_true = [[[0, 1, 2]]]                      # (1, 1, 3)
        >>> y_pred = [[[[1, 0, 0], [0, 1, 0], [0, 1, 0]]]]
        >>> [round(float(v), 3) for v in dice_score(y_true, y_pred, 3, reduction="none")]
        [0.667, 0.0]
    """
    return _score(dice_from_counts, **locals())


def iou_score(y_true, y_pred, num_classes, *, include_background=False, reduction="mean",
              from_logits=False, threshold=0.5, ignore_class=None):  # fmt: skip
    """Dataset-level IoU: counts pooled over the whole batch, then tp / (tp + fp + fn).

    Args and Returns are those of :func:`dice_score`, with IoU in place of Dice
    (per class ``IoU = Dice / (2 - Dice)``).

    Example:
        >>> float(iou_score([[[0, 1, 1]]], [[[[0.1], [0.9], [0.4]]]], num_classes=1))  # 1/2
        0.5
    """
    return _score(iou_from_counts, **locals())


def per_image_scores(y_true, y_pred, num_classes, *, from_logits=False, threshold=0.5,
                     ignore_class=None):  # fmt: skip
    """``{"dice": (B, L), "iou": (B, L)}`` of every image and label class (background too).

    ``NaN`` where a class is absent from both the image's truth and its prediction; the
    arguments are those of :func:`confusion_counts`.

    Example:
        >>> s = per_image_scores([[[0, 0]], [[1, 1]]], [[[[0.1], [0.2]]], [[[0.9], [0.1]]]], 1)
        >>> [[round(float(v), 3) for v in row] for row in s["dice"]]
        [[1.0, nan], [0.0, 0.667]]
    """
    counts = confusion_counts(**locals(), per_image=True)
    return {"dice": dice_from_counts(*counts), "iou": iou_from_counts(*counts)}


class _ConfusionMetric(keras.metrics.Metric):
    """Streaming base: per-class tp / fp / fn summed over every batch since ``reset_state()``.

    Subclasses declare only ``score_fn`` ((tp, fp, fn) -> per-class score) and
    ``default_name`` (the default ``name``); the options, validation and config live here.
    """

    score_fn = None
    default_name = None
    _COUNTS = ("true_positives", "false_positives", "false_negatives")
    _OPTIONS = ("num_classes", "include_background", "from_logits", "threshold", "ignore_class")

    def __init__(self, num_classes, *, include_background=False, from_logits=False,
                 threshold=0.5, ignore_class=None, name=None, dtype=None):  # fmt: skip
        super().__init__(name=name or self.default_name, dtype=dtype)
        num_classes, threshold, ignore_class = check_options(num_classes, threshold, ignore_class)
        self.num_classes, self.threshold, self.ignore_class = num_classes, threshold, ignore_class
        self.include_background, self.from_logits = bool(include_background), bool(from_logits)
        self._direction, shape = "up", (max(num_classes, 2),)
        for count in self._COUNTS:
            variable = self.add_variable(
                shape=shape, initializer="zeros", dtype="float32", name=count
            )
            setattr(self, count, variable)

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Adds the batch's counts (``sample_weight``: per-pixel, broadcastable to (B, H, W))."""
        options = {key: getattr(self, key) for key in self._OPTIONS if key != "include_background"}
        counts = confusion_counts(y_true, y_pred, sample_weight=sample_weight, **options)
        for name, count in zip(self._COUNTS, counts, strict=True):
            getattr(self, name).assign_add(count)

    def reset_state(self):
        for name in self._COUNTS:
            variable = getattr(self, name)
            variable.assign(ops.zeros(variable.shape, dtype=variable.dtype))

    def result_per_class(self):
        """The ``(L,)`` score of every label class (background included), ``NaN`` if absent."""
        return self.score_fn(*(getattr(self, name).value for name in self._COUNTS))

    def result(self):
        """NaN-ignoring mean over the reported classes (NaN if none is present)."""
        per_class = self.result_per_class()
        if not self.include_background:
            per_class = per_class[1:]
        return ops.cast(nanmean(per_class), self.dtype)

    def get_config(self):
        options = {key: getattr(self, key) for key in self._OPTIONS}
        return {**super().get_config(), **options}


@keras.saving.register_keras_serializable(package="unet_lib")
class DiceMetric(_ConfusionMetric):
    """Streaming Dice ``2 tp / (2 tp + fp + fn)`` of the dataset (not a mean over batches).

    The options and the inputs of ``update_state`` are those of :func:`confusion_counts`
    (class 0 is reported only with ``include_background``); ``dtype`` is the result's.

    Example:
        >>> metric = DiceMetric(num_classes=1)   # model.compile(..., metrics=[metric])
        >>> metric.update_state([[[0, 1, 1]]], [[[[0.1], [0.9], [0.4]]]])
        >>> round(float(metric.result()), 3)  # foreground: tp=1 fp=0 fn=1
        0.667
    """

    score_fn = staticmethod(dice_from_counts)
    default_name = "dice"


@keras.saving.register_keras_serializable(package="unet_lib")
class IoUMetric(_ConfusionMetric):
    """Streaming IoU ``tp / (tp + fp + fn)`` of the dataset; options as :class:`DiceMetric`
    (default ``name="iou"``).

    Example:
        >>> metric = IoUMetric(num_classes=1)
        >>> metric.update_state([[[0, 1, 1]]], [[[[0.1], [0.9], [0.4]]]])
        >>> round(float(metric.result()), 3)  # foreground: tp=1 fp=0 fn=1
        0.5
    """

    score_fn = staticmethod(iou_from_counts)
    default_name = "iou"
