"""Scoring label maps: per-class Dice, IoU, precision, recall, pixel accuracy, Rand error.

Confusion counts of each image come from :func:`unet_lib.targets.label_confusion_matrix`;
dataset-level scores pool them over all images. Per class ``k``::

    dice = 2 tp / (2 tp + fp + fn)    iou = tp / (tp + fp + fn)
    precision = tp / (tp + fp)        recall = tp / (tp + fn)
    pixel_accuracy = sum_k tp_k / labelled pixels,  pixel_error = 1 - pixel_accuracy

Ignored truth pixels (``IGNORE_LABEL``) count nowhere. A zero denominator gives NaN, left
out of every mean. ``mean_dice`` / ``mean_iou`` average the :func:`foreground_classes`;
``rand_error`` (binary data only) is the mean over images of :func:`.randerror.rand_error`.

Example:
    >>> r = score_label_maps([np.array([[0, 1, 1]])], [np.array([[0, 1, 0]])], ["bg", "fg"])
    >>> round(r["per_class"]["fg"]["dice"], 3)  # tp=1 fp=0 fn=1: 2 / 3
    0.667
"""

from collections.abc import Sequence

import numpy as np
from keras import ops

from unet_lib import IGNORE_LABEL
from unet_lib.evaluation.randerror import rand_error
from unet_lib.metrics import dice_from_counts, iou_from_counts
from unet_lib.targets import counts_from_confusion, label_confusion_matrix

__all__ = ["BACKGROUND", "Scorer", "foreground_classes", "score_label_maps"]

BACKGROUND = "background"  # the class name that foreground_classes leaves out


