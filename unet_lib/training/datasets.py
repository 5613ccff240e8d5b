"""The training and validation ``tf.data`` pipelines of a :class:`TrainConfig`: the split
(given, stored or seeded), per-pixel sample weights (class balance, the U-Net paper's weight
map) and a validation set padded evenly over the replicas."""

import math

import numpy as np

from unet_lib import IGNORE_LABEL, runtime
from unet_lib.data import load_dataset, make_dataset, split_dataset


def load(config, folder: str):
    """The dataset in ``folder``, read with the run's ``labels`` and ``channels``."""
    return load_dataset(folder, labels=config.labels, channels=config.channels)


def validation_set(config, dataset):
    """The validation images: the ``val_data`` folder, else ``dataset``'s ``val_stems``."""
    if config.val_data is None:
        return dataset.select(config.val_stems)
    return load(config, config.val_data)


def choose_split(config, dataset) -> None:
    """Sets ``config.train_stems`` / ``val_stems`` unless given (or stored by a resumed run)."""
    if config.train_stems:
        return
    if config.val_data is not None:
        config.train_stems = list(dataset.stems)
        return
    contiguous = config.split == "contiguous"
    parts = split_dataset(
        dataset.stems, val_fraction=config.val_fraction, seed=config.seed, contiguous=contiguous
    )
    config.train_stems, config.val_stems = parts["train"], parts["val"]


def even_for_replicas(images: list, masks: list, replicas: int) -> tuple[list, list]:
    """Pads a validation set to a multiple of ``replicas`` with copies of the first image whose
    mask is all ``IGNORE_LABEL``: they add nothing to Dice, IoU or the loss (only Keras's mean
    of ``val_loss`` weighs the last batch by its padded size)."""
    if replicas > 1 and len({m.shape for m in masks}) > 1:
        # such images go one per batch, and one image cannot be split over the replicas
        raise ValueError(
            f"{len(images)} validation images of different sizes cannot be split over "
            f"{replicas} replicas: give validation images of one size (val_data=...), or "
            "train on one device (devices='gpu:0')"
        )
    extra = -len(images) % replicas
    if extra == 0 or not images:
        return images, masks
    blank = np.full_like(masks[0], IGNORE_LABEL)
    return images + [images[0]] * extra, masks + [blank] * extra


def make_datasets(config, dataset, settings):
    """``(train_ds, val_ds or None, steps per epoch, validation padded with ignored copies)``
    for the devices of ``settings`` (sharded by data over several workers)."""
    train = dataset.select(config.train_stems)
    weights = sample_weights(config, train.masks, dataset.mapping.num_classes)
    steps = config.steps_per_epoch or max(1, math.ceil(len(train) / settings.global_batch_size))
    multiple = 2**config.size_depth
    train_ds = make_dataset(
        train.images,
        train.masks,
        batch_size=settings.global_batch_size,
        patch_size=config.patch_size,
        foreground_fraction=config.foreground_fraction if config.patch_size else 0.0,
        augment=config.augment_config(),
        seed=config.seed,
        deterministic=config.deterministic,
        repeat=True,
        pad_multiple=multiple,
        drop_remainder=True,
        sample_weights=weights,
    )
    val = validation_set(config, dataset)
    config.val_stems, val_ds, padded = list(val.stems), None, False
    if val.images:
        images, masks = even_for_replicas(list(val.images), list(val.masks), settings.num_replicas)
        batch = settings.global_batch_size if len({m.shape for m in masks}) == 1 else 1
        val_ds = make_dataset(images, masks, batch_size=batch, shuffle=False, pad_multiple=multiple)
        padded = len(images) > len(val.images)
    if settings.num_workers > 1:
        train_ds, val_ds = (runtime.shard_by_data(ds) for ds in (train_ds, val_ds))
    return train_ds, val_ds, steps, padded


def sample_weights(config, masks, num_label_classes: int):
    """Per-pixel weights (class balance and/or the paper's weight map), or ``None``;
    ``class_weights="balanced"`` becomes ``total / (K * count)`` per class, stored back."""
    if config.weight_map:
        from unet_lib.weightmap import unet_weight_map

        balance = config.class_weights or "balanced"
        options = dict(
            w0=config.weight_map_w0, sigma=config.weight_map_sigma, class_weights=balance
        )
        return [unet_weight_map(m, **options) for m in masks]
    if config.class_weights is None:
        return None
    if config.class_weights == "balanced":
        labelled = np.concatenate([m[m >= 0].ravel() for m in masks])
        counts = np.bincount(labelled, minlength=num_label_classes).astype(np.float64)
        weights = counts.sum() / (num_label_classes * np.maximum(counts, 1))
        config.class_weights = [round(float(w), 6) for w in weights]
    table = np.asarray(config.class_weights, dtype=np.float32)
    if table.shape != (num_label_classes,):
        raise ValueError(
            f"class_weights needs one weight per class ({num_label_classes}), got {len(table)}"
        )
    return [np.where(m >= 0, table[np.clip(m, 0, None)], 0.0).astype(np.float32) for m in masks]
