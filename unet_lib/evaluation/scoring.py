"""Scoring label maps: per-class Dice, IoU, precision, recall, pixel accuracy, Rand error.

The function behind :func:`unet_lib.evaluation.evaluator.evaluate`: :func:`score_label_maps` takes
truth and predicted label maps and returns the result dict (without ``"settings"``).
Confusion counts come from :func:`unet_lib.metrics.confusion_counts` per image; Dice and
IoU from :mod:`unet_lib.metrics`; the Rand error (binary data only) from
:func:`.randerror.rand_error`. Pooled (dataset-level) scores sum the counts over all
images; per-image scores are kept beside them.

Ignored truth pixels (``IGNORE_LABEL``) count nowhere. Empty rule: a score whose
denominator is 0 is NaN and left out of every mean. ``mean_dice`` / ``mean_iou`` average
the :func:`foreground_classes`.

Example:
    >>> r = score_label_maps([np.array([[0, 1, 1]])], [np.array([[0, 1, 1]])], ["bg", "fg"])
    >>> r["mean_dice"]
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from keras import ops

from unet_lib import IGNORE_LABEL
from unet_lib.evaluation.randerror import rand_error
from unet_lib.evaluation.report import _NAN, _num
from unet_lib.metrics import confusion_counts, dice_from_counts, iou_from_counts

__all__ = ["foreground_classes", "score_label_maps"]

BACKGROUND = "background"


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator = np.asarray(numerator, np.float64)
    denominator = np.asarray(denominator, np.float64)
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _np(x) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(x), np.float64)


def _mean(values) -> float:
    """NaN-skipping mean (the empty rule of ``metrics.nanmean``), in float64; NaN if none."""
    values = np.asarray([_num(v) for v in values], np.float64)
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else _NAN


def foreground_classes(class_names: Sequence[str]) -> list[str]:
    """The classes ``mean_dice`` / ``mean_iou`` average: all but one named ``background``.

    Args:
        class_names: Class names in class order.

    Returns:
        The names without ``"background"`` (case-insensitive); all of them if none is so named.

    Example:
        >>> foreground_classes(["background", "membrane"])
        ['membrane']
    """
    names = [str(n) for n in class_names]
    foreground = [n for n in names if n.lower() != BACKGROUND]
    return foreground or names


# --------------------------------------------------------------------------- scoring


class _Scorer:
    """Accumulates per-image confusion counts (via metrics.confusion_counts) and Rand errors."""

    def __init__(self, class_names: Sequence[str]):
        self.class_names = [str(n) for n in class_names]
        if len(self.class_names) < 2:
            raise ValueError(f"need at least 2 classes, got {self.class_names}.")
        self.num_labels = len(self.class_names)
        self.binary = self.num_labels == 2
        self.foreground = foreground_classes(self.class_names)
        self._fg_index = [self.class_names.index(n) for n in self.foreground]
        self.counts: list[np.ndarray] = []  # (3, L) int64 per image: tp, fp, fn
        self.rand: list[float] = []
        self.stems: list[str] = []

    def check(self, stem: str, truth, prediction) -> tuple[np.ndarray, np.ndarray]:
        truth, prediction = np.asarray(truth), np.asarray(prediction)
        if truth.ndim != 2 or truth.shape != prediction.shape:
            raise ValueError(
                f"{stem}: truth {truth.shape} and prediction {prediction.shape} must be the same "
                "(H, W) label-map shape."
            )
        if prediction.dtype.kind not in "uib":
            raise ValueError(
                f"{stem}: prediction has dtype {prediction.dtype}; give an integer label map "
                "(threshold or argmax the probabilities first)."
            )
        if truth.dtype.kind not in "ui":
            raise ValueError(f"{stem}: truth has dtype {truth.dtype}; give an int32 label map.")
        k = self.num_labels
        if truth.size and (truth.min() < IGNORE_LABEL or truth.max() >= k):
            raise ValueError(f"{stem}: truth holds values outside {IGNORE_LABEL}..{k - 1}.")
        valid = truth != IGNORE_LABEL
        prediction = np.where(valid, prediction, 0).astype(np.int32)  # ignored: never looked at
        if prediction.size and (prediction.min() < 0 or prediction.max() >= k):
            bad = np.unique(prediction[(prediction < 0) | (prediction >= k)]).tolist()
            raise ValueError(f"{stem}: prediction holds labels {bad} outside 0..{k - 1}.")
        return truth.astype(np.int32), prediction

    def add(self, stem: str, truth, prediction) -> None:
        truth, prediction = self.check(stem, truth, prediction)
        if self.binary:
            y_pred, num_classes = prediction[None, :, :, None].astype(np.float32), 1
        else:
            y_pred = np.eye(self.num_labels, dtype=np.float32)[prediction][None]
            num_classes = self.num_labels
        tp, fp, fn = confusion_counts(truth[None], y_pred, num_classes, ignore_class=IGNORE_LABEL)
        self.counts.append(np.rint(np.stack([_np(tp), _np(fp), _np(fn)])).astype(np.int64))
        self.stems.append(str(stem))
        if self.binary:
            self.rand.append(rand_error(truth, prediction))

    def last_record(self) -> dict:
        return self._record(len(self.stems) - 1)

    def _record(self, i: int) -> dict:
        tp, fp, fn = self.counts[i]
        dice, iou = _np(dice_from_counts(tp, fp, fn)), _np(iou_from_counts(tp, fp, fn))
        record = {
            "stem": self.stems[i],
            "dice": dict(zip(self.class_names, dice.tolist(), strict=True)),
            "iou": dict(zip(self.class_names, iou.tolist(), strict=True)),
            "mean_dice": _mean(dice[self._fg_index]),
            "mean_iou": _mean(iou[self._fg_index]),
            "pixel_accuracy": float(_ratio(tp.sum(), tp.sum() + fn.sum())),
        }
        if self.binary:
            record["rand_error"] = float(self.rand[i])
        return record

    def result(self) -> dict:
        if not self.stems:
            raise ValueError("no images to evaluate.")
        tp, fp, fn = np.sum(self.counts, axis=0)
        dice, iou = _np(dice_from_counts(tp, fp, fn)), _np(iou_from_counts(tp, fp, fn))
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        accuracy = float(_ratio(tp.sum(), tp.sum() + fn.sum()))
        per_image = [self._record(i) for i in range(len(self.stems))]
        per_class = {
            name: {
                "dice": float(dice[k]),
                "iou": float(iou[k]),
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "tp": int(tp[k]),
                "fp": int(fp[k]),
                "fn": int(fn[k]),
            }
            for k, name in enumerate(self.class_names)
        }
        result = {
            "num_images": len(self.stems),
            "classes": list(self.class_names),
            "foreground_classes": list(self.foreground),
            "mean_dice": _mean(dice[self._fg_index]),
            "mean_iou": _mean(iou[self._fg_index]),
            "pixel_accuracy": accuracy,
            "pixel_error": 1.0 - accuracy,
        }
        if self.binary:
            result["rand_error"] = _mean(self.rand)
        result["per_image_mean_dice"] = _mean(r["mean_dice"] for r in per_image)
        result["per_image_mean_iou"] = _mean(r["mean_iou"] for r in per_image)
        result["per_class"] = per_class
        result["per_image"] = per_image
        return result


def score_label_maps(
    truths: Sequence[np.ndarray],
    predictions: Sequence[np.ndarray],
    class_names: Sequence[str],
    *,
    stems: Sequence[str] | None = None,
) -> dict:
    """Score predicted label maps against the truth (the function behind :func:`evaluate`).

    Args:
        truths: ``int32`` ``(H, W)`` label maps ``0 .. K-1``, ``IGNORE_LABEL`` = ignored.
        predictions: Integer ``(H, W)`` label maps of the same shapes (any value where the
            truth is ignored).
        class_names: The ``K >= 2`` class names, in class order.
        stems: A name per image (default ``"0"``, ``"1"``, ...).

    Returns:
        The result dict described in :func:`evaluate` (without ``"settings"``).

    Example:
        >>> r = score_label_maps([np.array([[0, 1, 1]])], [np.array([[0, 1, 0]])], ["bg", "fg"])
        >>> round(r["per_class"]["fg"]["dice"], 3)  # tp=1 fp=0 fn=1: 2 / 3
        0.667
    """
    truths, predictions = list(truths), list(predictions)
    stems = [str(i) for i in range(len(truths))] if stems is None else [str(s) for s in stems]
    if not len(truths) == len(predictions) == len(stems):
        raise ValueError(
            f"got {len(truths)} truths, {len(predictions)} predictions and {len(stems)} stems; "
            "give one of each per image."
        )
    scorer = _Scorer(class_names)
    for stem, truth, prediction in zip(stems, truths, predictions, strict=True):
        scorer.add(stem, truth, prediction)
    return scorer.result()
