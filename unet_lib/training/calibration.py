"""After training, the best model predicts the validation images with and without test-time
augmentation (8 flips / rotations): the higher pooled foreground Dice wins, and for binary
models the threshold in 0.30, 0.35, ..., 0.70 that maximises it (ties: nearest 0.5)."""

from pathlib import Path

import numpy as np

from unet_lib.fileio import write_json_atomic
from unet_lib.targets import label_confusion_counts
from unet_lib.training.config import CONFIG_FILE, is_tta_setting
from unet_lib.training.datasets import validation_set
from unet_lib.training.runfolder import BEST_MODEL

THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.30, 0.701, 0.05))


def evaluation_settings(config: dict) -> tuple[bool | int, float]:
    """``(tta, threshold)`` a run chose on its validation images, from its ``config.json`` as a
    dict (``{"eval_tta": True, "eval_threshold": 0.55}``: ``(True, 0.55)``; ``tta`` may be a
    count of transforms, ``2``: left-right flips); ``False`` and ``0.5`` where missing or
    ``"auto"`` (no validation images, or a run from before the choice)."""
    threshold, tta = config.get("eval_threshold", "auto"), config.get("eval_tta", False)
    tta = tta if is_tta_setting(tta) and tta != "auto" else False
    return tta, 0.5 if threshold == "auto" else float(threshold)


def foreground_counts(p: np.ndarray, mask: np.ndarray, threshold: float) -> np.ndarray:
    """``(3, C-1)`` tp, fp, fn per foreground class of one image's probabilities ``p``
    (``(H, W, C)``; ``C = 1``: label 1 where ``p >= threshold``, else the argmax); ignored
    (negative) labels count nowhere."""
    binary = p.shape[-1] == 1
    pred = (p[..., 0] >= threshold) if binary else np.argmax(p, axis=-1)
    return np.stack(label_confusion_counts(mask, pred, 2 if binary else p.shape[-1]))[:, 1:]


def mean_dice(counts: np.ndarray) -> float:
    """Mean over foreground classes of ``2 tp / (2 tp + fp + fn)``; classes absent from both
    truth and prediction are left out (0 when all are)."""
    tp, fp, fn = counts
    denominator = 2 * tp + fp + fn
    present = denominator > 0
    return float(np.mean(2 * tp[present] / denominator[present])) if present.any() else 0.0


def trained_tta(config) -> bool | int:
    """The test-time augmentation that matches training's: all 8 flips / turns (``True``),
    flips only (4), left-right flips only (2) or none (``False``), as ``config.augment`` has
    them (``inference.tta_transforms`` takes the count)."""
    augment = config.augment_config()
    if augment is None or not (augment.flip or augment.rotate90):
        return False
    return True if augment.rotate90 else 4 if augment.flip_vertical else 2


def choose_evaluation(config, run_dir: Path, dataset, verbose: int) -> None:
    """Decides ``eval_tta`` / ``eval_threshold`` where ``"auto"`` with the run's best model
    on its validation images, and writes them (and the reason) to ``config.json``."""
    from unet_lib.inference import predict_probabilities
    from unet_lib.model import load_model

    model, val = load_model(run_dir / BEST_MODEL), validation_set(config, dataset)
    thresholds = THRESHOLDS if config.num_classes == 1 else (0.5,)
    choices = (False, trained_tta(config)) if config.eval_tta == "auto" else (config.eval_tta,)
    scores = {}
    for tta in choices:
        counts = dict.fromkeys(thresholds, 0)
        for image, mask in zip(val.images, val.masks, strict=True):
            p = predict_probabilities(model, image, tta=tta)
            for t in thresholds:
                counts[t] = counts[t] + foreground_counts(p, mask, t)
        scores.update({(tta, t): mean_dice(c) for t, c in counts.items()})
    (tta, threshold), best = max(scores.items(), key=lambda kv: (kv[1], -abs(kv[0][1] - 0.5)))
    if config.eval_tta == "auto":
        config.eval_tta = tta
    if config.eval_threshold == "auto":
        config.eval_threshold = threshold if config.num_classes == 1 else 0.5
    config.plan.setdefault("derived", {})["evaluation"] = (
        f"validation Dice {best:.4f} with tta={tta}, threshold={threshold:g} "
        f"({scores[(choices[0], 0.5)]:.4f} with tta={choices[0]} at 0.5)"
    )
    write_json_atomic(run_dir / CONFIG_FILE, config.to_dict())
    if verbose:
        print(f"train: evaluation settings: tta={config.eval_tta}, threshold="
              f"{config.eval_threshold} ({config.plan['derived']['evaluation']})")  # fmt: skip
