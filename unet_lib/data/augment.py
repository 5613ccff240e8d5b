"""Joint image/mask augmentation in TensorFlow ops: the image, its label map and weight map
move together, a pure function of the seed (stateless ops): flips and 90-degree rotations,
one resampling for rotation + scale + elastic deformation (bilinear image, nearest mask),
then gamma, contrast, brightness and noise. The batched cores live in ``transforms``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from unet_lib.checks import from_fields

from .transforms import augment_batch, crop_batch

_MASK_FILLS = ("reflect", "ignore")
_SWITCHES = ("flip", "rotate90", "affine", "elastic", "intensity", "noise")


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run and how strong they are.

    Args:
        flip: random horizontal and vertical flips (each with probability 1/2).
        flip_vertical: with ``flip``, the upside-down flips too; off for data with a canonical
            up (photographs: sky on top), where only left-right mirrors are plausible.
        rotate90: random multiples of 90 degrees (0/180 only for non-square images).
        affine: random rotation (uniform in ``+-rotation_degrees``) and scale (uniform in
            ``scale_range = (low, high)``, > 1 zooms in) about the image centre.
        elastic: the U-Net paper's elastic deformation (off by default): ``elastic_grid``
            squared displacements of std ``elastic_sigma`` pixels, upsampled bicubically.
        mask_fill: the mask outside the image after a warp: ``"reflect"`` or ``"ignore"``.
        intensity: gamma (log-uniform in ``[1 / (1 + gamma), 1 + gamma]``), contrast (factor
            ``1 +- contrast`` about the mean), brightness (``+- brightness``) on the image.
        noise: additive Gaussian noise of std ``noise_std`` (image units) on the image.
        intensity_window: the image units of the intensity and noise changes: one
            ``(low, high)`` per channel counted as ``(0, 1)`` (a run's ``intensity_scaling``,
            so dim 12-bit data get the changes 8-bit data get); ``None``: the stored range.
    """

    flip: bool = True
    flip_vertical: bool = True
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
    intensity_window: tuple[tuple[float, float], ...] | None = None

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
        window = self.intensity_window
        if window is not None:
            window = tuple(tuple(float(v) for v in pair) for pair in window)
            if not window or any(len(p) != 2 or not p[1] > p[0] for p in window):
                raise ValueError(
                    f"intensity_window must be one (low, high) pair per channel with high > "
                    f"low, or None, got {self.intensity_window!r}"
                )
            object.__setattr__(self, "intensity_window", window)
        if self.mask_fill not in _MASK_FILLS:
            raise ValueError(f"mask_fill must be one of {_MASK_FILLS}, got {self.mask_fill!r}")

    @classmethod
    def none(cls) -> AugmentConfig:
        """The identity: every switch off."""
        return cls(**dict.fromkeys(_SWITCHES, False))

    @classmethod
    def from_dict(cls, values: dict) -> AugmentConfig:
        """Builds a config from a dict (e.g. read from JSON); unknown keys raise."""
        return from_fields(cls, values, "AugmentConfig fields")

    def to_dict(self) -> dict:
        """The fields as a dict (``from_dict`` reads it back)."""
        return dataclasses.asdict(self)

    @property
    def is_identity(self) -> bool:
        """Whether every switch is off."""
        return not any(getattr(self, name) for name in _SWITCHES)


def as_seed(seed) -> tf.Tensor:
    """A stateless seed: a Python int ``s`` becomes ``[s, 0]``; shape-``[2]`` values pass."""
    if isinstance(seed, int | np.integer):
        return tf.constant([int(seed), 0], tf.int64)
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    seed.shape.assert_is_compatible_with([2])
    return seed


