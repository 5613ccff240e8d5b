"""The tf.data input pipeline: source -> cache -> seeded shuffle (new order each epoch)
[-> repeat] -> per-element seed -> random patch -> augmentation -> pad -> batch -> prefetch.

Stateless ops seeded from ``(seed, Dataset.random(seed))``: reproducible, yet new patches and
augmentations each epoch. Padding writes ``IGNORE_LABEL`` into the mask (counted nowhere).
"""

from pathlib import Path

import numpy as np
import tensorflow as tf

from unet_lib import IGNORE_LABEL

from .augment import AugmentConfig, as_seed
from .padding import as_pair
from .transforms import augment_batch, crop_batch, reflect_coord

__all__ = ["make_dataset", "make_eval_dataset", "pad_to_multiple"]

_AUTOTUNE = tf.data.AUTOTUNE
_TENSOR_SOURCE_LIMIT = 1 << 30  # bytes: larger equal-size data is fed from a generator


def pad_to_multiple(x, multiple, mode: str = "reflect", constant_value=0):
    """TensorFlow version of :func:`~unet_lib.data.pad_to_multiple_np` (same even split, any
    pad width) for ``(H, W)``, ``(H, W, C)`` or ``(B, H, W, C)`` tensors; ``mode``:
    ``"reflect"`` (reflect-101) or ``"constant"`` (``constant_value``)."""
    if mode not in ("reflect", "constant"):
        raise ValueError(f"mode must be 'reflect' or 'constant', got {mode!r}")
    x = tf.convert_to_tensor(x)
    axis = 1 if x.shape.rank == 4 else 0
    for offset, m in enumerate(as_pair(multiple, "multiple")):
        ax = axis + offset
        size, static = tf.shape(x)[ax], x.shape[ax]
        raw = tf.range(size + (-size) % m) - ((-size) % m) // 2
        x = tf.gather(x, reflect_coord(raw, size), axis=ax)
        if static is not None:  # keep the static size for Keras
            x.set_shape(x.shape[:ax] + [static + (-static) % m] + x.shape[ax + 1 :])
        if mode == "constant":
            inside = tf.reshape((raw >= 0) & (raw < size), [-1] + [1] * (x.shape.rank - ax - 1))
            x = tf.where(inside, x, tf.cast(constant_value, x.dtype))
    return x


def _as_arrays(images, masks, labels, channels):
    """Normalises the accepted inputs to lists of float32 (H, W, C) and int32 (H, W, 1)."""
    if isinstance(images, str | Path):
        if masks is not None:
            raise ValueError("pass either a dataset folder (masks=None) or images and masks")
        from .folder import load_dataset

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
    scalars = all(np.ndim(w) == 0 for w in sample_weights)  # maps may differ in size
    if scalars and len(sample_weights) == len(masks):
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
    """``(dataset, number of pairs, set of (H, W) sizes)`` of pairs read from the folder one
    at a time, after validating it (each file read once and dropped): with a cache file the
    data is never held whole (data larger than memory)."""
    from .folder import find_pairs, read_image, read_labels, validate_dataset

    summary = validate_dataset(data_dir, labels=labels, channels=channels)
    pairs = find_pairs(data_dir)
    mapping, depth = summary.mapping, summary.channels

    def generate():
        for pair in pairs:
            image = read_image(pair.image_path, channels=depth, page=pair.page)
            mask = read_labels(pair.mask_path, mapping, pair.page)
            yield image, mask.astype(np.int32)[..., None]

    ds = tf.data.Dataset.from_generator(generate, output_signature=_specs(depth))
    return ds, summary.num_pairs, set(summary.sizes)


def _specs(channels: int, weights=None) -> tuple:
    """The element signature: image, mask and (per-pixel or per-image) weights if given."""
    specs = [tf.TensorSpec((None, None, channels), tf.float32)]
    specs.append(tf.TensorSpec((None, None, 1), tf.int32))
    if weights is not None:
        specs.append(tf.TensorSpec((None, None, 1) if np.ndim(weights[0]) else (), tf.float32))
    return tuple(specs)


def _source(images, masks, weights) -> tf.data.Dataset:
    """A dataset of single elements; tensor slices when sizes agree, else a generator."""
    same = len({a.shape for a in images}) == 1
    parts = [images, masks] + ([weights] if weights is not None else [])
    nbytes = sum(a.nbytes for a in images) + sum(a.nbytes for a in masks)
    if same and nbytes <= _TENSOR_SOURCE_LIMIT:
        return tf.data.Dataset.from_tensor_slices(tuple(np.stack(p) for p in parts))
    specs = _specs(images[0].shape[-1], weights)
    return tf.data.Dataset.from_generator(lambda: zip(*parts, strict=True), output_signature=specs)


def _check_options(batch_size, augment, augment_on, patch_size, foreground_fraction):
    """Validates the options of :func:`make_dataset`; returns the patch as ``(h, w)`` (or
    ``None``) and the augmentation to run in the pipeline (or ``None``)."""
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
    host = augment if augment_on == "host" and augment is not None else None
    return patch, None if host is not None and host.is_identity else host


def _elements(images, masks, sample_weights, cache, labels, channels):
    """The source dataset, its length, the image sizes and the kind of weights."""
    file_cache = isinstance(cache, str | Path) and cache not in ("", "memory")
    if isinstance(images, str | Path) and file_cache and masks is None and sample_weights is None:
        # a folder and a cache file: never hold the whole dataset in memory
        return (*_file_source(images, labels, channels), None)
    images, masks = _as_arrays(images, masks, labels, channels)
    weights, weight_kind = _as_weights(sample_weights, masks)
    sizes = {a.shape[:2] for a in images}
    return _source(images, masks, weights), len(images), sizes, weight_kind


