"""Passes over an image (whole or tiled) and test-time augmentation (the dihedral group). Tiles
are read through reflected indices (no padded copy) and accumulate in place, weighted by a
separable window ``wy(y) wx(x)``: the grid's weight sum is an outer product of 1-D sums.
"""

import math
from dataclasses import dataclass

import numpy as np

from unet_lib.data import as_pair, reflect_indices
from unet_lib.inference.geometry import Geometry

BLEND_MODES = ("gaussian", "linear")
#: Elements per row chunk when normalising / labelling in place.
CHUNK = 1 << 20
_MIN_WEIGHT = 1e-6  # window floor: every pixel a tile covers gets a positive weight


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


_NAMES = "identity flip_lr flip_ud rot180 rot90 rot270 transpose anti_transpose".split()
_DIHEDRAL = tuple(  # per name: a left-right flip or not ("1" / "0"), then k 90 degree turns
    TTATransform(name, flip == "1", int(k))
    for name, flip, k in zip(_NAMES, "01100011", "00221313", strict=True)
)


def tta_transforms(tta=True) -> list[TTATransform]:
    """The transforms ``tta`` selects: ``False`` = identity, ``True`` = all 8, ``n`` = first n
    (the size-preserving flips first: ``tta=4`` needs no transposition).
    """
    if isinstance(tta, bool | np.bool_):
        return list(_DIHEDRAL if tta else _DIHEDRAL[:1])
    if not isinstance(tta, int | np.integer) or not 1 <= tta <= 8:
        raise ValueError(f"tta must be True, False or a number of transforms 1..8, got {tta!r}.")
    return list(_DIHEDRAL[:tta])


def _averaged(forward, batch: np.ndarray, transforms) -> np.ndarray:
    """Mean over ``transforms`` of ``t^-1 forward(t batch)``; ``forward``'s output is reused."""
    pred = transforms[0].invert(forward(transforms[0].apply(batch)))
    for t in transforms[1:]:
        pred += t.invert(forward(t.apply(batch)))
    if len(transforms) > 1:
        pred /= np.float32(len(transforms))
    return pred


def _window_1d(n: int, blend: str, sigma_fraction: float = 1 / 8) -> np.ndarray:
    x = np.arange(n, dtype=np.float64) + 0.5
    if blend == "gaussian":
        w = np.exp(-0.5 * ((x - n / 2) / max(sigma_fraction * n, 1e-3)) ** 2)
    else:
        w = 1.0 - np.abs(2.0 * x / n - 1.0)
    return np.maximum(w / w.max(), _MIN_WEIGHT).astype(np.float32)


def gaussian_window(size, sigma_fraction: float = 1 / 8) -> np.ndarray:
    """Separable Gaussian tile weights (1 at the centre, >= 1e-6), ``sigma = sigma_fraction *
    size``; ``size`` is an int or ``(height, width)``."""
    return np.outer(*(_window_1d(n, "gaussian", sigma_fraction) for n in as_pair(size, "size")))


def linear_window(size) -> np.ndarray:
    """Separable tent window ``(1 - |2 (y + 0.5) / h - 1|) (1 - |2 (x + 0.5) / w - 1|)``, max 1."""
    return np.outer(*(_window_1d(n, "linear") for n in as_pair(size, "size")))


def _read(image: np.ndarray, y: int, x: int, rows: int, cols: int, margin: int) -> np.ndarray:
    """``rows x cols`` float32 pixels of ``(..., H, W, C)`` from ``(y, x) - margin``, mirrored
    at the borders; 8/16-bit images scaled to [0, 1]."""
    h, w = image.shape[-3:-1]
    r = reflect_indices(np.arange(rows) + y - margin, h)
    c = reflect_indices(np.arange(cols) + x - margin, w)
    tile = image[..., r[:, None], c[None, :], :]
    if tile.dtype in (np.uint8, np.uint16):
        return tile.astype(np.float32) / np.float32(np.iinfo(tile.dtype).max)
    return tile.astype(np.float32, copy=False)


