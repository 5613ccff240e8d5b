"""FACE_DOC_viz"""

from __future__ import annotations

from unet_lib.viz.charts import (
    plot_confusion_matrix,
    plot_history,
    plot_per_class,
)
from unet_lib.viz.figures import (
    SAVE_DPI,
    save_figure,
)
from unet_lib.viz.palette import (
    IGNORE_COLOR,
    TRUTH_OUTLINE_COLOR,
    label_colors,
    overlay,
)
from unet_lib.viz.samples import (
    plot_augmentations,
    plot_prediction,
    plot_samples,
)

__all__ = [
    "SAVE_DPI",
    "save_figure",
    "IGNORE_COLOR",
    "TRUTH_OUTLINE_COLOR",
    "label_colors",
    "overlay",
    "plot_confusion_matrix",
    "plot_history",
    "plot_per_class",
    "plot_augmentations",
    "plot_prediction",
    "plot_samples",
]
