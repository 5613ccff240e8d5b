"""Evaluation: score a model or predicted masks (Dice, IoU, accuracy, Rand error), report it.

``evaluator`` (evaluate a model or a folder), ``scoring`` (counts -> scores), ``randerror``
and ``challenge`` (the ISBI 2012 Rand error and the challenge's own scores), ``report``
(NaN-safe JSON and text). NumPy, OpenCV and Keras ops; inference is imported on first use.
"""

from .challenge import THRESHOLDS, cell_fscore, challenge_scores, rand_pair_counts
from .evaluator import evaluate, evaluate_folder
from .randerror import adapted_rand, cell_segments, rand_error, segment_overlaps
from .report import format_report, per_image_table, save_json, to_jsonable
from .scoring import BACKGROUND, Scorer, foreground_classes, score_label_maps

__all__ = ["THRESHOLDS", "cell_fscore", "challenge_scores", "rand_pair_counts"]
__all__ += ["evaluate", "evaluate_folder"]
__all__ += ["adapted_rand", "cell_segments", "rand_error", "segment_overlaps"]
__all__ += ["format_report", "per_image_table", "save_json", "to_jsonable"]
__all__ += ["BACKGROUND", "Scorer", "foreground_classes", "score_label_maps"]
