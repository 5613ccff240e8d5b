"""Saving predictions atomically: label maps as grey PNGs, overlays (``viz.overlay``'s, so the
CLI's match the notebook's figures), a whole folder at once."""

import warnings
from pathlib import Path

import cv2
import numpy as np

from unet_lib import viz
from unet_lib.data import (
    IMAGE_EXTENSIONS,
    DatasetError,
    count_pages,
    load_label_mapping,
    page_stems,
    read_image,
)
from unet_lib.fileio import atomic_path
from unet_lib.inference.predictor import check_options, predict


def _check_labels(labels) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 3 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if labels.ndim != 2 or labels.dtype.kind not in "iub":
        raise ValueError(
            f"labels must be an integer (H, W) label map, got {labels.dtype} "
            f"{labels.shape}; use Prediction.labels."
        )
    return labels


def _write(path, array: np.ndarray) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), array):
            raise ValueError(f"{path}: OpenCV cannot write this format; use a .png path.")
    return path


def save_mask(labels, path, mapping=None, *, binary: bool | None = None) -> Path:
    """Save an ``(H, W)`` integer label map as a grey PNG; returns the path.

    With a ``mapping`` (a ``LabelMapping``: anything with ``decode``) pixels get the dataset's
    grey values (its RGB colours for a colour mapping: an RGB PNG). Without one, binary maps
    (``binary``; ``None``: labels <= 1) are saved as 0 / 255, others as the class indices.
    """
    labels = _check_labels(labels)
    if mapping is not None:
        values = np.asarray(mapping.decode(labels))
        return _write(path, values[..., ::-1] if values.ndim == 3 else values)  # RGB -> BGR
    if labels.size and labels.min() < 0:
        raise ValueError("labels hold negative values; pass the dataset's mapping.")
    top = int(labels.max()) if labels.size else 0
    binary = top <= 1 if binary is None else binary
    if binary and top > 1:
        raise ValueError(f"binary=True but labels reach {top}; pass binary=False.")
    if binary:
        return _write(path, (labels * 255).astype(np.uint8))
    return _write(path, labels.astype(np.uint8 if top <= 255 else np.uint16))


def overlay_image(image, labels, alpha: float = 0.5, colors=None) -> np.ndarray:
    """``uint8`` RGB ``(H, W, 3)``: :func:`unet_lib.viz.overlay`'s tint; ``colors`` are RGB
    triples for classes 1, 2, ... (default :func:`unet_lib.viz.label_colors`).
    """
    labels = _check_labels(labels)
    if colors is not None:  # viz takes one colour per class, background included
        colors = np.concatenate([np.zeros((1, 3), np.asarray(colors).dtype), colors])
    return viz.overlay(image, labels, alpha=alpha, colors=colors)


def save_overlay(image, labels, path, alpha: float = 0.5, colors=None) -> Path:
    """Save :func:`overlay_image` as an RGB PNG; returns the path."""
    rgb = overlay_image(image, labels, alpha, colors)
    return _write(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _image_files(source: Path, out_dir: Path) -> list[Path]:
    """The images to predict (a folder's, sorted, or one file), checked against ``out_dir``."""
    if source.is_dir():
        files = sorted(  # hidden files (._a.png from macOS) are skipped, as check does
            p for p in source.iterdir()
            if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
        )  # fmt: skip
    elif source.is_file():
        files = [source]
    else:
        raise FileNotFoundError(f"{source}: no such image or folder.")
    stems = [p.stem for p in files]
    if len(set(stems)) != len(stems):
        raise ValueError(f"{source}: several images share a name (e.g. a.png, a.tif); rename them.")
    inputs = {p.resolve() for p in files}
    targets = [out_dir / f"{stem}{tail}" for stem in stems for tail in (".png", "_overlay.png")]
    if any(t.resolve() in inputs for t in targets):
        raise ValueError(f"out_dir {out_dir} would overwrite input images; pick another folder.")
    return files


def _readable(jobs, channels, skip_bad: bool, source: Path) -> list:
    """The ``(path, stem, page)`` jobs whose image decodes; the others are all reported in one
    DatasetError before anything is written, or (``skip_bad``) skipped with a warning each."""
    problems, good = [], []
    for job in jobs:
        try:
            read_image(job[0], channels, page=job[2])
            good.append(job)
        except DatasetError as error:
            problems.extend(error.problems)
    if problems and not skip_bad:
        raise DatasetError(problems, header=f"{len(problems)} unreadable image(s) in {source}; "
                           "nothing written (fix or remove them, or pass --skip-bad):")  # fmt: skip
    for problem in problems:
        warnings.warn(f"predict: skipped {problem}", RuntimeWarning, stacklevel=3)
    return good


def predict_folder(
    model, source, out_dir, *, mapping=None, channels=None, overlay=False, alpha=0.5,
    verbose: int = 0, skip_bad: bool = False, **kwargs,
) -> list[Path]:  # fmt: skip
    """Predict every image of a folder (sorted) or one file (each page of a multi-page TIFF);
    returns the paths written.

    Masks go to ``out_dir/<stem>.png`` (:func:`save_mask`; ``mapping``: a ``LabelMapping``, a
    ``dataset.json`` dict / path / JSON string, or ``None``), with ``overlay`` also
    ``<stem>_overlay.png`` (tint ``alpha``). ``channels`` (1 or 3) converts the images, default
    the model's; ``verbose=1`` shows a Keras progress bar over the images. Every image is
    decoded first: unreadable ones are all reported in one ``DatasetError`` before anything
    is written, or skipped with a warning when ``skip_bad``. ``kwargs`` are :func:`predict`'s.
    """
    check_options(model, kwargs)  # fail before reading anything
    source, out_dir = Path(source), Path(out_dir)
    files = _image_files(source, out_dir)
    if mapping is not None and not hasattr(mapping, "decode"):
        mapping = load_label_mapping(source, mapping)
    num_classes = model.output_shape[-1]
    if mapping is not None and mapping.model_num_classes != num_classes:
        raise ValueError(
            f"the mapping has {mapping.num_classes} classes but the model "
            f"{num_classes} outputs; use the dataset.json it was trained with."
        )
    channels = channels or (model.input_shape[-1] if model.input_shape[-1] in (1, 3) else None)
    jobs = [(path, stem, page) for path in files  # a TIFF stack: each page, NAME_000, ...
            for stem, page in page_stems(path.stem, count_pages(path))]  # fmt: skip
    written, jobs = [], _readable(jobs, channels, skip_bad, source)
    bar = None
    if verbose:
        import keras

        bar = keras.utils.Progbar(len(jobs), unit_name="image")
    for done, (path, stem, page) in enumerate(jobs, start=1):
        image, base = read_image(path, channels, page=page), out_dir / stem
        labels = predict(model, image, **kwargs).labels
        written.append(save_mask(labels, f"{base}.png", mapping, binary=num_classes == 1))
        if overlay:
            written.append(save_overlay(image, labels, f"{base}_overlay.png", alpha))
        if bar is not None:
            bar.update(done)
    return written
