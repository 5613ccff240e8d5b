"""Joint image/mask augmentation written with TensorFlow ops.

Every transform is applied identically to the image and its label map, with stateless random
ops (``tf.random.stateless_*``) so the result is a pure function of the seed: the same seed
gives the same output on every run and device, a different seed a different one. The code
works on one pair (``(H, W, C)`` image, ``(H, W)`` or ``(H, W, 1)`` mask) or on a batch
(``(B, H, W, C)`` / ``(B, H, W, 1)``, each sample with its own random parameters), uses only
XLA-friendly ops (gathers, matmuls, ``where``), and so runs inside ``tf.data`` maps or a
compiled training step (see :func:`device_augment_fn`).

Order of the transforms:

1. flips and 90-degree rotations (exact index permutations; the eight symmetries of the
   square. Non-square images only get the shape-keeping ones: flips and 180 degrees);
2. one resampling for the affine transform (rotation about the centre and scale) and the
   elastic deformation of the U-Net paper (Gaussian displacements on a coarse
   ``elastic_grid x elastic_grid`` grid, bicubically upsampled to a dense field), composed
   into one coordinate map so the image is interpolated once: bilinear for the image,
   nearest neighbour for the mask (label values, ``-1`` included, are never mixed).
   Outside the image the image is reflected (``reflect-101``: ``-1 -> 1``); the mask is
   reflected too (``mask_fill="reflect"``, labels match the mirrored content) or set to
   ``IGNORE_LABEL`` (``mask_fill="ignore"``, mirrored pixels count nowhere);
3. intensity on the image only: gamma, contrast, brightness, Gaussian noise, then clip to
   ``[0, 1]``.

Patch sampling (:func:`random_crop_pair`) is separate, the pipeline calls it before the rest.

Example:
    >>> cfg = AugmentConfig(elastic=True)
    >>> image_aug, mask_aug = augment_pair(image, mask, cfg, seed=[0, 7])
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from unet_lib import IGNORE_LABEL

_MASK_FILLS = ("reflect", "ignore")


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run and how strong they are.

    Args:
        flip: random horizontal and vertical flips (each with probability 1/2).
        rotate90: random rotation by a multiple of 90 degrees (0/180 only for non-square
            images, so the shape is kept).
        affine: random rotation (uniform in ``+-rotation_degrees``) and scale (uniform in
            ``scale_range``, > 1 zooms in) about the image centre.
        rotation_degrees: largest affine rotation angle.
        scale_range: ``(low, high)`` affine scale factors.
        elastic: the U-Net paper's elastic deformation (off by default: it did worse than
            flips and rotations alone in short runs on ISBI 2012).
        elastic_grid: coarse grid size (``3`` means a 3 x 3 grid of displacement vectors).
        elastic_sigma: standard deviation of the displacements, in pixels.
        mask_fill: ``"reflect"`` or ``"ignore"``: what the mask holds where the affine /
            elastic transform samples outside the image (the image is always reflected).
        intensity: random gamma, contrast and brightness on the image.
        brightness: largest additive brightness change (uniform in ``+-brightness``).
        contrast: largest relative contrast change (factor uniform in ``1 +- contrast``,
            about the image mean).
        gamma: gamma is log-uniform in ``[1 / (1 + gamma), 1 + gamma]``.
        noise: additive Gaussian noise on the image.
        noise_std: its standard deviation (image units, ``[0, 1]`` range).

    Example:
        >>> AugmentConfig(elastic=True, rotation_degrees=10.0)
        >>> AugmentConfig.none()  # the identity
    """

    flip: bool = True
    rotate90: bool = True
    affine: bool = True
    rotation_degrees: float = 15.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    elastic: bool = False
    elastic_grid: int = 3
    elastic_sigma: float = 10.0
    mask_fill: str = "reflect"
    intensity: bool = True
    brightness: float = 0.1
    contrast: float = 0.1
    gamma: float = 0.1
    noise: bool = False
    noise_std: float = 0.02

    def __post_init__(self):
        object.__setattr__(self, "scale_range", tuple(float(s) for s in self.scale_range))
        lo, hi = self.scale_range if len(self.scale_range) == 2 else (0.0, -1.0)
        if not 0 < lo <= hi:
            raise ValueError(
                f"scale_range must be (low, high) with 0 < low <= high, got "
                f"{self.scale_range}; e.g. (0.9, 1.1)"
            )
        if self.elastic_grid < 2:
            raise ValueError(
                f"elastic_grid must be >= 2 (a 3 x 3 grid is usual), got {self.elastic_grid}"
            )
        for name in ("rotation_degrees", "elastic_sigma", "brightness", "gamma", "noise_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.contrast < 1:
            raise ValueError(f"contrast must be in [0, 1), got {self.contrast}")
        if self.mask_fill not in _MASK_FILLS:
            raise ValueError(f"mask_fill must be one of {_MASK_FILLS}, got {self.mask_fill!r}")

    @classmethod
    def none(cls) -> AugmentConfig:
        """The identity: every switch off."""
        return cls(
            flip=False, rotate90=False, affine=False, elastic=False, intensity=False, noise=False
        )

    @classmethod
    def from_dict(cls, values: dict) -> AugmentConfig:
        """Builds a config from a dict (e.g. read from JSON); unknown keys raise."""
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown AugmentConfig fields {sorted(unknown)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def is_identity(self) -> bool:
        return not (
            self.flip
            or self.rotate90
            or self.affine
            or self.elastic
            or self.intensity
            or self.noise
        )


def as_seed(seed) -> tf.Tensor:
    """A stateless seed: a Python int ``s`` becomes ``[s, 0]``; shape-``[2]`` values pass."""
    if isinstance(seed, int | np.integer):
        return tf.constant([int(seed), 0], tf.int64)
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    seed.shape.assert_is_compatible_with([2])
    return seed


def _reflect_coord(c, size):
    """Reflect-101 of (float or int) coordinates into ``[0, size - 1]`` (``-1 -> 1``)."""
    size = tf.cast(size, c.dtype)
    period = tf.maximum(2 * (size - 1), tf.ones_like(size))
    c = tf.math.floormod(c, period)
    c = tf.where(c > size - 1, period - c, c)
    return tf.clip_by_value(c, tf.zeros_like(size), size - 1)


def _to_batch(image, mask, weights):
    """Adds a batch axis to a single pair; masks become ``(..., 1)``."""
    image = tf.convert_to_tensor(image)
    if image.shape.rank not in (3, 4):
        raise ValueError(f"image must be (H, W, C) or (B, H, W, C), got shape {image.shape}")
    single = image.shape.rank == 3
    mask = tf.convert_to_tensor(mask)
    mask_rank = mask.shape.rank

    def fix(x):
        if x is None:
            return None
        x = tf.convert_to_tensor(x)
        if x.shape.rank == image.shape.rank - 1:
            x = x[..., None]
        return x[None] if single else x

    return (image[None] if single else image), fix(mask), fix(weights), single, mask_rank


def _from_batch(x, single, rank):
    if single:
        x = x[0]
    return x[..., 0] if x.shape.rank == rank + 1 else x


def _spatial(x):
    shape = tf.shape(x)
    return shape[1], shape[2]


def _dihedral(image, mask, weights, config, seed):
    """Random flips and 90-degree rotations per sample, as index permutations.

    A rotation by ``k * 90`` degrees is ``transpose`` (k odd) followed by flips, so every
    combination is one optional transpose and two optional flips. Non-square images only
    get ``k in {0, 2}`` so their shape is kept.
    """
    batch = tf.shape(image)[0]
    bits = tf.random.stateless_uniform([batch, 3], seed, minval=0, maxval=4, dtype=tf.int32)
    lr = ud = tf.zeros([batch], tf.bool)
    if config.flip:
        lr, ud = bits[:, 0] % 2 == 1, bits[:, 1] % 2 == 1
    tensors = [t for t in (image, mask, weights) if t is not None]

    def select(cond, fn, xs):
        return [tf.where(cond[:, None, None, None], fn(x), x) for x in xs]

    if config.rotate90:
        height, width = image.shape[1], image.shape[2]
        if height is not None and width is not None:
            square = tf.constant(height == width)
        else:
            h, w = _spatial(image)
            square = h == w
        k = tf.where(square, bits[:, 2], bits[:, 2] // 2 * 2)
        transpose = k % 2 == 1
        lr, ud = lr ^ (k >= 2), ud ^ ((k == 1) | (k == 2))

        def transposed():
            return select(transpose, lambda x: tf.transpose(x, [0, 2, 1, 3]), tensors)

        if height is None or width is None:
            tensors = tf.cond(square, transposed, lambda: tensors)
        elif height == width:
            tensors = transposed()
    tensors = select(lr, lambda x: tf.reverse(x, [2]), tensors)
    tensors = select(ud, lambda x: tf.reverse(x, [1]), tensors)
    out = iter(tensors)
    return [next(out) if t is not None else None for t in (image, mask, weights)]


def _keys_cubic(d):
    """Keys' bicubic convolution kernel (a = -0.5)."""
    d = tf.abs(d)
    near = 1.5 * d**3 - 2.5 * d**2 + 1.0
    far = -0.5 * d**3 + 2.5 * d**2 - 4.0 * d + 2.0
    return tf.where(d <= 1.0, near, tf.where(d < 2.0, far, tf.zeros_like(d)))


def _cubic_matrix(size, grid):
    """``(size, grid)`` weights that upsample ``grid`` nodes (at the image corners and
    evenly between) to ``size`` pixels with bicubic interpolation (edge nodes repeated)."""
    t = (
        tf.cast(tf.range(size), tf.float32)
        * (grid - 1)
        / tf.cast(tf.maximum(size - 1, 1), tf.float32)
    )
    columns = [tf.zeros_like(t) for _ in range(grid)]
    for k in range(-2, grid + 2):
        columns[min(max(k, 0), grid - 1)] += _keys_cubic(t - k)
    return tf.stack(columns, axis=1)


def _warp(image, mask, weights, config, seed):
    """Affine + elastic in one resampling: bilinear image, nearest mask and weights."""
    batch = tf.shape(image)[0]
    h, w = _spatial(image)
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    yy, xx = tf.meshgrid(tf.range(hf), tf.range(wf), indexing="ij")
    sy, sx = yy[None], xx[None]  # (1, H, W) source coordinates of each output pixel
    s_affine, s_elastic = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if config.affine:
        angle_scale = tf.random.stateless_uniform([2, batch], s_affine)
        angle = (2 * angle_scale[0] - 1) * math.radians(config.rotation_degrees)
        lo, hi = config.scale_range
        scale = lo + (hi - lo) * angle_scale[1]
        cos, sin = [(f(angle) / scale)[:, None, None] for f in (tf.cos, tf.sin)]
        dy, dx = yy - (hf - 1) / 2, xx - (wf - 1) / 2
        sy = cos * dy + sin * dx + (hf - 1) / 2
        sx = -sin * dy + cos * dx + (wf - 1) / 2
    if config.elastic:
        g = config.elastic_grid
        coarse = tf.random.stateless_normal([batch, g, g, 2], s_elastic) * config.elastic_sigma
        field = tf.einsum("hi,bijc,wj->bhwc", _cubic_matrix(h, g), coarse, _cubic_matrix(w, g))
        sy, sx = sy + field[..., 0], sx + field[..., 1]
    sy, sx = sy + tf.zeros([batch, 1, 1]), sx + tf.zeros([batch, 1, 1])
    ry, rx = _reflect_coord(sy, h), _reflect_coord(sx, w)

    def gather(x, iy, ix):
        flat = tf.reshape(x, [batch, -1, tf.shape(x)[-1]])
        idx = tf.reshape(iy * w + ix, [batch, -1])
        return tf.reshape(tf.gather(flat, idx, batch_dims=1), tf.shape(x))

    y0f, x0f = tf.floor(ry), tf.floor(rx)
    fy, fx = (ry - y0f)[..., None], (rx - x0f)[..., None]
    y0, x0 = tf.cast(y0f, tf.int32), tf.cast(x0f, tf.int32)
    y1, x1 = tf.minimum(y0 + 1, h - 1), tf.minimum(x0 + 1, w - 1)
    top = gather(image, y0, x0) * (1 - fx) + gather(image, y0, x1) * fx
    bottom = gather(image, y1, x0) * (1 - fx) + gather(image, y1, x1) * fx
    image_out = top * (1 - fy) + bottom * fy
    ny, nx = tf.cast(tf.round(ry), tf.int32), tf.cast(tf.round(rx), tf.int32)
    outside = None
    if config.mask_fill == "ignore":
        oy, ox = tf.round(sy), tf.round(sx)
        outside = ((oy < 0) | (oy > hf - 1) | (ox < 0) | (ox > wf - 1))[..., None]
    outs = [image_out]
    for x, fill in ((mask, IGNORE_LABEL), (weights, 0)):
        if x is not None:
            x = gather(x, ny, nx)
            outs.append(x if outside is None else tf.where(outside, tf.cast(fill, x.dtype), x))
        else:
            outs.append(None)
    return outs


def _intensity(image, config, seed):
    batch = tf.shape(image)[0]
    s_int, s_noise = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    x = tf.clip_by_value(image, 0.0, 1.0)
    if config.intensity:
        u = 2 * tf.random.stateless_uniform([3, batch, 1, 1, 1], s_int) - 1  # in [-1, 1)
        x = x ** tf.exp(u[0] * math.log1p(config.gamma))
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        x = (x - mean) * (1 + u[1] * config.contrast) + mean + u[2] * config.brightness
    if config.noise:
        x = x + tf.random.stateless_normal(tf.shape(x), s_noise) * config.noise_std
    return tf.clip_by_value(x, 0.0, 1.0)


def _augment_batch(image, mask, weights, config, seed):
    """The batched core: ``(B, H, W, C)`` image, ``(B, H, W, 1)`` mask and weights."""
    s_dihedral, s_warp, s_intensity = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    shapes = [None if t is None else t.shape for t in (image, mask, weights)]
    image = tf.cast(image, tf.float32)
    if config.flip or config.rotate90:
        image, mask, weights = _dihedral(image, mask, weights, config, s_dihedral)
    if config.affine or config.elastic:
        image, mask, weights = _warp(image, mask, weights, config, s_warp)
    if config.intensity or config.noise:
        image = _intensity(image, config, s_intensity)
    for t, shape in zip((image, mask, weights), shapes, strict=True):
        if t is not None:
            t.set_shape(shape)  # every transform keeps the shape
    return image, mask, weights


def augment_pair(image, mask, config: AugmentConfig | None = None, seed=0, *, weights=None):
    """Augments an image and its label map identically.

    Args:
        image: ``(H, W, C)`` or batched ``(B, H, W, C)`` float image in ``[0, 1]``.
        mask: matching ``(H, W)`` / ``(H, W, 1)`` or ``(B, H, W, 1)`` integer label map;
            ``IGNORE_LABEL`` pixels stay ignored, values are never interpolated.
        config: an :class:`AugmentConfig` (``None`` = the defaults).
        seed: an int or a shape-``[2]`` integer tensor; the output is a pure function of it.
        weights: optional per-pixel weight map shaped like ``mask``, moved like the mask
            (nearest neighbour; ``0`` where ``mask_fill="ignore"`` writes ``IGNORE_LABEL``).

    Returns:
        ``(image, mask)`` as float32 / the mask's dtype in the input shapes, or
        ``(image, mask, weights)`` when weights are given.

    Example:
        >>> img, msk = augment_pair(np.zeros((64, 64, 1), "float32"), np.zeros((64, 64), "int32"),
        ...                         AugmentConfig(), seed=3)
    """
    config = AugmentConfig() if config is None else config
    image, mask, w, single, mask_rank = _to_batch(image, mask, weights)
    image, mask, w = _augment_batch(image, mask, w, config, as_seed(seed))
    image, mask = (image[0] if single else image), _from_batch(mask, single, mask_rank)
    if weights is None:
        return image, mask
    return image, mask, _from_batch(w, single, mask_rank)


def random_crop_pair(image, mask, size, seed=0, *, weights=None):
    """Samples a random ``size`` window from a pair (or each sample of a batch).

    Images smaller than the window are centred and reflect-padded; their masks are padded
    with ``IGNORE_LABEL`` (weights with 0), so the padding counts nowhere.

    Args:
        image, mask, weights: as in :func:`augment_pair`.
        size: ``int`` or ``(height, width)`` of the window.
        seed: an int or a shape-``[2]`` seed.

    Returns:
        ``(image, mask)`` (or with weights) of spatial size ``size``.
    """
    image, mask, w, single, mask_rank = _to_batch(image, mask, weights)
    image, mask, w = _crop_batch(image, mask, w, size, as_seed(seed))
    out = (image[0] if single else image), _from_batch(mask, single, mask_rank)
    return out if weights is None else (*out, _from_batch(w, single, mask_rank))


def _crop_batch(image, mask, weights, size, seed, foreground: float = 0.0):
    """The batched core of :func:`random_crop_pair`; ``foreground``: see
    :func:`_foreground_starts`."""
    ph, pw = (size, size) if isinstance(size, int) else tuple(size)
    batch = tf.shape(image)[0]
    h, w = _spatial(image)
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    if foreground > 0:
        fg_start, found = _foreground_starts(mask, ph, pw, seeds[2])
        draw = tf.random.stateless_uniform([batch], seeds[3])
        use_fg = found & (draw < foreground)
    picks = []
    for axis, (size_in, size_out, s) in enumerate(((h, ph, seeds[0]), (w, pw, seeds[1]))):
        room = tf.maximum(size_in - size_out, 0)
        start = tf.random.stateless_uniform([batch], s, minval=0, maxval=room + 1, dtype=tf.int32)
        if foreground > 0:
            start = tf.where(use_fg, tf.clip_by_value(fg_start[:, axis], 0, room), start)
        start = tf.where(size_in >= size_out, start, -((size_out - size_in) // 2))
        raw = start[:, None] + tf.range(size_out)[None]  # (B, size_out)
        picks.append((_reflect_coord(raw, size_in), (raw >= 0) & (raw < size_in)))
    (rows, valid_r), (cols, valid_c) = picks
    valid = (valid_r[:, :, None] & valid_c[:, None, :])[..., None]

    def window(x, fill=None):
        if x is None:
            return None
        x = tf.gather(tf.gather(x, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
        x = x if fill is None else tf.where(valid, x, tf.cast(fill, x.dtype))
        x.set_shape([None, ph, pw, x.shape[-1]])
        return x

    return window(image), window(mask, IGNORE_LABEL), window(weights, 0)


def _foreground_starts(mask, ph: int, pw: int, seed):
    """Window starts that put a foreground pixel inside the window (nnU-Net's oversampling).

    Per sample: a class drawn uniformly among the foreground classes (> 0) present, one of
    its pixels drawn uniformly, and the window placed so that pixel falls at a uniformly
    random position inside it. Uniform over classes (not pixels) so that rare classes are
    seen as often as common ones.

    Returns:
        ``(starts (B, 2) int32, found (B,) bool)``; ``found`` is False for masks without
        foreground (their start is unused).
    """

    def one(args):
        m, s = args
        m = m[..., 0]
        s_class, s_pixel, s_y, s_x = tf.unstack(tf.random.experimental.stateless_split(s, 4))
        counts = tf.math.bincount(tf.reshape(tf.maximum(m, 0), [-1]))
        classes = tf.cast(tf.where(counts[1:] > 0)[:, 0] + 1, tf.int32)
        n = tf.size(classes)

        def pick():
            c = classes[tf.random.stateless_uniform([], s_class, 0, n, tf.int32)]
            where = tf.cast(tf.where(tf.equal(m, c)), tf.int32)
            i = tf.random.stateless_uniform([], s_pixel, 0, tf.shape(where)[0], tf.int32)
            dy = tf.random.stateless_uniform([], s_y, 0, ph, tf.int32)
            dx = tf.random.stateless_uniform([], s_x, 0, pw, tf.int32)
            return tf.stack([where[i, 0] - dy, where[i, 1] - dx])

        start = tf.cond(n > 0, pick, lambda: tf.zeros([2], tf.int32))
        return start, n > 0

    batch = tf.shape(mask)[0]
    seeds = tf.random.experimental.stateless_split(seed, batch)
    return tf.map_fn(
        one,
        (tf.cast(mask, tf.int32), seeds),
        fn_output_signature=(tf.TensorSpec([2], tf.int32), tf.TensorSpec([], tf.bool)),
    )


def device_augment_fn(config: AugmentConfig | None = None, seed=0):
    """A function that augments whole batches inside a (compiled) training step.

    Use it with ``make_dataset(..., augment_on="device")``, whose batches are not augmented.
    It is plain TensorFlow (no Keras), XLA-compatible, and draws fresh parameters each step
    from ``(seed, step)`` and, under ``tf.distribute``, the replica id.

    Returns:
        ``fn(images, masks, step, weights=None) -> (images, masks[, weights])`` for
        ``(B, H, W, C)`` float images and ``(B, H, W, 1)`` masks; ``step`` is an integer
        scalar (e.g. ``optimizer.iterations``).

    Example:
        >>> augment = device_augment_fn(AugmentConfig(elastic=True), seed=0)
        >>> x, y = augment(x, y, optimizer.iterations)  # inside train_step
    """
    config = AugmentConfig() if config is None else config
    base = as_seed(seed)

    def fn(images, masks, step, weights=None):
        s = tf.random.experimental.stateless_fold_in(base, tf.cast(step, tf.int64))
        replica = tf.distribute.get_replica_context()
        if replica is not None:
            s = tf.random.experimental.stateless_fold_in(s, replica.replica_id_in_sync_group)
        out = _augment_batch(images, masks, weights, config, s)
        return out[:2] if weights is None else out

    return fn


def preview_augmentations(
    image, mask, config: AugmentConfig | None = None, n: int = 4, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` augmented versions of one pair as NumPy arrays (for a preview figure).

    Example:
        >>> pairs = preview_augmentations(image, mask, AugmentConfig(elastic=True), n=4)
    """
    out = []
    for i in range(n):
        img, msk = augment_pair(image, mask, config, seed=tf.constant([seed, i], tf.int64))
        out.append((img.numpy(), msk.numpy()))
    return out
