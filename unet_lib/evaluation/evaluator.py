"""Evaluation: score a model (or a folder of predicted masks) on a dataset folder.

One scoring function serves both paths, so a U-Net's results and any other tool's masks are
compared on equal terms (like nnU-Net's ``evaluate_folder``):

* :func:`evaluate` predicts every image with :func:`unet_lib.inference.predict` (optionally
  tiled, with test-time augmentation) and scores the label maps against the truth.
* :func:`evaluate_folder` (= ``evaluate(None, data, predictions=DIR)``) reads predicted masks
  saved in the dataset's own grey encoding (``dataset.json``) and scores them the same way.

Reported (scored by :mod:`.scoring`; Dice and IoU come from :mod:`unet_lib.metrics`):

* ``per_class``: dataset-level Dice, IoU, precision and recall of every class, from
  confusion counts pooled over all images (``Dice = 2 tp / (2 tp + fp + fn)``,
  ``IoU = tp / (tp + fp + fn)``, ``precision = tp / (tp + fp)``, ``recall = tp / (tp + fn)``).
* ``mean_dice`` / ``mean_iou``: the NaN-skipping mean of ``per_class`` over the foreground
  classes (every class but one named ``background``; all classes if none is so named).
* ``pixel_accuracy = sum_k tp_k / labelled pixels`` and ``pixel_error = 1 - pixel_accuracy``.
* ``per_image``: each image's per-class Dice / IoU, its foreground means and pixel accuracy.
* ``rand_error`` (binary data only): the ISBI 2012 foreground-restricted Rand error, averaged
  over images (see :func:`adapted_rand`, in :mod:`unet_lib.evaluation.randerror`).

Ignored truth pixels (``IGNORE_LABEL``) count nowhere: not in any count, not in the pixel
accuracy and not in the Rand error (the prediction there is never looked at). Empty rule: a
score whose denominator is 0 (a class absent from truth and prediction) is ``NaN`` and left
out of every mean; :func:`save_json` writes it as ``null`` (JSON and text reports are in
:mod:`unet_lib.evaluation.report`). Every name of those modules stays importable from here.

Example:
    >>> result = evaluate(model, "data/generated/binary_v1")  # doctest: +SKIP
    >>> print(format_report(result))  # doctest: +SKIP
    >>> save_json(result, "runs/a/evaluation.json")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from unet_lib import IGNORE_LABEL
from unet_lib.data.folder import (
    IMAGE_EXTENSIONS,
    DatasetError,
    LoadedDataset,
    load_dataset,
    read_mask,
)
from unet_lib.evaluation.randerror import adapted_rand, cell_segments, rand_error
from unet_lib.evaluation.report import format_report, per_image_table, save_json, to_jsonable
from unet_lib.evaluation.scoring import BACKGROUND as BACKGROUND  # re-exported, as before the split
from unet_lib.evaluation.scoring import _Scorer, foreground_classes, score_label_maps

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

_SHOW = 10  # stems named in an error message


# --------------------------------------------------------------------------- small helpers


def _stem_list(stems: Sequence[str]) -> str:
    shown = ", ".join(stems[:_SHOW])
    return shown + (f", ... ({len(stems)} in all)" if len(stems) > _SHOW else "")


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
    from unet_lib.inference.predictor import predict_batch

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

    Each image is predicted with :func:`unet_lib.inference.predictor.predict` (``tile_size``,
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
