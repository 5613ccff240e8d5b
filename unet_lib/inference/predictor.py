"""Prediction on whole images and overlap-tiled large images, test-time augmentation, saving.

* Whole images of any size are mirror-padded (reflect) to a size the model takes, predicted in
  one pass and cropped back. For ``padding="valid"`` models the image is also mirror-padded by
  the model's margin ``(in - out) / 2``, so the output has the input's size.
* With ``tile_size`` the image is predicted in tiles, batched, as in the paper's overlap-tile
  strategy: borders are mirrored, ``padding="same"`` tiles overlap and are blended with a
  Gaussian (or linear) window, ``padding="valid"`` tiles fit exactly and are stitched without
  blending (the result then equals the whole-image prediction).
* ``tta`` averages probabilities over flips and 90 degree rotations (the dihedral group).

Memory stays bounded by the tile batch and the output: tiles are read with reflected index
arrays (no padded copy of the image), weighted probabilities accumulate in place in the output
array, and since the tiles form a grid and the windows are separable (``w(y, x) = wy(y) wx(x)``)
the weight sum is the outer product of two 1-D sums, so normalisation needs no ``(H, W)``
buffer. Only ``keras``, ``numpy`` and ``cv2`` are imported, so this runs on every backend.

Speed (``precision``, see :mod:`unet_lib.inference.engine`): the model runs as an inference copy
with batch norm folded into the convolutions, compiled (``predict_on_batch``, a ``tf.function``
on TensorFlow); ``precision="auto"`` or ``"bfloat16"`` also computes in bfloat16 on CPUs with
AVX-512 BF16 / AMX units (about 2x float32 there, >= 99.9 % of the float32 labels on a trained
U-Net; measured in ``benchmarks/README.md``). The default, ``"float32"``, keeps the model's
float32 probabilities.
"""

from __future__ import annotations

import colorsys
import inspect
import math
import weakref
from dataclasses import dataclass
from pathlib import Path

import cv2
import keras
import numpy as np

from unet_lib.data import reflect_indices
from unet_lib.fileio import atomic_path
from unet_lib.inference.engine import PRECISIONS, Runner, runner

BLEND_MODES = ("gaussian", "linear")
_MIN_WEIGHT = 1e-6  # window floor: every pixel a tile covers gets a positive weight
_CHUNK = 1 << 20  # elements per row chunk when normalising / labelling in place
_COLORS = [(255, 0, 0), (0, 255, 0), (0, 96, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255)]


@dataclass
class Prediction:
    """Result of :func:`predict`.

    Attributes:
        probabilities: ``float32`` ``(H, W, num_classes)`` class probabilities.
        labels: ``int32`` ``(H, W)`` label map (binary: ``p >= threshold``; else argmax).
    """

    probabilities: np.ndarray
    labels: np.ndarray


# ----------------------------------------------------------------------------- windows
def _window_1d(n: int, blend: str, sigma_fraction: float = 1 / 8) -> np.ndarray:
    x = np.arange(n, dtype=np.float64) + 0.5
    if blend == "gaussian":
        sigma = max(sigma_fraction * n, 1e-3)
        w = np.exp(-0.5 * ((x - n / 2) / sigma) ** 2)
    else:
        w = 1.0 - np.abs(2.0 * x / n - 1.0)
    return np.maximum(w / w.max(), _MIN_WEIGHT).astype(np.float32)


def _pair(size, what: str) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int | np.integer) else tuple(size)
    if len(pair) != 2 or any(isinstance(v, bool) or int(v) != v or v < 1 for v in pair):
        raise ValueError(f"{what} must be a positive int or (height, width), got {size!r}.")
    return int(pair[0]), int(pair[1])


def gaussian_window(size, sigma_fraction: float = 1 / 8) -> np.ndarray:
    """Separable Gaussian blending window, 1 at the centre, ``sigma = sigma_fraction * size``.

    Args:
        size: Tile size, int or ``(height, width)``.
        sigma_fraction: Standard deviation as a fraction of the tile size.

    Returns:
        ``float32`` ``(height, width)`` weights in ``(0, 1]`` (floored at 1e-6).

    Example:
        >>> gaussian_window(8).shape
        (8, 8)
    """
    h, w = _pair(size, "size")
    return np.outer(
        _window_1d(h, "gaussian", sigma_fraction), _window_1d(w, "gaussian", sigma_fraction)
    )


