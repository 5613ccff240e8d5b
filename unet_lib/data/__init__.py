"""The data layer: dataset folders, the built-in synthetic data, augmentation and tf.data.

``labels`` (the ``dataset.json`` label mapping), ``files`` (pairing and reading),
``folder`` (validation and loading), ``splits`` and ``synthetic`` (NumPy + OpenCV) are
imported eagerly; the TensorFlow parts (``make_dataset``, ``AugmentConfig``,
``augment_pair``, ``preview_augmentations``) are imported on first use, so
``import unet_lib.data`` never imports TensorFlow.

Example:
    >>> from unet_lib.data import ensure_default_dataset, load_dataset, split_dataset
    >>> data = load_dataset(ensure_default_dataset("binary"))  # doctest: +SKIP
    >>> splits = split_dataset(data.stems, val_fraction=0.2, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib

from unet_lib.data.files import IMAGE_EXTENSIONS, Pair, find_pairs, read_image, read_mask
from unet_lib.data.folder import DatasetSummary, LoadedDataset, load_dataset, validate_dataset
from unet_lib.data.labels import (
    DatasetError,
    LabelMapping,
    infer_label_mapping,
    load_label_mapping,
)
from unet_lib.data.padding import pad_to_multiple_np, reflect_indices, unpad_np
from unet_lib.data.splits import split_dataset
from unet_lib.data.synthetic import (
    default_data_dir,
    ensure_default_dataset,
    make_synthetic_dataset,
)

# public name -> submodule that defines it (imported lazily: these import TensorFlow)
_LAZY = {
    "make_dataset": "pipeline",
    "AugmentConfig": "augment",
    "augment_pair": "augment",
    "preview_augmentations": "augment",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"unet_lib.data.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'unet_lib.data' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "IMAGE_EXTENSIONS",
    "DatasetError",
    "DatasetSummary",
    "LabelMapping",
    "LoadedDataset",
    "Pair",
    "find_pairs",
    "infer_label_mapping",
    "load_dataset",
    "load_label_mapping",
    "read_image",
    "read_mask",
    "split_dataset",
    "validate_dataset",
    "default_data_dir",
    "ensure_default_dataset",
    "make_synthetic_dataset",
    "pad_to_multiple_np",
    "reflect_indices",
    "unpad_np",
    *_LAZY,
]
