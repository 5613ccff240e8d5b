"""FACE_DOC_evaluation"""

from __future__ import annotations

from unet_lib.evaluation.challenge import (
    THRESHOLDS,
    cell_fscore,
    challenge_scores,
    rand_pair_counts,
)
from unet_lib.evaluation.evaluator import (
    evaluate,
    evaluate_folder,
)
from unet_lib.evaluation.randerror import (
    adapted_rand,
    cell_segments,
    rand_error,
)
from unet_lib.evaluation.report import (
    format_report,
    per_image_table,
    save_json,
    to_jsonable,
)
from unet_lib.evaluation.scoring import (
    foreground_classes,
    score_label_maps,
)

__all__ = [
    "adapted_rand",
    "cell_segments",
    "rand_error",
    "THRESHOLDS",
    "challenge_scores",
    "cell_fscore",
    "rand_pair_counts",
    "format_report",
    "per_image_table",
    "save_json",
    "to_jsonable",
    "foreground_classes",
    "score_label_maps",
    "evaluate",
    "evaluate_folder",
]