def linear_window(size) -> np.ndarray:
    """Separable tent window: ``(1 - |2 (y + 0.5) / h - 1|) (1 - |2 (x + 0.5) / w - 1|)``.

    Example:
        >>> [round(float(v), 2) for v in linear_window(4)[0]]  # 1/3 x the 1-D tent
        [0.11, 0.33, 0.33, 0.11]
    """
    h, w = _pair(size, "size")
    return np.outer(_window_1d(h, "linear"), _window_1d(w, "linear"))


# ----------------------------------------------------------------------------- TTA
@dataclass(frozen=True)
class TTATransform:
    """One element of the dihedral group: optional left-right flip, then ``k`` 90 deg turns."""

    name: str
    flip: bool
    rotations: int

    def apply(self, x: np.ndarray, axes=(-3, -2)) -> np.ndarray:
        """Transform the spatial ``axes`` (default: those of ``(..., H, W, C)``)."""
        x = np.flip(x, axes[1]) if self.flip else x
        return np.rot90(x, self.rotations, axes=axes)

    def invert(self, x: np.ndarray, axes=(-3, -2)) -> np.ndarray:
        """Undo :meth:`apply`."""
        x = np.rot90(x, -self.rotations, axes=axes)
        return np.flip(x, axes[1]) if self.flip else x


_DIHEDRAL = tuple(
    TTATransform(*t)
    for t in [("identity", False, 0), ("flip_lr", True, 0), ("flip_ud", True, 2),
              ("rot180", False, 2), ("rot90", False, 1), ("rot270", False, 3),
              ("transpose", True, 1), ("anti_transpose", True, 3)]
)  # fmt: skip


def tta_transforms(tta=True) -> list[TTATransform]:
    """The transforms ``tta`` selects: ``False`` = identity, ``True`` = all 8, ``n`` = first n.

    The order is identity, left-right flip, up-down flip, 180 deg (the size-preserving flips
    first, so ``tta=4`` needs no transposition), then 90, 270 deg, transpose, anti-transpose.

    Example:
        >>> [t.name for t in tta_transforms(2)]
        ['identity', 'flip_lr']
    """
    if isinstance(tta, bool | np.bool_):
        return list(_DIHEDRAL if tta else _DIHEDRAL[:1])
    if not isinstance(tta, int | np.integer) or not 1 <= tta <= 8:
        raise ValueError(f"tta must be True, False or a number of transforms 1..8, got {tta!r}.")
    return list(_DIHEDRAL[:tta])


# ----------------------------------------------------------------------------- model geometry
@dataclass(frozen=True)
class _Geometry:
    channels: int | None
    multiple: int  # pooling grid: tiles start on multiples of it
    margin: int  # (input - output) / 2 per side, 0 for padding="same"
    offset: int  # valid input sizes are offset + k * multiple, >= min_input
    min_input: int
    fixed: tuple[int, int] | None  # the model's fixed input (height, width), if any


_GEOMETRY_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _pool_layers(layer):
    for sub in getattr(layer, "layers", []):
        if isinstance(sub, keras.layers.MaxPooling2D | keras.layers.AveragePooling2D):
            yield layer, sub
        yield from _pool_layers(sub)


def _pool_probes(model) -> list:
    """Per (sub)model holding pooling layers, a model mapping its input to the pools' inputs."""
    groups: dict = {}
    for parent, pool in _pool_layers(model):
        groups.setdefault(parent, []).append(pool)
    probes = []
    for parent, pools in groups.items():
        try:
            probes.append(keras.Model(parent.inputs, [p.input for p in pools]))
        except Exception:  # noqa: BLE001 - e.g. a shared layer: skip the check for it
            pass
    return probes


def _size_ok(model, probes, size: int, margin: int) -> bool:
    """Symbolic check that ``size`` x ``size`` runs: right output size, even pooling inputs."""
    try:
        out = model.compute_output_shape((1, size, size, model.input_shape[-1]))
        if out[1] != size - 2 * margin or out[1] < 1:
            return False
        for probe in probes:
            shapes = probe.compute_output_shape((1, size, size, probe.input_shape[-1]))
            shapes = [shapes] if isinstance(shapes[0], int | None) else shapes
            if any(s[1] % 2 or s[2] % 2 for s in shapes):
                return False
    except Exception:  # noqa: BLE001 - any failure means "this size does not run"
        return False
    return True


