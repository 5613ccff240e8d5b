"""FACE_DOC_inference"""

from __future__ import annotations

from unet_lib.inference.engine import (
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
from unet_lib.inference.predictor import (
    BLEND_MODES,
    Prediction,
    TTATransform,
    gaussian_window,
    linear_window,
    overlay_image,
    predict,
    predict_batch,
    predict_folder,
    predict_probabilities,
    save_mask,
    save_overlay,
    tta_transforms,
)

__all__ = [
    "PRECISIONS",
    "default_precision",
    "resolve_precision",
    "FoldedBatchNorm",
    "fold_plan",
    "inference_copy",
    "copy_weights",
    "Runner",
    "runner",
    "BLEND_MODES",
    "Prediction",
    "gaussian_window",
    "linear_window",
    "TTATransform",
    "tta_transforms",
    "predict_probabilities",
    "predict",
    "predict_batch",
    "save_mask",
    "overlay_image",
    "save_overlay",
    "predict_folder",
]
