"""The tf.data input pipeline: decode once, cache, shuffle, crop, augment, pad, batch.

``make_dataset`` turns in-memory arrays (lists of possibly different-sized images and label
maps, a :class:`~unet_lib.data.folder.LoadedDataset`, or a dataset folder, which it loads
with :func:`~unet_lib.data.folder.load_dataset`) into a ``tf.data.Dataset`` of
``(images (B, h, w, C) float32, masks (B, h, w, 1) int32)`` batches:

    source -> cache -> seeded shuffle (reshuffled each epoch) [-> repeat] -> per-element
    seed -> random patch (``patch_size``) -> augmentation -> pad to ``pad_multiple``
    -> batch -> prefetch

Every random choice uses stateless ops seeded from ``(seed, Dataset.random(seed))``, so a
pipeline is reproducible across runs (exactly, order included, with ``deterministic=True``)
while each epoch gets new patches and augmentations. Padding (patches larger than the image,
sizes that are not a multiple of ``2**depth``) reflects the image and writes
``IGNORE_LABEL`` into the mask, so padded pixels count nowhere.

The NumPy helpers :func:`pad_to_multiple_np` / :func:`unpad_np` do the same padding for
inference and crop the result back.

Example:
    >>> ds = make_dataset(images, masks, batch_size=8, patch_size=128, augment=AugmentConfig())
    >>> for x, y in ds.take(1):
    ...     x.shape, y.shape  # (8, 128, 128, C), (8, 128, 128, 1)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from unet_lib import IGNORE_LABEL
from unet_lib.data.augment import (
    AugmentConfig,
    _augment_batch,
    _crop_batch,
    _reflect_coord,
    as_seed,
    device_augment_fn,
)
from unet_lib.data.padding import as_pair, pad_to_multiple_np, unpad_np

__all__ = [
    "make_dataset",
    "make_eval_dataset",
    "pad_to_multiple",
    "pad_to_multiple_np",
    "unpad_np",
    "device_augment_fn",
]

_AUTOTUNE = tf.data.AUTOTUNE
_TENSOR_SOURCE_LIMIT = 1 << 30  # bytes: larger equal-size data is fed from a generator


def pad_to_multiple(x, multiple, mode: str = "reflect", constant_value=0):
    """TensorFlow version of :func:`pad_to_multiple_np` (same even split, any pad width).

    Args:
        x: ``(H, W)``, ``(H, W, C)`` or ``(B, H, W, C)`` tensor.
        multiple: int or ``(my, mx)``.
        mode: ``"reflect"`` (reflect-101) or ``"constant"`` (``constant_value``).

    Returns:
        The padded tensor (image and mask padded separately stay aligned).

    Example:
        >>> image = pad_to_multiple(image, 16)
        >>> mask = pad_to_multiple(mask, 16, mode="constant", constant_value=IGNORE_LABEL)
    """
    if mode not in ("reflect", "constant"):
        raise ValueError(f"mode must be 'reflect' or 'constant', got {mode!r}")
    x = tf.convert_to_tensor(x)
    axis = 1 if x.shape.rank == 4 else 0
    for offset, m in enumerate(as_pair(multiple, "multiple")):
        ax = axis + offset
        size = tf.shape(x)[ax]
        before = ((-size) % m) // 2
        raw = tf.range(size + (-size) % m) - before
        static = x.shape[ax]
        x = tf.gather(x, _reflect_coord(raw, size), axis=ax)
        if static is not None:  # keep the static size for Keras
            shape = x.shape.as_list()
            shape[ax] = static + (-static) % m
            x.set_shape(shape)
        if mode == "constant":
            inside = (raw >= 0) & (raw < size)
            shape = [1] * x.shape.rank
            shape[ax] = -1
            x = tf.where(tf.reshape(inside, shape), x, tf.cast(constant_value, x.dtype))
    return x


def _as_arrays(images, masks, labels, channels):
    """Normalises the accepted inputs to lists of float32 (H, W, C) and int32 (H, W, 1)."""
    if isinstance(images, str | Path):
        if masks is not None:
            raise ValueError("pass either a dataset folder (masks=None) or images and masks")
        from unet_lib.data.folder import load_dataset

        images = load_dataset(images, labels=labels, channels=channels)
    if hasattr(images, "images") and hasattr(images, "masks"):  # a LoadedDataset
        images, masks = images.images, images.masks
    if masks is None:
        raise ValueError("masks are missing: pass label maps for the images")
    if len(images) != len(masks):
        raise ValueError(f"{len(images)} images but {len(masks)} masks")
    if len(images) == 0:
        raise ValueError("the dataset is empty")
    out_i, out_m, problems = [], [], []
    for i, (img, msk) in enumerate(zip(images, masks, strict=True)):
        img, msk = np.asarray(img), np.asarray(msk)
        img = img[..., None] if img.ndim == 2 else img
        msk = msk[..., 0] if msk.ndim == 3 and msk.shape[-1] == 1 else msk
        if img.ndim != 3 or msk.ndim != 2 or img.shape[:2] != msk.shape:
            problems.append(
                f"pair {i}: image {img.shape} and mask {msk.shape} do not match "
                "(expected (H, W, C) and (H, W))"
            )
        elif out_i and img.shape[-1] != out_i[0].shape[-1]:
            problems.append(f"pair {i}: {img.shape[-1]} channels, pair 0 has {out_i[0].shape[-1]}")
        out_i.append(img.astype(np.float32, copy=False))
        out_m.append(msk.astype(np.int32, copy=False)[..., None])
    if problems:
        raise ValueError("bad input arrays:\n  " + "\n  ".join(problems[:20]))
    return out_i, out_m


def _as_weights(sample_weights, masks):
    """``None``, per-image scalars ``(N,)`` or per-pixel maps (list of ``(H, W)``)."""
    if sample_weights is None:
        return None, None
    if np.ndim(sample_weights) == 1 and len(sample_weights) == len(masks):
        return [np.float32(w) for w in sample_weights], "image"
    if len(sample_weights) != len(masks):
        raise ValueError(f"{len(sample_weights)} sample weights for {len(masks)} images")
    out = []
    for i, (w, m) in enumerate(zip(sample_weights, masks, strict=True)):
        w = np.asarray(w, np.float32)
        w = w[..., None] if w.ndim == 2 else w
        if w.shape != m.shape:
            raise ValueError(f"weight map {i} has shape {w.shape}, its mask {m.shape[:2]}")
        out.append(w)
    return out, "pixel"


def _output_sizes(sizes, patch, pad_multiple) -> set[tuple[int, int]]:
    """The distinct ``(h, w)`` of the elements (source ``sizes``) after patching and padding."""
    multiple = as_pair(pad_multiple or 1, "pad_multiple")
    sizes = {patch} if patch is not None else set(sizes)
    return {tuple(-(-s // m) * m for s, m in zip(size, multiple, strict=True)) for size in sizes}


def _file_source(data_dir, labels, channels):
    """Pairs read from the folder one at a time (for data larger than memory).

    The folder is validated first (every file is read once and dropped); the dataset then
    decodes each pair when it is needed, so with a cache file nothing is ever held whole.

    Returns:
        ``(dataset, number of pairs, set of (H, W) sizes)``.
    """
    from unet_lib.data.folder import find_pairs, read_image, read_mask, validate_dataset

    summary = validate_dataset(data_dir, labels=labels, channels=channels)
    pairs = find_pairs(data_dir)
    mapping, depth = summary.mapping, summary.channels

    def generate():
        for pair in pairs:
            image = read_image(pair.image_path, channels=depth)
            mask = mapping.encode(read_mask(pair.mask_path), pair.mask_path)
            yield image, mask.astype(np.int32)[..., None]

    specs = (
        tf.TensorSpec((None, None, depth), tf.float32),
        tf.TensorSpec((None, None, 1), tf.int32),
    )
    ds = tf.data.Dataset.from_generator(generate, output_signature=specs)
    return ds, summary.num_pairs, set(summary.sizes)


def _source(images, masks, weights) -> tf.data.Dataset:
    """A dataset of single elements; tensor slices when sizes agree, else a generator."""
    same = len({a.shape for a in images}) == 1
    parts = [images, masks] + ([weights] if weights is not None else [])
    nbytes = sum(a.nbytes for a in images) + sum(a.nbytes for a in masks)
    if same and nbytes <= _TENSOR_SOURCE_LIMIT:
        return tf.data.Dataset.from_tensor_slices(tuple(np.stack(p) for p in parts))
    specs = [
        tf.TensorSpec((None, None, images[0].shape[-1]), tf.float32),
        tf.TensorSpec((None, None, 1), tf.int32),
    ]
    if weights is not None:
        specs.append(tf.TensorSpec((None, None, 1) if np.ndim(weights[0]) else (), tf.float32))

    def generate():
        yield from zip(*parts, strict=True)

    return tf.data.Dataset.from_generator(generate, output_signature=tuple(specs))


def make_dataset(
    images,
    masks=None,
    *,
    batch_size: int,
    patch_size=None,
    augment: AugmentConfig | None = None,
    shuffle: bool = True,
    cache: bool | str = True,
    seed: int = 0,
    deterministic: bool = False,
    repeat: bool = False,
    pad_multiple=None,
    drop_remainder: bool = False,
    sample_weights=None,
    augment_on: str = "host",
    shuffle_buffer: int | None = None,
    labels=None,
    channels: int | None = None,
    foreground_fraction: float = 0.0,
) -> tf.data.Dataset:
    """Builds the training (or evaluation) ``tf.data`` pipeline.

    Args:
        images: list of ``(H, W, C)`` (or ``(H, W)``) float arrays in ``[0, 1]`` (sizes may
            differ), a ``LoadedDataset``, or a dataset folder path (loaded with
            ``load_dataset(images, labels, channels)``; ``masks`` must then be ``None``).
        masks: list of ``(H, W)`` integer label maps (``IGNORE_LABEL`` = ignored).
        batch_size: elements per batch (the global batch under ``tf.distribute``).
        patch_size: ``int`` or ``(h, w)``: train on a random window of each image per step;
            smaller images are reflect-padded (mask ``IGNORE_LABEL``). ``None``: whole images.
        foreground_fraction: share of the patches centred on a foreground pixel (of a class
            drawn uniformly among those > 0 present in the image), the rest uniform; nnU-Net
            uses 1/3 so rare classes are seen. Needs ``patch_size``.
        augment: an :class:`AugmentConfig`, or ``None`` for no augmentation.
        shuffle: seeded shuffle, a new order each epoch (``shuffle_buffer`` elements; default
            the whole dataset up to 4096).
        cache: ``True`` / ``"memory"``: cache the source in memory; a path string: a cache
            file. With a folder as ``images`` and a cache file, pairs are read from disk one
            at a time and the whole dataset is never held in memory (data larger than
            memory); ``False``: no cache.
        seed: seeds the shuffle, the patches and the augmentation.
        deterministic: ``tf.data`` ``options.deterministic``: a fixed element order despite
            the parallel maps (same seed -> the same batches).
        repeat: repeat forever (use ``steps_per_epoch``).
        pad_multiple: pad each element's height and width up to a multiple (e.g.
            ``2**depth`` for 480 x 360 images): image reflected, mask ``IGNORE_LABEL``.
        drop_remainder: drop the last, smaller batch.
        sample_weights: per-image weights ``(N,)`` (batched ``(B,)``) or per-pixel weight maps
            (list of ``(H, W)``, cropped / moved / padded with the mask, batched
            ``(B, h, w, 1)``); the dataset then yields ``(x, y, weights)``.
        augment_on: ``"host"`` (augment in this pipeline) or ``"device"``: batches are
            not augmented; call ``device_augment_fn(augment, seed)`` in the training step.
        labels, channels: passed to ``load_dataset`` for a folder.

    Returns:
        A ``tf.data.Dataset`` of ``(float32 (B, h, w, C), int32 (B, h, w, 1))``.

    Raises:
        ValueError: for inconsistent inputs, or images of different sizes batched together
            without ``patch_size`` (use ``patch_size`` or ``batch_size=1``).

    Example:
        >>> ds = make_dataset("data/generated/binary_v1", batch_size=8, patch_size=128,
        ...                   augment=AugmentConfig(), repeat=True)  # doctest: +SKIP
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if augment_on not in ("host", "device"):
        raise ValueError(f"augment_on must be 'host' or 'device', got {augment_on!r}")
    if augment is not None and not isinstance(augment, AugmentConfig):
        raise TypeError(f"augment must be an AugmentConfig or None, got {type(augment)}")
    patch = None if patch_size is None else as_pair(patch_size, "patch_size")
    if not 0.0 <= foreground_fraction <= 1.0:
        raise ValueError(f"foreground_fraction must be in [0, 1], got {foreground_fraction}")
    if foreground_fraction > 0 and patch is None:
        raise ValueError("foreground_fraction needs patch_size (it places the patches)")
    streaming = (
        isinstance(images, str | Path)
        and isinstance(cache, str | Path)
        and cache not in ("", "memory")
        and masks is None
        and sample_weights is None
    )
    if streaming:  # a folder and a cache file: never hold the whole dataset in memory
        ds, count, sizes = _file_source(images, labels, channels)
        weight_kind = None
    else:
        images, masks = _as_arrays(images, masks, labels, channels)
        weights, weight_kind = _as_weights(sample_weights, masks)
        ds = _source(images, masks, weights)
        count, sizes = len(images), {a.shape[:2] for a in images}
    if len(_output_sizes(sizes, patch, pad_multiple)) > 1 and batch_size > 1:
        raise ValueError(
            f"images have different sizes (e.g. {sorted(sizes)[:4]}): pass patch_size=... "
            "to train on equal patches, or batch_size=1"
        )
    if cache is True or cache == "memory":
        ds = ds.cache()
    elif isinstance(cache, str | Path) and cache:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        ds = ds.cache(str(cache))
    elif cache not in (False, None):
        raise ValueError(f"cache must be True, 'memory', a file path or False, got {cache!r}")
    if shuffle:
        buffer = shuffle_buffer or min(count, 4096)
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    host_augment = augment if augment_on == "host" and augment is not None else None
    if host_augment is not None and host_augment.is_identity:
        host_augment = None
    if patch is not None or host_augment is not None:
        rand = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip((ds, rand))
    else:
        ds = ds.map(lambda *e: (e, tf.constant(0, tf.int64)))
    base = as_seed(seed)
    pixel_weights = weight_kind == "pixel"

    def transform(element, r):
        image, mask = element[0][None], element[1][None]  # batch of one for the cores
        w = element[2][None] if pixel_weights else None
        s = tf.random.experimental.stateless_fold_in(base, r)
        s_crop, s_aug = tf.unstack(tf.random.experimental.stateless_split(s, 2))
        if patch is not None:
            image, mask, w = _crop_batch(image, mask, w, patch, s_crop, foreground_fraction)
        if host_augment is not None:
            image, mask, w = _augment_batch(image, mask, w, host_augment, s_aug)
        image, mask, w = (None if t is None else t[0] for t in (image, mask, w))
        if pad_multiple is not None:
            image = pad_to_multiple(image, pad_multiple)
            mask = pad_to_multiple(mask, pad_multiple, "constant", IGNORE_LABEL)
            if w is not None:
                w = pad_to_multiple(w, pad_multiple, "constant", 0)
        if weight_kind == "image":
            w = element[2]
        return (image, mask) if w is None else (image, mask, w)

    transform = tf.autograph.experimental.do_not_convert(transform)
    ds = ds.map(transform, num_parallel_calls=_AUTOTUNE, deterministic=bool(deterministic))
    ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)
    ds = ds.prefetch(_AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = bool(deterministic)
    # TF 2.21's autotuner thread makes the iterator's destructor wait for its next wake-up
    # (up to as long as the iterator lived, 0 % CPU): 9-11 s after every fit here.
    # Without it, AUTOTUNE parallelism resolves to the core count; step times unchanged
    # (benchmarks/README.md, "The idle wait after fit").
    options.autotune.enabled = False
    return ds.with_options(options)


def make_eval_dataset(
    images,
    masks=None,
    *,
    batch_size: int | None = None,
    pad_multiple=None,
    cache: bool | str = False,
    labels=None,
    channels: int | None = None,
) -> tf.data.Dataset:
    """The evaluation pipeline: whole images, in order, no augmentation.

    Images are padded to ``pad_multiple`` (mask ``IGNORE_LABEL``, so give the metrics
    ``ignore_class=IGNORE_LABEL``). ``batch_size`` defaults to 8 when all images share one
    size and to 1 otherwise.

    Example:
        >>> val = make_eval_dataset(val_images, val_masks, pad_multiple=16)  # doctest: +SKIP
    """
    images, masks = _as_arrays(images, masks, labels, channels)
    if batch_size is None:
        sizes = {a.shape[:2] for a in images}
        batch_size = 8 if len(_output_sizes(sizes, None, pad_multiple)) == 1 else 1
    return make_dataset(
        images,
        masks,
        batch_size=batch_size,
        shuffle=False,
        cache=cache,
        deterministic=True,
        pad_multiple=pad_multiple,
    )
