"""unet_lib: a Keras 3 U-Net library for 2-D image segmentation.

Public names are re-exported here and imported on first use: ``import unet_lib`` is cheap,
and TensorFlow is only imported when the data layer or the workflow is used, so the model,
metrics and losses stay usable on every Keras backend.

Example:
    >>> import unet_lib
    >>> model = unet_lib.build_unet((None, None, 1), num_classes=1, base_filters=8, depth=2)
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: The value that marks ignored pixels in the integer label maps made by the data layer.
IGNORE_LABEL = -1

# public name -> the submodule that defines it
_EXPORTS = {
    # model
    "build_unet": "model",
    "valid_input_size": "model",
    "valid_output_size": "model",
    "BatchNorm": "model",
    "load_model": "model",
    "save_model": "model",
    # metrics
    "DiceMetric": "metrics",
    "IoUMetric": "metrics",
    "confusion_counts": "metrics",
    "dice_score": "metrics",
    "iou_score": "metrics",
    "per_image_scores": "metrics",
    # losses
    "DiceLoss": "losses",
    "DiceCELoss": "losses",
    "FocalLoss": "losses",
    "TverskyLoss": "losses",
    "dice_loss": "losses",
    "dice_ce_loss": "losses",
    "focal_loss": "losses",
    "tversky_loss": "losses",
    # workflow (modules are named training/evaluation so that the functions
    # unet_lib.train and unet_lib.evaluate are never shadowed by a submodule)
    "train": "training",
    "TrainConfig": "training",
    "TrainResult": "training",
    "evaluate": "evaluation",
    "evaluate_folder": "evaluation",
    "predict": "inference",
    "predict_folder": "inference",
    # self-configuration
    "fingerprint": "training",
    "plan_training": "training",
}
_SUBMODULES = (
    "model",
    "metrics",
    "losses",
    "fileio",
    "data",
    "weightmap",
    "runtime",
    "evaluation",
    "inference",
    "viz",
    "training",
    "cli",
)


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"unet_lib.{name}")
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"unet_lib.{_EXPORTS[name]}"), name)
        globals()[name] = value  # later look-ups skip __getattr__
        return value
    raise AttributeError(f"module 'unet_lib' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS) | set(_SUBMODULES))


__all__ = ["IGNORE_LABEL", *_EXPORTS]
