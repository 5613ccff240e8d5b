"""Prediction: whole images or blended overlap tiles, test-time augmentation, saving.

``predictor`` holds the API (:func:`predict`), ``engine`` the fast model copy, ``geometry``
the input sizes a model takes, ``tiling`` the passes over an image, ``saving`` the files.
"""

from .engine import (
    PRECISIONS,
    FoldedBatchNorm,
    Runner,
    copy_weights,
    default_precision,
    fold_plan,
    inference_copy,
    resolve_precision,
    runner,
)
from .predictor import Prediction, predict, predict_batch, predict_probabilities
from .saving import overlay_image, predict_folder, save_mask, save_overlay
from .tiling import BLEND_MODES, TTATransform, gaussian_window, linear_window, tta_transforms

__all__ = ["PRECISIONS", "default_precision", "resolve_precision", "FoldedBatchNorm"]
__all__ += ["fold_plan", "inference_copy", "copy_weights", "Runner", "runner", "BLEND_MODES"]
__all__ += ["Prediction", "gaussian_window", "linear_window", "TTATransform", "tta_transforms"]
__all__ += ["predict_probabilities", "predict", "predict_batch", "save_mask", "overlay_image"]
__all__ += ["save_overlay", "predict_folder"]
