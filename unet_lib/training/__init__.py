"""Training: :func:`train` a U-Net into a resumable run folder (:mod:`.loop`), configured by
a :class:`TrainConfig` (:mod:`.config`) whose options not given are derived from the data
(:mod:`.plan`); losses, optimizers and schedules by name (:mod:`.registry`). Only ``config``
and ``registry`` (no Keras) are imported eagerly; the rest on first use."""

from __future__ import annotations

import importlib

from unet_lib.training.config import CONFIG_FILE, TrainConfig, TrainResult
from unet_lib.training.registry import LOSSES, OPTIMIZERS, SCHEDULES, make_loss

_LAZY = {  # submodule -> the public names it defines
    "callbacks": "STATE_FILE HISTORY_FILE LAST_MODEL BEST_MODEL read_state read_history "
    "RunCheckpoint NanGuard TimeBudget",
    "plan": "CPU_PIXELS_PER_STEP GPU_PIXELS_PER_STEP CPU_PATCH GPU_PATCH VALIDATION_SHARE "
    "MAX_STEPS_PER_EPOCH RARE_CLASS DatasetFingerprint TrainingPlan fingerprint "
    "looks_like_stack plan_training describe_plan describe_fingerprint",
    "loop": "train build_model make_metrics",
    "calibration": "evaluation_settings",
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names.split()}


def __getattr__(name: str):  # the lazy names: imported on first use, then kept
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    return value


def __dir__():
    return sorted(set(globals()) | set(_WHERE))


__all__ = ["CONFIG_FILE", "TrainConfig", "TrainResult", "LOSSES", "OPTIMIZERS", "SCHEDULES",
           "make_loss", *_WHERE]  # fmt: skip
