"""Pictures of segmentations: palette and overlays (NumPy + OpenCV), Matplotlib figures
(``charts``, ``samples``: imported on first use, so ``viz.overlay`` needs no Matplotlib).
"""

from unet_lib.lazy import lazy_face
from unet_lib.viz.figures import SAVE_DPI, save_figure
from unet_lib.viz.palette import (
    ERROR_COLORS,
    IGNORE_COLOR,
    TRUTH_OUTLINE_COLOR,
    error_map,
    label_colors,
    overlay,
)

_LAZY = {
    "charts": "plot_confusion_matrix plot_history plot_per_class history_curves HistoryCurves",
    "samples": "plot_augmentations plot_prediction plot_samples",
}
__getattr__, __dir__ = lazy_face(__name__, _LAZY)

__all__ = ["SAVE_DPI", "save_figure", "IGNORE_COLOR", "TRUTH_OUTLINE_COLOR", "label_colors"]
__all__ += ["overlay", "ERROR_COLORS", "error_map", *__getattr__.names]
