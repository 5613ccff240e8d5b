"""Evaluation: score a model (or a folder of predicted masks) on a dataset folder.

One scoring function serves both paths, so a U-Net's results and any other tool's masks are
compared on equal terms (like nnU-Net's ``evaluate_folder``):

* :func:`evaluate` predicts every image with :func:`unet_lib.inference.predict` (optionally
  tiled, with test-time augmentation) and scores the label maps against the truth.
* :func:`evaluate_folder` (= ``evaluate(None, data, predictions=DIR)``) reads predicted masks
  saved in the dataset's own grey encoding (``dataset.json``) and scores them the same way.

Reported (Dice and IoU come from :mod:`unet_lib.metrics`):

* ``per_class``: dataset-level Dice, IoU, precision and recall of every class, from
  confusion counts pooled over all images (``Dice = 2 tp / (2 tp + fp + fn)``,
  ``IoU = tp / (tp + fp + fn)``, ``precision = tp / (tp + fp)``, ``recall = tp / (tp + fn)``).
* ``mean_dice`` / ``mean_iou``: the NaN-skipping mean of ``per_class`` over the foreground
  classes (every class but one named ``background``; all classes if none is so named).
* ``pixel_accuracy = sum_k tp_k / labelled pixels`` and ``pixel_error = 1 - pixel_accuracy``.
* ``per_image``: each image's per-class Dice / IoU, its foreground means and pixel accuracy.
* ``rand_error`` (binary data only): the ISBI 2012 foreground-restricted Rand error, averaged
  over images (see :func:`adapted_rand`).

Ignored truth pixels (``IGNORE_LABEL``) count nowhere: not in any count, not in the pixel
accuracy and not in the Rand error (the prediction there is never looked at). Empty rule: a
score whose denominator is 0 (a class absent from truth and prediction) is ``NaN`` and left
out of every mean; :func:`save_json` writes it as ``null``.

Example:
    >>> result = evaluate(model, "data/generated/binary_v1")  # doctest: +SKIP
    >>> print(format_report(result))  # doctest: +SKIP
    >>> save_json(result, "runs/a/evaluation.json")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
from keras import ops

from unet_lib import IGNORE_LABEL
from unet_lib.data.folder import (
    IMAGE_EXTENSIONS,
    DatasetError,
    LoadedDataset,
    load_dataset,
    read_mask,
)
from unet_lib.fileio import write_text_atomic
from unet_lib.metrics import confusion_counts, dice_from_counts, iou_from_counts

__all__ = [
    "adapted_rand",
    "cell_segments",
    "evaluate",
    "evaluate_folder",
    "foreground_classes",
    "format_report",
    "per_image_table",
    "rand_error",
    "save_json",
    "score_label_maps",
    "to_jsonable",
]

BACKGROUND = "background"
_NAN = float("nan")
_SHOW = 10  # stems named in an error message


# --------------------------------------------------------------------------- small helpers


def _stem_list(stems: Sequence[str]) -> str:
    shown = ", ".join(stems[:_SHOW])
    return shown + (f", ... ({len(stems)} in all)" if len(stems) > _SHOW else "")


def _num(value) -> float:
    """A float, with ``None`` (JSON ``null``) read back as NaN."""
    return _NAN if value is None else float(value)


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


# --------------------------------------------------------------------------- Rand error


def cell_segments(labels: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Segments of a binary label map: the 4-connected components of class 0.

    With a boundary foreground (membranes) class 0 is the cells, so each segment is a cell.

    Args:
        labels: ``(H, W)`` integer label map (0 = background/cells).
        valid: Optional ``(H, W)`` bool mask; pixels outside it belong to no segment.

    Returns:
        ``int32`` ``(H, W)`` segment ids ``1 .. n``; 0 where the label is not 0 (or invalid).

    Example:
        >>> cell_segments(np.array([[0, 1, 0]])).tolist()
        [[1, 0, 2]]
    """
    cells = np.asarray(labels) == 0
    if valid is not None:
        cells &= np.asarray(valid, bool)
    _, segments = cv2.connectedComponents(cells.astype(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    return segments


def _counts(ids: np.ndarray) -> np.ndarray:
    """Occurrence count of every distinct id (bincount when ids are compact)."""
    if ids.size == 0:
        return np.zeros(0, np.float64)
    if int(ids.max()) <= 4 * ids.size + 1024:
        counts = np.bincount(ids)
        return counts[counts > 0].astype(np.float64)
    return np.unique(ids, return_counts=True)[1].astype(np.float64)


def adapted_rand(
    truth_segments: np.ndarray, pred_segments: np.ndarray
) -> tuple[float, float, float]:
    """Adapted Rand error of a segmentation (the SNEMI3D / ISBI 2012 ``adapted_rand``).

    Truth segment 0 is excluded (boundary or ignored pixels): only pixels with a truth segment
    ``i >= 1`` are scored. Predicted segment 0 (predicted boundary) is a set of singletons.
    With contingency counts ``p_ij`` over those pixels, ``a_i = sum_j p_ij`` (all ``j``),
    ``b_j = sum_i p_ij`` (``j >= 1``), ``c = sum_i p_i0`` and ``n`` the number of pixels::

        sumA  = sum_i a_i**2
        sumB  = sum_{j>=1} b_j**2 + c / n
        sumAB = sum_i sum_{j>=1} p_ij**2 + c / n
        precision = sumAB / sumB,  recall = sumAB / sumA
        error = 1 - 2 precision recall / (precision + recall)

    Args:
        truth_segments: Non-negative integer segment ids, any shape (0 = not scored).
        pred_segments: Non-negative integer segment ids, same shape (0 = boundary).

    Returns:
        ``(error, precision, recall)``; all NaN when no pixel has a truth segment.

    Example:
        >>> adapted_rand(np.array([[1, 1, 0, 2, 2]]), np.array([[1, 1, 1, 1, 1]]))[0]  # merge
        0.33333333333333337
    """
    a = np.asarray(truth_segments)
    b = np.asarray(pred_segments)
    if a.shape != b.shape:
        raise ValueError(f"segmentations differ in shape: {a.shape} (truth) vs {b.shape}.")
    for name, x in (("truth_segments", a), ("pred_segments", b)):
        if x.dtype.kind not in "uib" or (x.size and x.min() < 0):
            raise ValueError(f"{name} must hold non-negative integer segment ids.")
    n = a.size
    scored = a.ravel() > 0
    ta = a.ravel()[scored].astype(np.int64)
    pb = b.ravel()[scored].astype(np.int64)
    if ta.size == 0:
        return _NAN, _NAN, _NAN
    in_segment = pb > 0
    c_over_n = float(np.count_nonzero(~in_segment)) / n
    sum_a = float(np.sum(_counts(ta) ** 2))
    sum_b = float(np.sum(_counts(pb[in_segment]) ** 2)) + c_over_n
    joint = ta[in_segment] * (int(pb.max()) + 1) + pb[in_segment]
    sum_ab = float(np.sum(_counts(joint) ** 2)) + c_over_n
    precision, recall = sum_ab / sum_b, sum_ab / sum_a
    return 1.0 - 2.0 * precision * recall / (precision + recall), precision, recall


def rand_error(truth: np.ndarray, prediction: np.ndarray) -> float:
    """Foreground-restricted Rand error of a binary prediction (ISBI 2012, U-Net paper).

    Segments are the 4-connected components of class 0 (the cells between membranes) in the
    truth and in the prediction (:func:`cell_segments`); :func:`adapted_rand` scores them on
    the pixels that are class 0 in the truth. Ignored truth pixels (``IGNORE_LABEL``) are cut
    out of both segmentations, so the prediction there changes nothing.

    Args:
        truth: ``(H, W)`` label map, 0 / 1, ``IGNORE_LABEL`` for ignored pixels.
        prediction: ``(H, W)`` predicted label map, 0 / 1.

    Returns:
        The error in ``[0, 1]`` (0 = perfect); NaN when the truth has no class-0 pixel.

    Example:
        >>> rand_error(np.array([[0, 0, 1, 0, 0]]), np.array([[0, 0, 1, 0, 0]]))
        0.0
    """
    truth, prediction = np.asarray(truth), np.asarray(prediction)
    if truth.shape != prediction.shape:
        raise ValueError(f"truth {truth.shape} and prediction {prediction.shape} differ in shape.")
    valid = truth != IGNORE_LABEL
    return adapted_rand(cell_segments(truth, valid), cell_segments(prediction, valid))[0]


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


# --------------------------------------------------------------------------- data + predictions


def _load(data, labels, channels) -> LoadedDataset:
    if isinstance(data, LoadedDataset):
        if labels is not None:
            raise ValueError(
                "labels=... applies to a dataset folder; a LoadedDataset already has its mapping "
                "(load it with load_dataset(dir, labels=...) instead)."
            )
        if channels is not None and channels != data.channels:
            raise ValueError(
                f"the LoadedDataset has {data.channels}-channel images but channels={channels}; "
                f"load it with load_dataset(dir, channels={channels})."
            )
        return data
    if not isinstance(data, str | os.PathLike):
        raise TypeError(f"data must be a dataset folder or a LoadedDataset, got {type(data)}.")
    return load_dataset(data, labels=labels, channels=channels)


def _select(dataset: LoadedDataset, stems) -> LoadedDataset:
    if stems is None:
        return dataset
    if isinstance(stems, str):
        raise TypeError(f"stems must be a list of stems, got the string {stems!r}.")
    stems = [str(s) for s in stems]
    repeated = [s for s, count in Counter(stems).items() if count > 1]
    if repeated:
        raise ValueError(f"stems repeated: {_stem_list(repeated)}.")
    known = set(dataset.stems)
    unknown = [s for s in stems if s not in known]
    if unknown:
        raise ValueError(
            f"stems not in the dataset: {_stem_list(unknown)}; its stems look like "
            f"{_stem_list(dataset.stems[:3])}."
        )
    if not stems:
        raise ValueError("stems is empty; give at least one stem to evaluate.")
    return dataset.select(stems)


def _prediction_files(pred_dir: Path) -> dict[str, Path]:
    if not pred_dir.is_dir():
        raise DatasetError(
            f"{pred_dir}: predictions folder not found; give the folder holding one mask per "
            "image, named like the dataset's masks (<stem>.png)"
        )

    def listing(folder: Path) -> list[Path]:
        return [
            p
            for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
        ]

    found = listing(pred_dir)
    if not found and (pred_dir / "masks").is_dir():  # a dataset-shaped output folder
        found = listing(pred_dir / "masks")
    files: dict[str, Path] = {}
    problems = []
    for path in found:
        if path.stem in files:
            problems.append(f"{path}: same stem as {files[path.stem]}; keep one of the two files")
        else:
            files[path.stem] = path
    if problems:
        raise DatasetError(problems, header=f"predictions {pred_dir}: {len(problems)} problem(s):")
    return files


def _folder_predictions(pred_dir, dataset: LoadedDataset, all_stems: list[str]):
    """Yields (stem, label map) per dataset image; raises DatasetError naming bad stems first."""
    pred_dir = Path(pred_dir)
    files = _prediction_files(pred_dir)
    missing = [s for s in dataset.stems if s not in files]
    known = set(all_stems)
    extra = [
        s
        for s in files
        if s not in known and not (s.endswith("_overlay") and s[: -len("_overlay")] in files)
    ]  # predict_folder(..., overlay=True) writes <stem>_overlay.png beside <stem>.png
    problems = []
    if missing:
        problems.append(
            f"no prediction for {len(missing)} image(s): {_stem_list(missing)}; save "
            f"{pred_dir}/<stem>.png for each (or pass stems=[...] / --stems to score a subset)"
        )
    if extra:
        problems.append(
            f"{len(extra)} prediction(s) match no image of the dataset: {_stem_list(extra)}; "
            "name each prediction like its image's mask, or remove them"
        )
    if problems:
        raise DatasetError(problems, header=f"predictions {pred_dir} do not match the dataset:")
    mapping = dataset.mapping
    for stem, truth in zip(dataset.stems, dataset.masks, strict=True):
        path = files[stem]
        labels = mapping.encode(read_mask(path), path)
        if labels.shape != truth.shape:
            raise DatasetError(
                f"{path}: size {labels.shape[0]}x{labels.shape[1]} (HxW) differs from the mask "
                f"{truth.shape[0]}x{truth.shape[1]}; save predictions at the image's size"
            )
        stray = np.count_nonzero((labels == IGNORE_LABEL) & (truth != IGNORE_LABEL))
        if stray:
            raise DatasetError(
                f"{path}: holds the ignore value {mapping.ignore_value} at {stray} labelled "
                "pixel(s); a prediction must give a class to every pixel"
            )
        yield stem, labels


def _mapping_predictions(predictions: Mapping, dataset: LoadedDataset):
    missing = [s for s in dataset.stems if s not in predictions]
    if missing:
        raise ValueError(f"predictions has no label map for: {_stem_list(missing)}.")
    for stem in dataset.stems:
        yield stem, np.asarray(predictions[stem])


def _model_predictions(model, dataset: LoadedDataset, batch_size: int, **predict_kwargs):
    from unet_lib.inference import predict_batch

    for i in range(0, len(dataset), batch_size):  # equal-sized whole images share model calls
        images = dataset.images[i : i + batch_size]
        predictions = predict_batch(model, images, batch_size=batch_size, **predict_kwargs)
        for stem, prediction in zip(dataset.stems[i : i + batch_size], predictions, strict=True):
            yield stem, prediction.labels


def _check_model(model, mapping) -> None:
    out = model.output_shape
    if isinstance(out, list):
        raise ValueError("evaluate needs a model with one output (the class probabilities).")
    need = mapping.model_num_classes
    if out[-1] != need:
        raise ValueError(
            f"the model has {out[-1]} output channel(s) but the dataset has "
            f"{mapping.num_classes} classes {list(mapping.class_names)}, which need {need}; "
            "evaluate with the model trained on this data (or pass its labels=...)."
        )


def _model_channels(model) -> int | None:
    shape = model.input_shape
    if isinstance(shape, list):
        raise ValueError("evaluate needs a model with one image input.")
    return shape[-1] if shape[-1] in (1, 3) else None  # as inference.predict_folder


# --------------------------------------------------------------------------- public API


def evaluate(
    model,
    data,
    *,
    labels=None,
    channels: int | None = None,
    tta=False,
    tile_size=None,
    overlap: float = 0.25,
    threshold: float = 0.5,
    stems: Sequence[str] | None = None,
    predictions=None,
    batch_size: int = 4,
    verbose: int = 0,
) -> dict:
    """Score a model, or given predictions, on a dataset: Dice, IoU, accuracy, Rand error.

    Each image is predicted with :func:`unet_lib.inference.predict` (``tile_size``,
    ``overlap``, ``tta``, ``threshold`` and ``batch_size`` are passed on). With
    ``model=None``, ``predictions`` is scored instead: a folder of masks in the dataset's grey
    encoding (see :func:`evaluate_folder`) or a dict ``stem -> (H, W)`` label map.

    Per class ``k`` (``tp, fp, fn`` pooled over all images)::

        dice = 2 tp / (2 tp + fp + fn)    iou = tp / (tp + fp + fn)
        precision = tp / (tp + fp)        recall = tp / (tp + fn)
        pixel_accuracy = sum_k tp_k / labelled pixels,  pixel_error = 1 - pixel_accuracy

    A zero denominator gives NaN, left out of every mean. ``mean_dice`` / ``mean_iou``
    average ``per_class`` over :func:`foreground_classes`; ``rand_error`` (binary only) is the
    mean over images of :func:`rand_error`.

    Args:
        model: A Keras model with ``mapping.model_num_classes`` output channels, or ``None``.
        data: A dataset folder (``images/``, ``masks/``, optional ``dataset.json``) or a
            :class:`~unet_lib.data.LoadedDataset`.
        labels: Label mapping overriding ``dataset.json`` (folder only).
        channels: Convert images to 1 or 3 channels; default: the model's input channels.
        tta: Test-time augmentation: ``False``, ``True`` (8 transforms) or a count 1..8.
        tile_size: Predict in tiles of this size (``None``: whole images).
        overlap: Tile overlap fraction in ``[0, 1)``.
        threshold: Binary decision threshold on the foreground probability.
        stems: Score only these images (e.g. the held-out split), in this order.
        predictions: With ``model=None``: a predictions folder or a ``stem -> label map`` dict.
        batch_size: Tiles (or images) per model call.
        verbose: 1 prints one line per image.

    Returns:
        A JSON-ready dict (NaN where undefined; :func:`save_json` writes it as ``null``)::

            {"num_images": 2, "classes": ["background", "membrane"],
             "foreground_classes": ["membrane"],
             "mean_dice": .., "mean_iou": .., "pixel_accuracy": .., "pixel_error": ..,
             "rand_error": ..,                               # binary data only
             "per_image_mean_dice": .., "per_image_mean_iou": ..,  # means of per-image means
             "per_class": {"membrane": {"dice": .., "iou": .., "precision": .., "recall": ..,
                                        "tp": .., "fp": .., "fn": ..}, ...},
             "per_image": [{"stem": "a", "dice": {"background": .., "membrane": ..},
                            "iou": {...}, "mean_dice": .., "mean_iou": ..,
                            "pixel_accuracy": .., "rand_error": ..}, ...],
             "settings": {"data": .., "predictions": .., "tta": .., ...}}

    Raises:
        ValueError: bad arguments, a model that does not fit the data, unknown stems.
        DatasetError: dataset problems, missing / extra / malformed predictions.

    Example:
        >>> r = evaluate(model, "data/generated/binary_v1", tta=True)  # doctest: +SKIP
        >>> r["mean_dice"], r["rand_error"]  # doctest: +SKIP
    """
    if (model is None) == (predictions is None):
        raise ValueError(
            "give either a model or predictions=... (a folder of masks or a stem -> label map "
            "dict), not both and not neither."
        )
    if not isinstance(verbose, int):
        raise ValueError(f"verbose must be an int (0 or 1), got {verbose!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int (e.g. 4), got {batch_size!r}.")
    if model is not None:
        if channels is None:
            channels = _model_channels(model)
    elif tta or tile_size is not None:
        raise ValueError(
            "tta and tile_size apply when predicting with a model; predictions=... are scored "
            "as they are."
        )
    full = _load(data, labels, channels)
    dataset = _select(full, stems)
    settings: dict = {"data": None if isinstance(data, LoadedDataset) else str(data)}
    if model is not None:
        _check_model(model, dataset.mapping)
        pairs = _model_predictions(
            model, dataset, tile_size=tile_size, overlap=overlap, tta=tta,
            batch_size=batch_size, threshold=threshold,
        )  # fmt: skip
        settings.update(
            predictions=None, tta=tta, tile_size=tile_size, overlap=overlap, threshold=threshold
        )
    elif isinstance(predictions, Mapping):
        pairs = _mapping_predictions(predictions, dataset)
        settings["predictions"] = "in memory"
    elif isinstance(predictions, str | os.PathLike):
        pairs = _folder_predictions(predictions, dataset, list(full.stems))
        settings["predictions"] = str(predictions)
    else:
        raise TypeError(
            f"predictions must be a folder or a dict stem -> label map, got {type(predictions)}."
        )
    scorer = _Scorer(dataset.mapping.class_names)
    for i, ((stem, prediction), truth) in enumerate(zip(pairs, dataset.masks, strict=True)):
        scorer.add(stem, truth, prediction)
        if verbose:
            r = scorer.last_record()
            rand = f"  rand error {r['rand_error']:.4f}" if "rand_error" in r else ""
            print(f"evaluate {i + 1}/{len(dataset)} {stem}: dice {r['mean_dice']:.4f}{rand}")
    result = scorer.result()
    result["settings"] = settings
    return result


def evaluate_folder(
    predictions_dir,
    data,
    *,
    labels=None,
    stems: Sequence[str] | None = None,
    verbose: int = 0,
) -> dict:
    """Score a folder of predicted masks against a dataset (like nnU-Net's evaluate-folder).

    ``predictions_dir`` holds one mask per image, ``<stem>.<png|tif|...>`` with the stems of
    ``data/masks`` (or such files in ``predictions_dir/masks/``), in the dataset's own grey
    encoding: each file is decoded with the dataset's class mapping (``dataset.json`` or
    ``labels``), so masks written by any tool are scored exactly like :func:`evaluate` scores
    a model. Predicted grey values outside the mapping are an error.

    Args:
        predictions_dir: The folder of predicted masks.
        data: The dataset folder (or a :class:`~unet_lib.data.LoadedDataset`).
        labels: Label mapping overriding ``data/dataset.json``.
        stems: Score only these images; predictions of other dataset images are ignored.
        verbose: 1 prints one line per image.

    Returns:
        The dict of :func:`evaluate`.

    Raises:
        DatasetError: missing predictions (naming the stems; unless ``stems`` limits the
            set), predictions that match no image, duplicate stems, unreadable files, sizes
            that differ from the masks, unknown grey values.

    Example:
        >>> r = evaluate_folder("other_tool/out", "data/isbi")  # doctest: +SKIP
    """
    return evaluate(None, data, labels=labels, stems=stems, predictions=predictions_dir,
                    verbose=verbose)  # fmt: skip


# --------------------------------------------------------------------------- JSON + reports


def to_jsonable(value):
    """A copy of ``value`` that ``json.dumps(..., allow_nan=False)`` accepts.

    NaN and infinities become ``None`` (JSON ``null``), NumPy scalars and arrays become
    Python numbers and lists, tuples become lists, paths become strings.

    Example:
        >>> to_jsonable({"dice": float("nan"), "n": np.int64(3)})
        {'dice': None, 'n': 3}
    """
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"cannot write {type(value).__name__} as JSON: {value!r}")


def save_json(result: dict, path) -> Path:
    """Write an evaluation result as indented JSON, atomically (NaN written as ``null``).

    The text goes to a temporary file in the same folder, then ``os.replace`` moves it onto
    ``path``, so a reader never sees a half-written file.

    Args:
        result: The dict from :func:`evaluate` (or anything :func:`to_jsonable` accepts).
        path: Target file; its folder is created if needed.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Example:
        >>> save_json(result, "runs/a/evaluation.json")  # doctest: +SKIP
    """
    text = json.dumps(to_jsonable(result), indent=2, allow_nan=False)
    return write_text_atomic(path, text + "\n")


def _fmt(value, digits: int = 4) -> str:
    value = _num(value)
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def per_image_table(result: dict) -> list[dict]:
    """One flat row per image, worst first by the image's foreground Dice (NaN last).

    Args:
        result: The dict from :func:`evaluate` (or that dict read back from JSON).

    Returns:
        Rows ``{"stem", "dice", "iou", "pixel_accuracy", ["rand_error"], "dice_<class>"...}``
        where ``dice`` / ``iou`` are the image's foreground means and ``dice_<class>`` its
        per-class Dice; ``pandas.DataFrame(rows)`` makes a table of them.

    Example:
        >>> rows = per_image_table(result)  # doctest: +SKIP
        >>> rows[0]["stem"], rows[-1]["stem"]  # worst and best  # doctest: +SKIP
    """
    rows = []
    for record in result["per_image"]:
        row = {
            "stem": record["stem"],
            "dice": _num(record["mean_dice"]),
            "iou": _num(record["mean_iou"]),
            "pixel_accuracy": _num(record["pixel_accuracy"]),
        }
        if "rand_error" in record:
            row["rand_error"] = _num(record["rand_error"])
        row.update({f"dice_{name}": _num(v) for name, v in record["dice"].items()})
        rows.append(row)
    return sorted(
        rows, key=lambda r: (math.isnan(r["dice"]), 0.0 if math.isnan(r["dice"]) else r["dice"])
    )


def format_report(result: dict, *, worst: int = 3) -> str:
    """A plain-text report: per-class table, the means, and the worst and best images.

    Args:
        result: The dict from :func:`evaluate` (or read back from JSON).
        worst: How many of the worst (and best) images to list; 0 for none.

    Returns:
        Multi-line text (undefined values shown as ``-``).

    Example:
        >>> print(format_report(result))  # doctest: +SKIP
    """
    names = list(result["per_class"])
    width = max(len("class"), *(len(n) for n in names))
    fg = result.get("foreground_classes", names)
    lines = [
        f"evaluation on {result['num_images']} image(s), {len(names)} classes "
        "(dataset-level: pixels pooled over all images)",
        f"  {'class':<{width}}    dice     iou  precision  recall   truth px    pred px",
    ]
    for name in names:
        c = result["per_class"][name]
        mark = "*" if name in fg else " "
        lines.append(
            f"  {name:<{width}}{mark}  {_fmt(c['dice'])}  {_fmt(c['iou'])}     "
            f"{_fmt(c['precision'])}  {_fmt(c['recall'])}  {c['tp'] + c['fn']:>9}  "
            f"{c['tp'] + c['fp']:>9}"
        )
    lines += [
        f"  mean Dice {_fmt(result['mean_dice'])}  mean IoU {_fmt(result['mean_iou'])}  "
        f"(* averaged: {', '.join(fg)})",
        f"  per-image mean Dice {_fmt(result.get('per_image_mean_dice'))}  "
        f"IoU {_fmt(result.get('per_image_mean_iou'))}",
        f"  pixel accuracy {_fmt(result['pixel_accuracy'])}  "
        f"(pixel error {_fmt(result['pixel_error'])})",
    ]
    if "rand_error" in result:
        lines.append(
            f"  Rand error {_fmt(result['rand_error'])}  (ISBI 2012 foreground-restricted, "
            "mean over images)"
        )
    rows = per_image_table(result)
    if worst > 0 and len(rows) > 1:
        k = min(worst, len(rows))
        shown = [r for r in rows if not math.isnan(r["dice"])]
        lines.append(
            "  worst images: " + ", ".join(f"{r['stem']} {_fmt(r['dice'])}" for r in shown[:k])
        )
        best = shown[::-1][:k]
        lines.append("  best images:  " + ", ".join(f"{r['stem']} {_fmt(r['dice'])}" for r in best))
    return "\n".join(lines)
