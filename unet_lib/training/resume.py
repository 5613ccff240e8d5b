"""Resuming a run folder: its stored configuration wins over the defaults, and explicit
options that differ from it are refused (a new folder, or ``overwrite=True``, starts afresh)."""

from __future__ import annotations

import json
from pathlib import Path

from unet_lib.model import load_model
from unet_lib.training.callbacks import BEST_MODEL, LAST_MODEL, read_history
from unet_lib.training.config import CONFIG_FILE, TrainConfig, TrainResult

#: Resolved by the first run from the data and the machine: never compared on resume.
RESOLVED = {"labels", "channels", "num_classes", "train_stems", "val_stems", "devices",
            "class_weights"}  # fmt: skip


def config_for_resume(run_dir: Path, requested: TrainConfig) -> TrainConfig:
    """The run folder's stored configuration, if ``requested`` agrees with it on every
    option the caller set (those that differ from the defaults)."""
    stored = TrainConfig.from_dict(json.loads((run_dir / CONFIG_FILE).read_text()))
    defaults, old = TrainConfig().to_dict(), stored.to_dict()
    differing = [
        key
        for key, value in requested.to_dict().items()
        if key not in RESOLVED
        and value != defaults[key]
        and not _same_setting(key, value, old[key])
    ]
    if differing:
        raise ValueError(
            f"{run_dir} holds a run started with other settings ({', '.join(differing)}); "
            "use a new output folder, or overwrite=True (--overwrite) to start afresh."
        )
    return stored


def _same_setting(key, a, b) -> bool:
    if key in ("data", "val_data") and a is not None and b is not None:
        return Path(a).resolve() == Path(b).resolve()
    return a == b


def load_result(run_dir: Path, config: TrainConfig, state: dict) -> TrainResult:
    """The :class:`TrainResult` of a run folder: its best model (else the last)."""
    best = run_dir / BEST_MODEL
    model = load_model(best if best.exists() else run_dir / LAST_MODEL)
    return TrainResult(model, read_history(run_dir), run_dir, config, state)
