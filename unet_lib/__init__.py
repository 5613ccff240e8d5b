"""unet_lib: a Keras 3 U-Net library for 2-D image segmentation.

The common public names are re-exported here and imported on first use (:mod:`.lazy`):
``import unet_lib`` loads neither TensorFlow nor Keras, so the model, metrics and losses stay
usable on every Keras backend. Each sub-package's ``__init__`` lists the rest.

Example:
    >>> import unet_lib
    >>> model = unet_lib.build_unet((None, None, 1), num_classes=1, base_filters=8, depth=2)
"""

from unet_lib.lazy import lazy_face

#: The one place the version is written: pyproject.toml reads it (``[tool.setuptools.dynamic]``),
#: ``python -m unet_lib --version`` prints it.
__version__ = "0.1.0"

#: The value that marks ignored pixels in the integer label maps made by the data layer.
IGNORE_LABEL = -1

_EXPORTS = {  # sub-package -> the names re-exported here
    "model": "build_unet valid_input_size valid_output_size BatchNorm load_model save_model",
    "metrics": "DiceMetric IoUMetric confusion_counts dice_score iou_score per_image_scores",
    "losses": "DiceLoss DiceCELoss FocalLoss TverskyLoss dice_loss dice_ce_loss focal_loss "
    "tversky_loss",
    "training": "train TrainConfig TrainResult fingerprint plan_training",
    "evaluation": "evaluate evaluate_folder",
    "inference": "predict predict_folder",
}
_SUBMODULES = ("targets", "model", "metrics", "losses", "fileio", "data", "weightmap", "runtime",
               "evaluation", "inference", "viz", "training", "cli")  # fmt: skip
__getattr__, __dir__ = lazy_face(__name__, _EXPORTS, _SUBMODULES)
__all__ = ["IGNORE_LABEL", *__getattr__.names]