def _cached(ds: tf.data.Dataset, cache) -> tf.data.Dataset:
    if cache is True or cache == "memory":
        return ds.cache()
    if isinstance(cache, str | Path) and cache:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        return ds.cache(str(cache))
    if cache not in (False, None):
        raise ValueError(f"cache must be True, 'memory', a file path or False, got {cache!r}")
    return ds


def _ordered(ds, count, shuffle, shuffle_buffer, seed, repeat, seeded) -> tf.data.Dataset:
    """Shuffled (a new order each epoch), repeated; elements paired with an int64 ``r`` that
    seeds their patch and augmentation (random when ``seeded``, else 0)."""
    if shuffle:
        ds = ds.shuffle(
            shuffle_buffer or min(count, 4096), seed=seed, reshuffle_each_iteration=True
        )
    ds = ds.repeat() if repeat else ds
    if seeded:
        rand = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        return tf.data.Dataset.zip((ds, rand))
    return ds.map(lambda *e: (e, tf.constant(0, tf.int64)))


def _transform(seed, patch, foreground_fraction, augment, pad_multiple, weight_kind):
    """The per-element map ``(element, r) -> (image, mask[, weights])``: seed from ``r``,
    patch, augmentation (``augment``: a config or None), padding."""
    base = as_seed(seed)

    def transform(element, r):
        image, mask = element[0][None], element[1][None]  # batch of one for the cores
        w = element[2][None] if weight_kind == "pixel" else None
        s = tf.random.experimental.stateless_fold_in(base, r)
        s_crop, s_aug = tf.unstack(tf.random.experimental.stateless_split(s, 2))
        if patch is not None:
            image, mask, w = crop_batch(image, mask, w, patch, s_crop, foreground_fraction)
        if augment is not None:
            image, mask, w = augment_batch(image, mask, w, augment, s_aug)
        image, mask, w = (None if t is None else t[0] for t in (image, mask, w))
        if pad_multiple is not None:
            image = pad_to_multiple(image, pad_multiple)
            mask = pad_to_multiple(mask, pad_multiple, "constant", IGNORE_LABEL)
            w = None if w is None else pad_to_multiple(w, pad_multiple, "constant", 0)
        w = element[2] if weight_kind == "image" else w
        return (image, mask) if w is None else (image, mask, w)

    return tf.autograph.experimental.do_not_convert(transform)


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
    """The training (or evaluation) pipeline of ``(float32 (B, h, w, C), int32 (B, h, w, 1))``
    batches; inconsistent inputs, or different sizes batched without ``patch_size``, raise
    ValueError.

    Args:
        images: ``(H, W, C)`` float arrays in ``[0, 1]`` (sizes may differ) with ``masks``
            (``(H, W)`` label maps), a ``LoadedDataset``, or a folder (``labels``,
            ``channels`` as in ``load_dataset``).
        batch_size: elements per batch (the global batch under ``tf.distribute``).
        patch_size: ``int`` or ``(h, w)``: a random window per element and step (smaller
            images padded); ``None``: whole images.
        augment: an :class:`AugmentConfig` or ``None``; with ``augment_on="device"`` call
            ``device_augment_fn`` in the training step instead.
        shuffle: a seeded, new order each epoch (``shuffle_buffer``: default up to 4096).
        cache: ``True`` / ``"memory"``, ``False``, or a file (a folder is then read one pair
            at a time: data larger than memory). ``seed`` seeds everything random.
        deterministic, repeat: a fixed element order despite the parallel maps; forever.
        pad_multiple: pad height and width up to a multiple (e.g. ``2**depth``).
        sample_weights: per-image ``(N,)`` or per-pixel ``(H, W)`` maps: ``(x, y, weights)``.
        foreground_fraction: share of patches placed on a foreground pixel of a class drawn
            uniformly among those present (nnU-Net's oversampling).
    """
    patch, host = _check_options(batch_size, augment, augment_on, patch_size, foreground_fraction)
    ds, count, sizes, weights = _elements(images, masks, sample_weights, cache, labels, channels)
    if len(_output_sizes(sizes, patch, pad_multiple)) > 1 and batch_size > 1:
        raise ValueError(
            f"images have different sizes (e.g. {sorted(sizes)[:4]}): pass patch_size=... "
            "to train on equal patches, or batch_size=1"
        )
    seeded = patch is not None or host is not None
    ds = _ordered(_cached(ds, cache), count, shuffle, shuffle_buffer, seed, repeat, seeded)
    transform = _transform(seed, patch, foreground_fraction, host, pad_multiple, weights)
    ds = ds.map(transform, num_parallel_calls=_AUTOTUNE, deterministic=bool(deterministic))
    ds = ds.batch(int(batch_size), drop_remainder=drop_remainder).prefetch(_AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = bool(deterministic)
    options.autotune.enabled = False  # the autotuner delays the iterator's end by seconds
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
    """The evaluation pipeline: whole images, in order, no augmentation, padded to
    ``pad_multiple`` (mask ``IGNORE_LABEL``: give the metrics ``ignore_class=IGNORE_LABEL``).
    ``batch_size`` defaults to 8 when all images share one size, else 1."""
    images, masks = _as_arrays(images, masks, labels, channels)
    if batch_size is None:
        sizes = {a.shape[:2] for a in images}
        batch_size = 8 if len(_output_sizes(sizes, None, pad_multiple)) == 1 else 1
    kwargs = {"shuffle": False, "cache": cache, "deterministic": True}
    return make_dataset(images, masks, batch_size=batch_size, pad_multiple=pad_multiple, **kwargs)