def predict_whole(forward, geom: Geometry, images, transforms, batch_size: int) -> list:
    """Whole images, those of one shape stacked ``batch_size`` per call; TTA before mirroring."""

    def padded_forward(x):
        h, w = x.shape[1:3]
        x = _read(x, 0, 0, geom.input_size(h), geom.input_size(w), geom.margin)
        return forward(x)[:, :h, :w]

    results: list = [None] * len(images)
    for shape in dict.fromkeys(image.shape for image in images):
        index = [i for i, image in enumerate(images) if image.shape == shape]
        for k in range(0, len(index), batch_size):
            chunk = index[k : k + batch_size]
            probs = _averaged(padded_forward, np.stack([images[i] for i in chunk]), transforms)
            for i, p in zip(chunk, probs, strict=True):
                results[i] = np.ascontiguousarray(p)
    return results


def _axis_plan(n: int, tile: int, geom: Geometry, overlap: float, axis: int):
    """One axis of the tile grid: output origins (negative = mirrored border), stride, input."""
    m = geom.multiple
    if geom.margin:  # valid tiles fit exactly: stride a multiple of m keeps the pooling grid
        if geom.fixed is None:
            return list(range(0, n, tile)), tile, geom.input_size(tile)
        stride = max(m, tile // m * m)
        return list(range(0, n, stride)), stride, geom.fixed[axis]
    ctx = math.ceil(tile * overlap / 2 / m) * m  # mirrored border: tile edges fall outside
    span = math.ceil((n + 2 * ctx) / m) * m
    if span <= tile:  # one tile, no larger than needed (a fixed-size model takes its size)
        return ([-ctx], tile, tile) if geom.fixed else ([-ctx], span, span)

    def max_stride(size):
        return max(m, int(size * (1 - overlap)) // m * m)

    count = math.ceil((span - tile) / max_stride(tile)) + 1
    # The same number of tiles, each as small as still covers the span with this overlap.
    while (
        geom.fixed is None
        and tile - m >= m
        and (count - 1) * max_stride(tile - m) >= span - (tile - m)
    ):
        tile -= m
    starts = [-ctx + m * ((k * (span - tile)) // ((count - 1) * m)) for k in range(count)]
    return starts, tile, tile


def predict_tiled(
    forward, geom: Geometry, image, tile, transforms, *, overlap, blend, batch_size, verbose
) -> np.ndarray:
    """Probabilities of ``image`` from a grid of tiles; the arguments are :func:`predict`'s."""
    h, w = image.shape[:2]
    pairs = enumerate(zip((h, w), tile, strict=True))
    (ys, sy, iy), (xs, sx, ix) = [_axis_plan(n, t, geom, overlap, a) for a, (n, t) in pairs]
    if geom.fixed and iy != ix and any(t.rotations % 2 for t in transforms):
        raise ValueError("90 degree TTA needs square model inputs; use tta=4 (flips only).")
    hard = geom.margin > 0
    wy, wx = (None, None) if hard else (_window_1d(sy, blend), _window_1d(sx, blend))
    window = None if hard else np.outer(wy, wx)[..., None]
    out = None
    origins = [(y, x) for y in ys for x in xs]
    for i in range(0, len(origins), batch_size):
        chunk = origins[i : i + batch_size]
        batch = np.stack([_read(image, y, x, iy, ix, geom.margin) for y, x in chunk])
        pred = _averaged(forward, batch, transforms)
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
            print(f"predict: {i + len(chunk)}/{len(origins)} tiles", flush=True)
    if not hard:
        _normalise(out, ((ys, sy, wy), (xs, sx, wx)))
    return out


def _normalise(out: np.ndarray, plans) -> None:
    """Divide by the weight sum of a grid of separable windows: an outer product of 1-D sums."""
    sums = []
    for n, (starts, size, win) in zip(out.shape[:2], plans, strict=True):
        total = np.zeros(n, np.float32)
        for s in starts:
            lo, hi = max(s, 0), min(s + size, n)
            total[lo:hi] += win[lo - s : hi - s]
        sums.append(total)
    step = max(1, CHUNK // (out.shape[1] * out.shape[-1]))
    for r in range(0, out.shape[0], step):
        out[r : r + step] /= np.outer(sums[0][r : r + step], sums[1])[..., None]
