"""The prediction API: :func:`predict`, :func:`predict_probabilities`, :func:`predict_batch`."""

import inspect
from dataclasses import dataclass

import numpy as np

from unet_lib.data import as_pair
from unet_lib.inference import tiling
from unet_lib.inference.engine import model_forward, resolve_precision
from unet_lib.inference.geometry import Geometry, model_geometry


@dataclass
class Prediction:
    """Result of :func:`predict`."""

    probabilities: np.ndarray  # float32 (H, W, num_classes)
    labels: np.ndarray  # int32 (H, W): p >= threshold for one class, else the argmax


def _prepare(image, geom: Geometry) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}.")
    if geom.channels is not None and image.shape[2] != geom.channels:
        raise ValueError(
            f"image has {image.shape[2]} channels but the model takes {geom.channels}; "
            "convert it (e.g. read_image(path, channels=...))."
        )
    if image.dtype not in (np.uint8, np.uint16) and image.dtype.kind != "f":
        raise ValueError(f"image dtype {image.dtype} is not supported; give float32 in [0, 1].")
    return image


def _validate(geom, tile_size, overlap, blend, tta, batch_size, threshold, precision):
    """``(tile or None, TTA transforms)``; a ``ValueError`` naming the fix for a bad argument."""
    resolve_precision(precision)
    if not isinstance(overlap, float | int) or not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap!r}; 0.25 is a good default.")
    if blend not in tiling.BLEND_MODES:
        raise ValueError(f"blend must be one of {tiling.BLEND_MODES}, got {blend!r}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}.")
    transforms = tiling.tta_transforms(tta)
    if tile_size is None:  # a fixed-size model is always tiled
        return geom.fixed_tile, transforms
    return geom.check_tile(as_pair(tile_size, "tile_size")), transforms


def _labels(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    h, w, c = probabilities.shape
    labels = np.empty((h, w), np.int32)
    step = max(1, tiling.CHUNK // max(w * c, 1))
    for r in range(0, h, step):
        p = probabilities[r : r + step]
        labels[r : r + step] = p[..., 0] >= threshold if c == 1 else np.argmax(p, axis=-1)
    return labels


def predict_probabilities(
    model, image, *, tile_size=None, overlap: float = 0.25, blend: str = "gaussian", tta=False,
    batch_size: int = 4, multiple: int | None = None, from_logits: bool = False,
    verbose: bool = False, precision: str = "float32",
) -> np.ndarray:  # fmt: skip
    """Class probabilities of one image, float32 ``(H, W, num_classes)``; the arguments are
    :func:`predict`'s. Tiled, the result is the accumulator itself (no full-size copy).
    """
    geom = model_geometry(model, multiple)
    tile, transforms = _validate(geom, tile_size, overlap, blend, tta, batch_size, 0.5, precision)
    image = _prepare(image, geom)
    forward = model_forward(model, precision, from_logits)
    if tile is None:
        return tiling.predict_whole(forward, geom, [image], transforms, 1)[0]
    return tiling.predict_tiled(
        forward, geom, image, tile, transforms, overlap=overlap, blend=blend,
        batch_size=batch_size, verbose=verbose,
    )  # fmt: skip


def predict(
    model, image, *, tile_size=None, overlap: float = 0.25, blend: str = "gaussian", tta=False,
    batch_size: int = 4, threshold: float = 0.5, multiple: int | None = None,
    from_logits: bool = False, verbose: bool = False, precision: str = "float32",
) -> Prediction:  # fmt: skip
    """Predict one image of any size, whole or in overlapping tiles, with optional TTA.

    Whole images are mirror-padded to a size the model takes and cropped back; tiles (the
    paper's overlap-tile strategy) are blended for ``padding="same"``, stitched for ``"valid"``.

    Args:
        model: A Keras segmentation model (e.g. :func:`unet_lib.build_unet`), ``padding="same"``
            or ``"valid"``: its output is its input's size or smaller.
        image: ``(H, W)`` or ``(H, W, C)``, float32 in ``[0, 1]`` (uint8 / uint16 are scaled).
        tile_size: ``None`` (one pass), or an int or ``(h, w)`` output tile, a multiple of
            ``2**depth`` (a fixed-size model is always tiled at its size).
        overlap: Fraction of a tile shared with its neighbour (``"same"`` only), in ``[0, 1)``.
        blend: Window weighting overlapping tiles: ``"gaussian"`` or ``"linear"``.
        tta: ``False``, ``True`` (all 8 flips / 90 degree turns) or a count 1..8
            (:func:`tta_transforms`); probabilities are averaged.
        batch_size: Tiles (or images) per model call.
        threshold: One output channel: label 1 where ``p >= threshold``.
        multiple: The model's size multiple; ``None`` infers ``2**depth`` from its pooling.
        from_logits: The model outputs logits: apply sigmoid / softmax.
        verbose: Print the number of tiles done after each batch.
        precision: ``"float32"``, ``"bfloat16"`` or ``"auto"`` (:mod:`~unet_lib.inference.engine`).

    Example:
        >>> predict(model, np.random.rand(37, 53), tile_size=32).labels.shape  # doctest: +SKIP
        (37, 53)
    """
    geom = model_geometry(model, multiple)
    _validate(geom, None, overlap, blend, tta, batch_size, threshold, precision)
    probabilities = predict_probabilities(
        model, image, tile_size=tile_size, overlap=overlap, blend=blend, tta=tta,
        batch_size=batch_size, multiple=multiple, from_logits=from_logits, verbose=verbose,
        precision=precision,
    )  # fmt: skip
    return Prediction(probabilities, _labels(probabilities, threshold))


def check_options(model, kwargs: dict) -> tuple[dict, Geometry, list]:
    """:func:`predict`'s keyword arguments with defaults, the geometry, the TTA transforms;
    ``TypeError`` for an unknown argument, ``ValueError`` for a bad value."""
    bound = inspect.signature(predict).bind(model, None, **kwargs)
    bound.apply_defaults()
    opt = bound.arguments
    geom = model_geometry(model, opt["multiple"])
    names = ("tile_size", "overlap", "blend", "tta", "batch_size", "threshold", "precision")
    return opt, geom, _validate(geom, *(opt[n] for n in names))[1]


def predict_batch(model, images, **kwargs) -> list[Prediction]:
    """:func:`predict` for a list of images (any sizes), with the same keyword arguments; whole
    images (``tile_size=None``) of equal shape are stacked, ``batch_size`` per call."""
    images = list(images)
    opt, geom, transforms = check_options(model, kwargs)
    if opt["tile_size"] is not None or geom.fixed is not None or len(images) < 2:
        return [predict(model, image, **kwargs) for image in images]
    prepared = [_prepare(image, geom) for image in images]
    forward = model_forward(model, opt["precision"], opt["from_logits"])
    probs = tiling.predict_whole(forward, geom, prepared, transforms, opt["batch_size"])
    return [Prediction(p, _labels(p, opt["threshold"])) for p in probs]
