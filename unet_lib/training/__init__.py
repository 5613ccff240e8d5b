"""Training: :func:`train` a U-Net into a resumable run folder (:mod:`.loop`), configured by
a :class:`TrainConfig` (:mod:`.config`) whose options not given are derived from the data
(:mod:`.plan`); losses, optimizers and schedules by name (:mod:`.registry`). Only ``config``
and ``registry`` (no Keras) are imported eagerly; the rest on first use."""

from unet_lib.lazy import lazy_face

from .config import CONFIG_FILE, TrainConfig, TrainResult
from .registry import LOSSES, OPTIMIZERS, SCHEDULES, make_loss

_LAZY = {  # submodule -> the public names it defines
    "runfolder": "STATE_FILE HISTORY_FILE LAST_MODEL BEST_MODEL LOCK_FILE RunLock "
    "RunLockedError commit_epoch recover staging_dir",
    "callbacks": "read_state read_history RunCheckpoint NanGuard TimeBudget BudgetProgbar "
    "CURVES_FILE TENSORBOARD_DIR TrainingCurves EarlyStop check_tensorboard "
    "tensorboard_callback",
    "plan": "CPU_PIXELS_PER_STEP GPU_PIXELS_PER_STEP CPU_PATCH GPU_PATCH VALIDATION_SHARE "
    "MAX_STEPS_PER_EPOCH RARE_CLASS CANONICAL MANY_CLASSES DIM_RANGE DatasetFingerprint "
    "TrainingPlan fingerprint layout_information looks_like_stack plan_training describe_plan "
    "describe_fingerprint",
    "loop": "train build_model make_metrics",
    "resume": "RESOLVED config_for_resume check_resumed_labels check_data_labels "
    "check_same_mapping load_result",
    "calibration": "evaluation_settings trained_tta",
}
__getattr__, __dir__ = lazy_face(__name__, _LAZY)

__all__ = ["CONFIG_FILE", "TrainConfig", "TrainResult", "LOSSES", "OPTIMIZERS", "SCHEDULES"]
__all__ += ["make_loss", *__getattr__.names]
