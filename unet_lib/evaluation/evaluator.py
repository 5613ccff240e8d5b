"""Evaluation: score a model, or another tool's predicted masks, on a dataset folder.

One :class:`.scoring.Scorer` serves both, so they compare on equal terms (like nnU-Net's
``evaluate_folder``).

Example:
    >>> result = evaluate(model, "data/generated/binary_v1")  # doctest: +SKIP
    >>> print(format_report(result))  # doctest: +SKIP
"""

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from unet_lib import IGNORE_LABEL
from unet_lib.data import DatasetError, LoadedDataset, list_images, load_dataset, read_labels
from unet_lib.evaluation.scoring import Scorer

__all__ = ["evaluate", "evaluate_folder"]


def _stem_list(stems: Sequence[str], show: int = 10) -> str:
    shown = ", ".join(stems[:show])
    return shown + (f", ... ({len(stems)} in all)" if len(stems) > show else "")


def _load(data, labels, channels) -> LoadedDataset:
    if not isinstance(data, LoadedDataset | str | os.PathLike):
        raise TypeError(f"data must be a dataset folder or a LoadedDataset, got {type(data)}.")
    if not isinstance(data, LoadedDataset):
        return load_dataset(data, labels=labels, channels=channels)
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


def _select(dataset: LoadedDataset, stems) -> LoadedDataset:
    if stems is None:
        return dataset
    if isinstance(stems, str):
        raise TypeError(f"stems must be a list of stems, got the string {stems!r}.")
    stems = [str(s) for s in stems]
    if repeated := [s for s, count in Counter(stems).items() if count > 1]:
        raise ValueError(f"stems repeated: {_stem_list(repeated)}.")
    known = set(dataset.stems)
    if unknown := [s for s in stems if s not in known]:
        raise ValueError(
            f"stems not in the dataset: {_stem_list(unknown)}; its stems look like "
            f"{_stem_list(dataset.stems[:3])}."
        )
    if not stems:
        raise ValueError("stems is empty; give at least one stem to evaluate.")
    return dataset.select(stems)


