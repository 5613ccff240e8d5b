"""The data layer: dataset folders, the built-in synthetic data, augmentation and tf.data.

``labels``, ``files``, ``folder``, ``splits``, ``synthetic``, ``samples`` (the bundled real
data) and ``padding`` use NumPy and OpenCV; the TensorFlow names (``make_dataset``,
``AugmentConfig``, ...) are imported on first use, so ``import unet_lib.data`` never
imports TensorFlow.

Example:
    >>> data = load_dataset(ensure_default_dataset("binary"))  # doctest: +SKIP
"""

from unet_lib.lazy import lazy_face

from .files import (
    IMAGE_EXTENSIONS,
    Pair,
    count_pages,
    find_pairs,
    list_images,
    page_stems,
    read_image,
    read_labels,
    read_mask,
)
from .folder import (
    DatasetSummary,
    LoadedDataset,
    load_dataset,
    load_label_mapping,
    validate_dataset,
)
from .labels import DatasetError, LabelMapping, infer_label_mapping, pack_rgb
from .padding import as_pair, pad_to_multiple_np, reflect_indices, unpad_np
from .samples import SAMPLES, check_manifest, sample_dataset
from .splits import split_dataset
from .synthetic import default_data_dir, ensure_default_dataset, make_synthetic_dataset

# the TensorFlow parts, imported on first use
_LAZY = {"augment": "AugmentConfig augment_pair preview_augmentations", "pipeline": "make_dataset"}
__getattr__, __dir__ = lazy_face(__name__, _LAZY)

__all__ = ["IMAGE_EXTENSIONS", "Pair", "count_pages", "find_pairs", "list_images", "read_image"]
__all__ += ["read_labels", "read_mask", "DatasetSummary", "LoadedDataset", "load_dataset"]
__all__ += ["load_label_mapping", "validate_dataset", "DatasetError", "LabelMapping"]
__all__ += ["infer_label_mapping", "pack_rgb", "page_stems"]
__all__ += ["as_pair", "pad_to_multiple_np", "reflect_indices", "unpad_np", "split_dataset"]
__all__ += ["default_data_dir", "ensure_default_dataset", "make_synthetic_dataset"]
__all__ += ["SAMPLES", "check_manifest", "sample_dataset"]
__all__ += __getattr__.names