def _geometry(model, multiple=None) -> _Geometry:
    """Channels, pooling grid, margin and valid input sizes of ``model`` (cached per model)."""
    if multiple is not None and (not isinstance(multiple, int) or multiple < 1):
        raise ValueError(f"multiple must be None (infer it) or an int >= 1, got {multiple!r}.")
    try:
        cached = _GEOMETRY_CACHE.setdefault(model, {})
    except TypeError:
        cached = {}
    if multiple in cached:
        return cached[multiple]
    shape = model.input_shape
    if isinstance(shape, list):
        raise ValueError("predict needs a model with one image input.")
    channels, (h, w) = shape[-1], shape[1:3]
    strides = [int(p.strides[0]) for _, p in _pool_layers(model)]
    m = multiple or math.prod(strides)
    if h is not None and w is not None:
        oh, ow = model.output_shape[1:3]
        if h - oh != w - ow or (h - oh) % 2 or oh > h:
            raise ValueError(f"model output {(oh, ow)} is not its input {(h, w)} minus a margin.")
        geom = _Geometry(channels, m, (h - oh) // 2, h % m, h, (h, w))
    else:
        geom = _Geometry(channels, m, 0, 0, m, None)  # fallback: output size = input size
        probes = _pool_probes(model)
        for s in (m * 32, m * 64, m * 128, m * 256):
            try:
                out = model.compute_output_shape((1, s, s, channels))[1]
            except Exception:  # noqa: BLE001 - too small for a valid model: try larger
                continue
            if out > s or (s - out) % 2:
                raise ValueError(
                    f"predict needs an output the size of the input or smaller "
                    f"by an even margin; this model maps {s} to {out}."
                )
            margin = (s - out) // 2
            low = next((s + r for r in range(m) if _size_ok(model, probes, s + r, margin)), None)
            if low is not None:
                while low - m > 2 * margin and _size_ok(model, probes, low - m, margin):
                    low -= m
                geom = _Geometry(channels, m, margin, low % m, low, None)
            break
    cached[multiple] = geom
    return geom


def _input_size(geom: _Geometry, out_needed: int) -> int:
    """Smallest size the model takes whose output covers ``out_needed`` pixels."""
    need = max(out_needed + 2 * geom.margin, geom.min_input)
    return need + (geom.offset - need) % geom.multiple


# ----------------------------------------------------------------------------- helpers
def _read(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``image[..., rows, cols, :]`` as float32 (8/16-bit scaled to [0, 1]); tile-sized only."""
    tile = image[..., rows[:, None], cols[None, :], :]  # (..., rows, cols, C)
    if tile.dtype == np.uint8:
        return tile.astype(np.float32) / np.float32(255)
    if tile.dtype == np.uint16:
        return tile.astype(np.float32) / np.float32(65535)
    return tile.astype(np.float32, copy=False)


def _run(model, run: Runner, x: np.ndarray, from_logits: bool) -> np.ndarray:
    y = run(model, x)
    y = y if y.flags.writeable else y.copy()  # accumulated in place
    if from_logits:
        if y.shape[-1] == 1:
            return 0.5 * (1.0 + np.tanh(0.5 * y))
        y = np.exp(y - y.max(axis=-1, keepdims=True))
        y /= y.sum(axis=-1, keepdims=True)
    return y


def _prepare(image, geom: _Geometry) -> np.ndarray:
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


def _validate(geom, tile_size, overlap, blend, tta, batch_size, threshold, precision="auto"):
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision must be one of {PRECISIONS}, got {precision!r}; 'auto' picks "
            "bfloat16 on CPUs with AVX-512 BF16, else float32."
        )
    if not isinstance(overlap, float | int) or not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap!r}; 0.25 is a good default.")
    if blend not in BLEND_MODES:
        raise ValueError(f"blend must be one of {BLEND_MODES}, got {blend!r}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}.")
    transforms = tta_transforms(tta)
    if tile_size is None:
        return None, transforms
    tile = _pair(tile_size, "tile_size")
    m = geom.multiple
    if geom.fixed is not None:
        want = tuple(f - 2 * geom.margin for f in geom.fixed)
        if tile != want:
            raise ValueError(
                f"this model takes fixed inputs {geom.fixed}: use tile_size={want} "
                "or tile_size=None."
            )
    else:
        for t in tile:
            if t % m:
                lo, hi = max(m, t // m * m), (t // m + 1) * m
                raise ValueError(
                    f"tile_size {t} must be a multiple of {m} (2**depth, the model's pooling "
                    f"grid): use {lo} or {hi}."
                )
    return tile, transforms


def _labels(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    h, w, c = probabilities.shape
    labels = np.empty((h, w), np.int32)
    step = max(1, _CHUNK // max(w * c, 1))
    for r in range(0, h, step):
        p = probabilities[r : r + step]
        labels[r : r + step] = p[..., 0] >= threshold if c == 1 else np.argmax(p, axis=-1)
    return labels


# ----------------------------------------------------------------------------- prediction
def _predict_whole(model, run, geom, images, transforms, batch_size, from_logits) -> list:
    """Equal-shaped whole images, mirror-padded, ``batch_size`` per call; ``t`` before padding."""
    results = []
    for i in range(0, len(images), batch_size):
        group, total = np.stack(images[i : i + batch_size]), None
        for t in transforms:
            x = t.apply(group)
            h, w = x.shape[1:3]
            rows = reflect_indices(np.arange(_input_size(geom, h)) - geom.margin, h)
            cols = reflect_indices(np.arange(_input_size(geom, w)) - geom.margin, w)
            y = t.invert(_run(model, run, _read(x, rows, cols), from_logits)[:, :h, :w])
            total = y.copy() if total is None else total + y
        total /= np.float32(len(transforms))
        results.extend(total)
    return results


def _axis_plan(n: int, tile: int, geom: _Geometry, overlap: float, axis: int):
    """One axis of the tile grid: output origins (negative = mirrored border), stride, input."""
    m = geom.multiple
    if geom.margin:  # valid tiles fit exactly: stride a multiple of m keeps the pooling grid
        if geom.fixed is None:
            return list(range(0, n, tile)), tile, _input_size(geom, tile)
        stride = max(m, tile // m * m)
        return list(range(0, n, stride)), stride, geom.fixed[axis]
    ctx = math.ceil(tile * overlap / 2 / m) * m  # mirrored border: tile edges fall outside
    span = math.ceil((n + 2 * ctx) / m) * m
    if span <= tile:  # one tile, no larger than needed (a fixed-size model takes its size)
        return ([-ctx], tile, tile) if geom.fixed else ([-ctx], span, span)

    def max_stride(size):
        return max(m, int(size * (1 - overlap)) // m * m)

    count = math.ceil((span - tile) / max_stride(tile)) + 1
    # The same number of tiles, each as small as still covers the span with this overlap:
    # less computed area (e.g. 2048 px in tiles of <= 512 with overlap 1/8: 5 x 480, not
    # 5 x 512), never more memory than asked for.
    while (
        geom.fixed is None
        and tile - m >= m
        and (count - 1) * max_stride(tile - m) >= span - (tile - m)
    ):
        tile -= m
    starts = [-ctx + m * ((k * (span - tile)) // ((count - 1) * m)) for k in range(count)]
    return starts, tile, tile


def _predict_tiled(
    model, run, geom, image, tile, overlap, blend, transforms, batch_size, from_logits, verbose
):
    h, w = image.shape[:2]
    plans = [
        _axis_plan(n, t, geom, overlap, a)
        for a, (n, t) in enumerate(zip((h, w), tile, strict=True))
    ]
    (ys, sy, iy), (xs, sx, ix) = plans
    if geom.fixed and iy != ix and any(t.rotations % 2 for t in transforms):
        raise ValueError("90 degree TTA needs square model inputs; use tta=4 (flips only).")
    hard = geom.margin > 0
    wy, wx = (None, None) if hard else (_window_1d(sy, blend), _window_1d(sx, blend))
    window = None if hard else np.outer(wy, wx)[..., None]
    out = None
    origins = [(y, x) for y in ys for x in xs]
    for i in range(0, len(origins), batch_size):
        chunk = origins[i : i + batch_size]
        batch = np.stack(
            [
                _read(
                    image,
                    reflect_indices(np.arange(iy) + y - geom.margin, h),
                    reflect_indices(np.arange(ix) + x - geom.margin, w),
                )
                for y, x in chunk
            ]
        )
        pred = transforms[0].invert(_run(model, run, transforms[0].apply(batch), from_logits))
        for t in transforms[1:]:
            pred += t.invert(_run(model, run, t.apply(batch), from_logits))
        if len(transforms) > 1:
            pred /= np.float32(len(transforms))
        if out is None:
            out = (np.empty if hard else np.zeros)((h, w, pred.shape[-1]), np.float32)
        for (y, x), p in zip(chunk, pred, strict=True):
            y0, y1, x0, x1 = max(y, 0), min(y + sy, h), max(x, 0), min(x + sx, w)
            part = p[y0 - y : y1 - y, x0 - x : x1 - x]
            if hard:
                out[y0:y1, x0:x1] = part
            else:
                out[y0:y1, x0:x1] += part * window[y0 - y : y1 - y, x0 - x : x1 - x]
        if verbose:
            print(f"predict: {min(i + batch_size, len(origins))}/{len(origins)} tiles", flush=True)
    if not hard:  # weight sum of a grid of separable windows = outer product of 1-D sums
        sums = []
        for n, starts, size, win in ((h, ys, sy, wy), (w, xs, sx, wx)):
            total = np.zeros(n, np.float32)
            for s in starts:
                lo, hi = max(s, 0), min(s + size, n)
                total[lo:hi] += win[lo - s : hi - s]
            sums.append(total)
        step = max(1, _CHUNK // (w * out.shape[-1]))
        for r in range(0, h, step):
            out[r : r + step] /= np.outer(sums[0][r : r + step], sums[1])[..., None]
    return out


def predict_probabilities(
    model,
    image,
    *,
    tile_size=None,
    overlap: float = 0.25,
    blend: str = "gaussian",
    tta=False,
    batch_size: int = 4,
    multiple: int | None = None,
    from_logits: bool = False,
    verbose: bool = False,
    precision: str = "float32",
) -> np.ndarray:
    """Class probabilities of one image, ``float32`` ``(H, W, num_classes)``; see :func:`predict`.

    With ``tile_size`` the returned array is the accumulator itself (no extra full-size copy).
    """
    geom = _geometry(model, multiple)
    tile, transforms = _validate(geom, tile_size, overlap, blend, tta, batch_size, 0.5, precision)
    image = _prepare(image, geom)
    run = runner(model, precision)
    if tile is None and geom.fixed is not None:  # a fixed-size model is always tiled
        tile = tuple(f - 2 * geom.margin for f in geom.fixed)
    if tile is None:
        return _predict_whole(model, run, geom, [image], transforms, 1, from_logits)[0]
    return _predict_tiled(
        model, run, geom, image, tile, overlap, blend, transforms, batch_size, from_logits,
        verbose,
    )  # fmt: skip


def predict(
    model,
    image,
    *,
    tile_size=None,
    overlap: float = 0.25,
    blend: str = "gaussian",
    tta=False,
    batch_size: int = 4,
    threshold: float = 0.5,
    multiple: int | None = None,
    from_logits: bool = False,
    verbose: bool = False,
    precision: str = "float32",
) -> Prediction:
    """Predict one image of any size, whole or in overlapping tiles, with optional TTA.

    Args:
        model: A Keras segmentation model (e.g. :func:`unet_lib.build_unet`) with
            ``padding="same"`` or ``"valid"``: its output is its input's size or smaller.
        image: ``(H, W)`` or ``(H, W, C)``, float32 in ``[0, 1]`` (uint8 / uint16 are
            scaled tile by tile). Any size: it is mirror-padded to what the model takes.
        tile_size: ``None`` predicts the whole image in one pass; an int or ``(h, w)``
            output tile (a multiple of ``2**depth``) predicts in tiles, for large images.
        overlap: Fraction of a tile shared with its neighbour, in ``[0, 1)``; also the
            mirrored border. ``padding="same"`` only: ``"valid"`` tiles fit exactly.
        blend: Window that weights overlapping tiles: ``"gaussian"`` or ``"linear"``.
        tta: ``False``, ``True`` (all 8 flips / 90 degree rotations) or a count 1..8
            (see :func:`tta_transforms`); probabilities are averaged.
        batch_size: Tiles (or images) per model call.
        threshold: One output channel: label 1 where ``p >= threshold``.
        multiple: The model's size multiple; ``None`` infers ``2**depth`` from its pooling.
        from_logits: The model outputs logits: apply sigmoid / softmax.
        verbose: Print the number of tiles done after each batch.
        precision: ``"float32"`` (the default: probabilities as the model computes them),
            ``"bfloat16"`` (the model is copied under a ``mixed_bfloat16`` policy with a
            float32 head) or ``"auto"`` (bfloat16 on a CPU with AVX-512 BF16 / AMX running
            TensorFlow, else float32; see :mod:`unet_lib.inference.engine`). Either way batch
            norm is folded into the convolutions and, on TensorFlow, the model runs compiled.
            On a 2-core AVX-512 BF16 CPU bfloat16 predicts about 2x faster and keeps >= 99.9 %
            of the float32 labels of a trained U-Net (``benchmarks/README.md``).

    Returns:
        A :class:`Prediction`: ``probabilities`` ``(H, W, num_classes)`` float32 and
        ``labels`` ``(H, W)`` int32 (threshold for one class, argmax for several).

    Raises:
        ValueError: An invalid argument or image; the message says what to use.

    Example:
        >>> model = build_unet((None, None, 1), 1, depth=2, base_filters=4)  # doctest: +SKIP
        >>> pred = predict(model, np.random.rand(37, 53), tile_size=32)  # doctest: +SKIP
        >>> pred.labels.shape  # doctest: +SKIP
        (37, 53)
    """
    _validate(
        _geometry(model, multiple), None, overlap, blend, tta, batch_size, threshold, precision
    )
    probabilities = predict_probabilities(
        model, image, tile_size=tile_size, overlap=overlap, blend=blend, tta=tta,
        batch_size=batch_size, multiple=multiple, from_logits=from_logits, verbose=verbose,
        precision=precision,
    )  # fmt: skip
    return Prediction(probabilities, _labels(probabilities, threshold))


def _options(model, kwargs: dict):
    """:func:`predict`'s keyword arguments with defaults, validated; geometry; transforms."""
    bound = inspect.signature(predict).bind(model, None, **kwargs)  # TypeError if unknown
    bound.apply_defaults()
    opt = bound.arguments
    geom = _geometry(model, opt["multiple"])
    names = ("tile_size", "overlap", "blend", "tta", "batch_size", "threshold", "precision")
    return opt, geom, _validate(geom, *(opt[n] for n in names))[1]


def predict_batch(model, images, **kwargs) -> list[Prediction]:
    """:func:`predict` for a list of images (any sizes), with the same keyword arguments.

    Whole images (``tile_size=None``) of equal shape are stacked, ``batch_size`` per call.

    Example:
        >>> preds = predict_batch(model, [image_a, image_b], tta=True)  # doctest: +SKIP
    """
    images = list(images)
    opt, geom, transforms = _options(model, kwargs)
    if opt["tile_size"] is not None or geom.fixed is not None or len(images) < 2:
        return [predict(model, image, **kwargs) for image in images]
    prepared = [_prepare(image, geom) for image in images]
    run = runner(model, opt["precision"])
    results: list = [None] * len(images)
    for shape in dict.fromkeys(image.shape for image in prepared):
        index = [i for i, image in enumerate(prepared) if image.shape == shape]
        probs = _predict_whole(
            model, run, geom, [prepared[i] for i in index], transforms, opt["batch_size"],
            opt["from_logits"],
        )  # fmt: skip
        for i, p in zip(index, probs, strict=True):
            results[i] = Prediction(p, _labels(p, opt["threshold"]))
    return results


# ----------------------------------------------------------------------------- saving
def _palette(count: int) -> np.ndarray:
    colors = list(_COLORS)
    for k in range(len(colors), count):
        r, g, b = colorsys.hsv_to_rgb((k * 0.618034) % 1.0, 0.9, 1.0)
        colors.append((int(r * 255), int(g * 255), int(b * 255)))
    return np.array(colors[:count], np.float32)


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
    """Save a label map as a grey PNG, atomically (temp file in the folder, then rename).

    Args:
        labels: ``(H, W)`` integer label map.
        path: Target file (``.png``; parent folders are created).
        mapping: A ``LabelMapping`` (anything with ``decode``): pixels get the dataset's own
            grey values (the inverse of ``dataset.json``). ``None``: binary maps are saved
            as 0 / 255, others as the class indices.
        binary: Without a mapping, whether the map is binary; ``None`` = labels <= 1.

    Returns:
        The path written.

    Example:
        >>> save_mask(pred.labels, "out/a.png", mapping)  # doctest: +SKIP
    """
    labels = _check_labels(labels)
    if mapping is not None:
        raw = np.asarray(mapping.decode(labels))
    else:
        if labels.size and labels.min() < 0:
            raise ValueError("labels hold negative values; pass the dataset's mapping.")
        top = int(labels.max()) if labels.size else 0
        if binary is None:
            binary = top <= 1
        if binary and top > 1:
            raise ValueError(f"binary=True but labels reach {top}; pass binary=False.")
        raw = (
            (labels * 255).astype(np.uint8)
            if binary
            else labels.astype(np.uint8 if top <= 255 else np.uint16)
        )
    return _write(path, raw)


def overlay_image(image, labels, alpha: float = 0.5, colors=None) -> np.ndarray:
    """Tint ``image`` with a colour per class (class 0, the background, stays untinted).

    Args:
        image: ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)``, float in ``[0, 1]`` or uint8.
        labels: ``(H, W)`` label map.
        alpha: Tint strength in ``[0, 1]``.
        colors: RGB triples for classes 1, 2, ...; default: red, green, blue, yellow, ...

    Returns:
        ``uint8`` RGB ``(H, W, 3)``.
    """
    labels = _check_labels(labels)
    image = np.asarray(image)
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}.")
    scale = 255.0 if image.dtype.kind == "f" else 255.0 / np.iinfo(image.dtype).max
    rgb = image.astype(np.float32) * np.float32(scale)
    rgb = rgb if rgb.ndim == 3 else rgb[..., None]
    if rgb.shape[:2] != labels.shape or rgb.shape[2] not in (1, 3):
        raise ValueError(f"image {image.shape} and labels {labels.shape} do not match.")
    rgb = np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb.copy()
    top = int(labels.max()) if labels.size else 0
    palette = _palette(top) if colors is None else np.asarray(colors, np.float32)
    if len(palette) < top:
        raise ValueError(f"{len(palette)} colours for {top} foreground classes; give more.")
    for k in range(1, top + 1):
        where = labels == k
        rgb[where] = (1 - alpha) * rgb[where] + alpha * palette[k - 1]
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def save_overlay(image, labels, path, alpha: float = 0.5, colors=None) -> Path:
    """Save :func:`overlay_image` as an RGB PNG, atomically; returns the path."""
    return _write(
        path, cv2.cvtColor(overlay_image(image, labels, alpha, colors), cv2.COLOR_RGB2BGR)
    )


def predict_folder(
    model, source, out_dir, *, mapping=None, channels=None, overlay=False, alpha=0.5, **kwargs
) -> list[Path]:
    """Predict every image in a folder (or one file) and save masks (and overlays).

    Masks go to ``out_dir/<stem>.png`` in the dataset's grey values (see :func:`save_mask`),
    overlays to ``out_dir/<stem>_overlay.png``.

    Args:
        model: The segmentation model.
        source: A folder (its PNG/JPEG/TIFF/BMP files, sorted) or one image file.
        out_dir: Output folder (created); must differ from the input folder.
        mapping: ``LabelMapping``, ``dataset.json`` dict / path / JSON string, or ``None``.
        channels: 1 or 3 to convert images; ``None`` = the model's input channels.
        overlay: Also save colour overlays.
        alpha: Overlay tint strength.
        **kwargs: Passed to :func:`predict` (``tile_size``, ``tta``, ...).

    Returns:
        The written paths, per image its mask then (with ``overlay``) its overlay.

    Example:
        >>> predict_folder(model, "data/test/images", "runs/pred", tile_size=256)  # doctest: +SKIP
    """
    from unet_lib.data.folder import IMAGE_EXTENSIONS, load_label_mapping, read_image

    _options(model, kwargs)  # fail before reading anything
    source, out_dir = Path(source), Path(out_dir)
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
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
    if mapping is not None and not hasattr(mapping, "decode"):
        mapping = load_label_mapping(source, mapping)
    num_classes = model.output_shape[-1]
    if mapping is not None and mapping.model_num_classes != num_classes:
        raise ValueError(
            f"the mapping has {mapping.num_classes} classes but the model "
            f"{num_classes} outputs; use the dataset.json it was trained with."
        )
    channels = channels or (model.input_shape[-1] if model.input_shape[-1] in (1, 3) else None)
    written = []
    for path in files:
        image = read_image(path, channels)
        pred = predict(model, image, **kwargs)
        written.append(
            save_mask(pred.labels, out_dir / f"{path.stem}.png", mapping, binary=num_classes == 1)
        )
        if overlay:
            written.append(
                save_overlay(image, pred.labels, out_dir / f"{path.stem}_overlay.png", alpha)
            )
    return written