def _ratio(numerator, denominator) -> np.ndarray:
    """``numerator / denominator`` in float64, NaN where the denominator is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.asarray(numerator, np.float64) / np.asarray(denominator, np.float64)
    return np.where(np.asarray(denominator) > 0, ratio, np.nan)


def _mean(values) -> float:
    """NaN-skipping mean in float64; NaN if nothing is defined."""
    values = np.asarray(list(values), np.float64)
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else np.nan


def foreground_classes(class_names: Sequence[str]) -> list[str]:
    """The classes ``mean_dice`` / ``mean_iou`` average: all but one named ``background``.

    Example:
        >>> foreground_classes(["Background", "membrane"]), foreground_classes(["a", "b"])
        (['membrane'], ['a', 'b'])
    """
    names = [str(n) for n in class_names]
    return [n for n in names if n.lower() != BACKGROUND] or names


class Scorer:
    """:func:`score_label_maps` one image at a time: :meth:`add` each, then :meth:`result`.

    Example:
        >>> scorer = Scorer(["background", "cell"])
        >>> scorer.add("a", np.array([[0, 1]]), np.array([[0, 1]]))["mean_dice"]
        1.0
    """

    def __init__(self, class_names: Sequence[str]):
        self.class_names = [str(n) for n in class_names]
        if len(self.class_names) < 2:
            raise ValueError(f"need at least 2 classes, got {self.class_names}.")
        self.foreground = foreground_classes(self.class_names)
        self._fg_index = [self.class_names.index(n) for n in self.foreground]
        self.matrices: list[np.ndarray] = []  # (L, L) int64 per image: C[truth, prediction]
        self.records: list[dict] = []  # per image

    def _check(self, stem: str, truth, prediction) -> tuple[np.ndarray, np.ndarray]:
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
        k = len(self.class_names)
        if truth.size and (truth.min() < IGNORE_LABEL or truth.max() >= k):
            raise ValueError(f"{stem}: truth holds values outside {IGNORE_LABEL}..{k - 1}.")
        return truth, prediction

    def _scores(self, tp, fp, fn) -> dict:
        dice = np.asarray(ops.convert_to_numpy(dice_from_counts(tp, fp, fn)), np.float64)
        iou = np.asarray(ops.convert_to_numpy(iou_from_counts(tp, fp, fn)), np.float64)
        means = {"mean_dice": _mean(dice[self._fg_index]), "mean_iou": _mean(iou[self._fg_index])}
        accuracy = float(_ratio(tp.sum(), tp.sum() + fn.sum()))
        return {"dice": dice, "iou": iou, **means, "pixel_accuracy": accuracy}

    def add(self, stem: str, truth, prediction) -> dict:
        """Score one ``(H, W)`` truth / prediction pair; returns its ``per_image`` record."""
        truth, prediction = self._check(stem, truth, prediction)
        try:
            matrix = label_confusion_matrix(truth, prediction, len(self.class_names))
        except ValueError as err:  # a prediction outside 0..L-1: name the image
            raise ValueError(f"{stem}: {err}") from None
        self.matrices.append(matrix.astype(np.int64))
        scores = self._scores(*counts_from_confusion(matrix))
        for key in ("dice", "iou"):
            scores[key] = dict(zip(self.class_names, scores[key].tolist(), strict=True))
        if len(self.class_names) == 2:
            scores["rand_error"] = float(rand_error(truth, prediction))
        self.records.append({"stem": str(stem), **scores})
        return self.records[-1]

    def result(self) -> dict:
        """The dict of :func:`score_label_maps` for every image added."""
        if not self.records:
            raise ValueError("no images to evaluate.")
        confusion = np.sum(self.matrices, axis=0)
        tp, fp, fn = counts_from_confusion(confusion)
        scores = self._scores(tp, fp, fn)
        columns = {"dice": scores["dice"], "iou": scores["iou"], "precision": _ratio(tp, tp + fp)}
        columns.update(recall=_ratio(tp, tp + fn), tp=tp, fp=fp, fn=fn)
        result = {
            "num_images": len(self.records),
            "classes": list(self.class_names),
            "foreground_classes": list(self.foreground),
            **{key: scores[key] for key in ("mean_dice", "mean_iou", "pixel_accuracy")},
            "pixel_error": 1.0 - scores["pixel_accuracy"],
        }
        means = {"rand_error": "rand_error"} if len(self.class_names) == 2 else {}  # over images
        means.update(per_image_mean_dice="mean_dice", per_image_mean_iou="mean_iou")
        result.update({key: _mean(r[name] for r in self.records) for key, name in means.items()})
        result["per_class"] = {
            name: {key: column[k].item() for key, column in columns.items()}
            for k, name in enumerate(self.class_names)
        }
        result["confusion_matrix"] = confusion.tolist()
        return {**result, "per_image": [dict(r) for r in self.records]}


def score_label_maps(truths, predictions, class_names: Sequence[str], *, stems=None) -> dict:
    """Score predicted label maps against the truth (the function behind ``evaluate``).

    ``truths`` are ``(H, W)`` integer label maps ``0 .. K-1`` (``IGNORE_LABEL``: ignored),
    ``predictions`` integer label maps of the same shapes, ``class_names`` the ``K >= 2``
    class names in class order, ``stems`` a name per image (default ``"0"``, ``"1"``, ...).

    Returns:
        A dict, NaN where undefined (``null`` in :func:`.report.save_json`)::

            {"num_images", "classes", "foreground_classes", "mean_dice", "mean_iou",
             "pixel_accuracy", "pixel_error", "rand_error" (binary only),
             "per_image_mean_dice", "per_image_mean_iou",  # means of per-image means
             "per_class": {name: {"dice", "iou", "precision", "recall", "tp", "fp", "fn"}},
             "confusion_matrix": [[pixels of truth t predicted p, ...], ...],  # C[t][p]
             "per_image": [{"stem", "dice": {name: ..}, "iou": {name: ..}, "mean_dice",
                            "mean_iou", "pixel_accuracy", "rand_error"}, ...]}
    """
    truths, predictions = list(truths), list(predictions)
    stems = [str(i) for i in range(len(truths))] if stems is None else [str(s) for s in stems]
    if not len(truths) == len(predictions) == len(stems):
        raise ValueError(
            f"got {len(truths)} truths, {len(predictions)} predictions and {len(stems)} stems; "
            "give one of each per image."
        )
    scorer = Scorer(class_names)
    for stem, truth, prediction in zip(stems, truths, predictions, strict=True):
        scorer.add(stem, truth, prediction)
    return scorer.result()