def _on_batch(core, image, mask, weights):
    """``core(images, masks, weights)`` on a pair as a batch of one (or on a batch, masks
    made ``(..., 1)``); the outputs in the input shapes, weights only when given."""
    image, mask = tf.convert_to_tensor(image), tf.convert_to_tensor(mask)
    if image.shape.rank not in (3, 4):
        raise ValueError(f"image must be (H, W, C) or (B, H, W, C), got shape {image.shape}")
    single, mask_rank = image.shape.rank == 3, mask.shape.rank

    def batched(x):
        x = tf.convert_to_tensor(x)
        x = x[..., None] if x.shape.rank == image.shape.rank - 1 else x
        return x[None] if single else x

    def unbatched(x):
        x = x[0] if single else x
        return x[..., 0] if x.shape.rank == mask_rank + 1 else x

    w = None if weights is None else batched(weights)
    image, mask, w = core(image[None] if single else image, batched(mask), w)
    out = (image[0] if single else image), unbatched(mask)
    return out if weights is None else (*out, unbatched(w))


def augment_pair(image, mask, config: AugmentConfig | None = None, seed=0, *, weights=None):
    """Augments an image and its label map (and ``weights``) identically; returns
    ``(image, mask[, weights])`` in the input shapes, the image as float32.

    Args:
        image: ``(H, W, C)`` or ``(B, H, W, C)`` float image in ``[0, 1]``.
        mask: matching ``(H, W)`` / ``(H, W, 1)`` or ``(B, H, W, 1)`` integer label map
            (never interpolated; ``IGNORE_LABEL`` stays ignored).
        config: an :class:`AugmentConfig` (``None``: the defaults).
        seed: an int or a shape-``[2]`` integer tensor; the output is a pure function of it.
        weights: optional weight map shaped like ``mask``, moved like it (``0`` where
            ``mask_fill="ignore"`` writes ``IGNORE_LABEL``).
    """
    config = AugmentConfig() if config is None else config
    return _on_batch(
        lambda i, m, w: augment_batch(i, m, w, config, as_seed(seed)), image, mask, weights
    )


def random_crop_pair(image, mask, size, seed=0, *, weights=None):
    """A random ``size`` (int or ``(height, width)``) window of a pair or of each sample of a
    batch (arguments and outputs as :func:`augment_pair`). Smaller images are centred and
    reflect-padded, their masks padded with ``IGNORE_LABEL`` (weights with 0)."""
    return _on_batch(lambda i, m, w: crop_batch(i, m, w, size, as_seed(seed)), image, mask, weights)


def device_augment_fn(config: AugmentConfig | None = None, seed=0):
    """``fn(images, masks, step, weights=None) -> (images, masks[, weights])``: augments
    ``(B, H, W, C)`` / ``(B, H, W, 1)`` batches inside a (compiled) training step, for
    ``make_dataset(..., augment_on="device")``. Plain TensorFlow, XLA-compatible; each
    ``step`` (an integer scalar such as ``optimizer.iterations``) draws fresh parameters from
    ``(seed, step)`` and, under ``tf.distribute``, the replica id.

    Example:
        >>> x, y = device_augment_fn(AugmentConfig(), seed=0)(x, y, optimizer.iterations)
    """
    config = AugmentConfig() if config is None else config
    base = as_seed(seed)

    def fn(images, masks, step, weights=None):
        s = tf.random.experimental.stateless_fold_in(base, tf.cast(step, tf.int64))
        replica = tf.distribute.get_replica_context()
        if replica is not None:
            s = tf.random.experimental.stateless_fold_in(s, replica.replica_id_in_sync_group)
        out = augment_batch(images, masks, weights, config, s)
        return out[:2] if weights is None else out

    return fn


def preview_augmentations(
    image, mask, config: AugmentConfig | None = None, n: int = 4, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` augmented versions of one pair as NumPy arrays (for a preview figure)."""
    pairs = (
        augment_pair(image, mask, config, seed=tf.constant([seed, i], tf.int64)) for i in range(n)
    )
    return [(img.numpy(), msk.numpy()) for img, msk in pairs]