def _folder_predictions(pred_dir, dataset: LoadedDataset, all_stems: list[str]):
    """Yields ``(stem, label map)`` per image, read from ``pred_dir`` with the dataset's mapping.

    Missing, extra and duplicate predictions are listed together in one DatasetError.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise DatasetError(
            f"{pred_dir}: predictions folder not found; give the folder holding one mask per "
            "image, named like the dataset's masks (<stem>.png)"
        )
    files, problems = {}, []
    for folder in (pred_dir, pred_dir / "masks"):  # masks/: a dataset-shaped output folder
        if not files and folder.is_dir():
            files = list_images(folder, problems)[0]
    if missing := [s for s in dataset.stems if s not in files]:
        problems.append(
            f"no prediction for {len(missing)} image(s): {_stem_list(missing)}; save "
            f"{pred_dir}/<stem>.png for each (or pass stems=[...] to score a subset)"
        )
    allowed = set(all_stems) | {f"{s}_overlay" for s in files}  # predict_folder(overlay=True)
    if extra := [s for s in files if s not in allowed]:
        problems.append(
            f"{len(extra)} prediction(s) match no image of the dataset: {_stem_list(extra)}; "
            "name each prediction like its image's mask, or remove them"
        )
    if problems:
        raise DatasetError(problems, header=f"predictions {pred_dir}: {len(problems)} problem(s):")
    mapping, header = dataset.mapping, f"a problem in the predictions {pred_dir}:"
    for stem, truth in zip(dataset.stems, dataset.masks, strict=True):
        path = files[stem]
        try:
            labels = read_labels(path, mapping)
        except DatasetError as error:
            raise DatasetError(error.problems, header=header) from None
        if labels.shape != truth.shape:
            raise DatasetError(
                f"{path}: size {labels.shape[0]}x{labels.shape[1]} (HxW) differs from the mask "
                f"{truth.shape[0]}x{truth.shape[1]}; save predictions at the image's size",
                header=header,
            )
        if stray := np.count_nonzero((labels == IGNORE_LABEL) & (truth != IGNORE_LABEL)):
            raise DatasetError(
                f"{path}: holds the ignore value {mapping.ignore_value} at {stray} labelled "
                "pixel(s); a prediction must give a class to every pixel",
                header=header,
            )
        yield stem, labels


def _given_predictions(predictions, dataset: LoadedDataset, all_stems: list[str]):
    """``(pairs, settings label)`` of a predictions folder or a ``stem -> label map`` dict."""
    if isinstance(predictions, str | os.PathLike):
        return _folder_predictions(predictions, dataset, all_stems), str(predictions)
    if not isinstance(predictions, Mapping):
        raise TypeError(
            f"predictions must be a folder or a dict stem -> label map, got {type(predictions)}."
        )
    if missing := [s for s in dataset.stems if s not in predictions]:
        raise ValueError(f"predictions has no label map for: {_stem_list(missing)}.")
    return ((s, np.asarray(predictions[s])) for s in dataset.stems), "in memory"


def _model_predictions(model, dataset: LoadedDataset, batch_size: int, **predict_kwargs):
    from unet_lib.inference import predict_batch

    for i in range(0, len(dataset), batch_size):  # equal-sized whole images share model calls
        images = dataset.images[i : i + batch_size]
        predictions = predict_batch(model, images, batch_size=batch_size, **predict_kwargs)
        for stem, prediction in zip(dataset.stems[i : i + batch_size], predictions, strict=True):
            yield stem, prediction.labels


def _check_arguments(model, predictions, tta, tile_size, batch_size, verbose) -> None:
    if (model is None) == (predictions is None):
        raise ValueError(
            "give either a model or predictions=... (a folder of masks or a stem -> label map "
            "dict), not both and not neither."
        )
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1 (a progress bar) or 2 (a line per image), got "
                         f"{verbose!r}.")  # fmt: skip
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int (e.g. 4), got {batch_size!r}.")
    if model is not None and list in (type(model.input_shape), type(model.output_shape)):
        raise ValueError("evaluate needs a model with one image input and one output.")
    if model is None and (tta or tile_size is not None):
        raise ValueError(
            "tta and tile_size apply when predicting with a model; predictions=... are scored "
            "as they are."
        )


def _score(pairs, dataset: LoadedDataset, verbose: int) -> dict:
    """Scores the pairs; ``verbose`` 1: a Keras progress bar, 2: one line per image."""
    scorer = Scorer(dataset.mapping.class_names)
    bar = None
    if verbose == 1:
        import keras

        bar = keras.utils.Progbar(len(dataset), unit_name="image")
    for i, ((stem, prediction), truth) in enumerate(zip(pairs, dataset.masks, strict=True)):
        r = scorer.add(stem, truth, prediction)
        if bar is not None:
            bar.update(i + 1, values=[("dice", r["mean_dice"])])
        elif verbose:
            rand = f"  rand error {r['rand_error']:.4f}" if "rand_error" in r else ""
            print(f"evaluate {i + 1}/{len(dataset)} {stem}: dice {r['mean_dice']:.4f}{rand}")
    return scorer.result()


def evaluate(model, data, *, labels=None, channels: int | None = None, tta=False,
             tile_size=None, overlap: float = 0.25, threshold: float = 0.5,
             stems: Sequence[str] | None = None, predictions=None, batch_size: int = 4,
             verbose: int = 0) -> dict:  # fmt: skip
    """Score a model, or given predictions, on a dataset: Dice, IoU, accuracy, Rand error.

    Args:
        model: A Keras model with ``mapping.model_num_classes`` output channels, or ``None``
            to score ``predictions``: a folder of masks in the dataset's grey encoding (see
            :func:`evaluate_folder`) or a dict ``stem -> (H, W)`` label map.
        data: A dataset folder or a :class:`~unet_lib.data.LoadedDataset`.
        labels: Label mapping overriding ``dataset.json`` (folder only).
        channels: Convert images to 1 or 3 channels; default: the model's input channels.
        tta, tile_size, overlap, threshold, batch_size: Passed on to
            :func:`unet_lib.inference.predict_batch` (``batch_size`` images or tiles a call).
        stems: Score only these images (e.g. the held-out split), in this order.
        verbose: 1 a progress bar (Keras'), 2 one line per image.

    Returns:
        The dict of :func:`.scoring.score_label_maps` (formulas, keys, NaN) and ``"settings":
        {"data", "predictions", "tta", "tile_size", "overlap", "threshold"}``.

    Raises:
        ValueError: bad arguments, a model that does not fit the data, unknown stems.
        DatasetError: dataset problems, missing / extra / malformed predictions.
    """
    _check_arguments(model, predictions, tta, tile_size, batch_size, verbose)
    if model is not None and channels is None:  # as inference.predict_folder: 1, 3 or as stored
        channels = model.input_shape[-1] if model.input_shape[-1] in (1, 3) else None
    full = _load(data, labels, channels)
    dataset = _select(full, stems)
    settings: dict = {"data": None if isinstance(data, LoadedDataset) else str(data)}
    if model is not None:
        mapping, out = dataset.mapping, model.output_shape[-1]
        if out != mapping.model_num_classes:
            raise ValueError(
                f"the model has {out} output channel(s) but the dataset has "
                f"{mapping.num_classes} classes {list(mapping.class_names)}, which need "
                f"{mapping.model_num_classes}; evaluate with the model trained on this data (or "
                "pass its labels=...)."
            )
        options = {"tta": tta, "tile_size": tile_size, "overlap": overlap, "threshold": threshold}
        pairs = _model_predictions(model, dataset, batch_size, **options)
        settings.update(predictions=None, **options)
    else:
        pairs, settings["predictions"] = _given_predictions(predictions, dataset, full.stems)
    return {**_score(pairs, dataset, verbose), "settings": settings}


def evaluate_folder(
    predictions_dir, data, *, labels=None, stems: Sequence[str] | None = None, verbose: int = 0
) -> dict:
    """Score a folder of predicted masks against a dataset (like nnU-Net's evaluate-folder).

    ``predictions_dir`` holds ``<stem>.<png|tif|...>`` per image (or such files in
    ``predictions_dir/masks/``) in the dataset's grey encoding (``dataset.json`` or
    ``labels``); unknown grey values, missing or extra stems (unless ``stems`` limits the
    set) and sizes that differ from the masks raise a ``DatasetError``. Returns the dict of
    :func:`evaluate`.
    """
    return evaluate(
        None, data, labels=labels, stems=stems, predictions=predictions_dir, verbose=verbose
    )
