"""The training and validation ``tf.data`` pipelines of a :class:`TrainConfig`.

The split (given, stored or seeded), per-pixel sample weights (class balance, the U-Net
paper's weight map) and a validation set padded evenly over the replicas.
"""

from __future__ import annotations

import math

import numpy as np

from unet_lib import IGNORE_LABEL
from unet_lib.data import load_dataset, make_dataset, split_dataset


def choose_split(config, dataset) -> None:
    """Sets ``config.train_stems`` / ``val_stems`` unless given (or stored by a resumed run)."""
    if config.train_stems:
        return
    if config.val_data is not None:
        config.train_stems = list(dataset.stems)
        return
    parts = split_dataset(
        dataset.stems,
        val_fraction=config.val_fraction,
        seed=config.seed,
        contiguous=config.split == "contiguous",
    )
    config.train_stems, config.val_stems = parts["train"], parts["val"]


def even_for_replicas(images: list, masks: list, replicas: int) -> tuple[list, list]:
    """Pads a validation set to a multiple of ``replicas`` with fully ignored copies.

    Distributed evaluation fails when a batch splits unevenly over the replicas. A copy of
    the first image with an all-``IGNORE_LABEL`` mask adds nothing to the Dice and IoU counts
    or to the loss; only Keras's running mean of ``val_loss`` weighs the last batch by its
    padded size.
    """
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


def make_datasets(config, dataset, global_batch: int, replicas: int = 1):
    """``(train_ds, val_ds or None, steps per epoch, validation padded with ignored copies)``."""
    index = {stem: i for i, stem in enumerate(dataset.stems)}

    def select(stems):
        ids = [index[s] for s in stems]
        return [dataset.images[i] for i in ids], [dataset.masks[i] for i in ids]

    images, masks = select(config.train_stems)
    weights = sample_weights(config, masks, dataset.mapping.num_classes)
    steps = config.steps_per_epoch or max(1, math.ceil(len(images) / global_batch))
    multiple = 2**config.depth
    train_ds = make_dataset(
        images,
        masks,
        batch_size=global_batch,
        patch_size=config.patch_size,
        foreground_fraction=config.foreground_fraction if config.patch_size else 0.0,
        augment=config.augment_config(),
        shuffle=True,
        seed=config.seed,
        deterministic=config.deterministic,
        repeat=True,
        pad_multiple=multiple,
        drop_remainder=True,
        sample_weights=weights,
    )
    if config.val_data is not None:
        val = load_dataset(config.val_data, labels=config.labels, channels=config.channels)
        config.val_stems = list(val.stems)
        val_images, val_masks = val.images, val.masks
    else:
        val_images, val_masks = select(config.val_stems)
    if not val_images:
        return train_ds, None, steps, False
    count = len(val_images)
    val_images, val_masks = even_for_replicas(list(val_images), list(val_masks), replicas)
    val_ds = make_dataset(
        val_images,
        val_masks,
        batch_size=global_batch if len({m.shape for m in val_masks}) == 1 else 1,
        augment=None,
        shuffle=False,
        pad_multiple=multiple,
    )
    return train_ds, val_ds, steps, len(val_images) > count


def sample_weights(config, masks, num_label_classes: int):
    """Per-pixel weights (class balance and/or the paper's weight map), or ``None``.

    ``class_weights="balanced"`` is resolved here to ``total / (K * count)`` per class and
    stored back in ``config``.
    """
    if config.weight_map:
        from unet_lib.weightmap import unet_weight_map

        balance = config.class_weights or "balanced"
        return [
            unet_weight_map(m, w0=config.weight_map_w0, sigma=config.weight_map_sigma,
                            class_weights=balance)
            for m in masks
        ]  # fmt: skip
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
