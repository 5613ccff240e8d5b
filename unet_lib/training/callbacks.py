"""Keras callbacks for a run folder: checkpoints, resumable state, history, NaN and time.

Besides ``config.json`` a run folder holds ``last.keras`` (with the optimizer state, after
the last finished epoch), ``best.keras``, ``state.json`` (epochs done, best score, training
seconds) and ``history.csv`` (one row per finished epoch). Every file is written atomically
and ``state.json`` last, so after a crash it describes files that exist in full: a rerun
resumes from it and loses at most the epoch that was running.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path

import keras

from unet_lib.fileio import write_json_atomic, write_text_atomic
from unet_lib.model import save_model
from unet_lib.training.registry import SCHEDULES

STATE_FILE = "state.json"
HISTORY_FILE = "history.csv"
LAST_MODEL = "last.keras"
BEST_MODEL = "best.keras"


def read_state(run_dir: str | Path) -> dict | None:
    """The run's ``state.json`` as a dict, or ``None`` for a run that has not started."""
    path = Path(run_dir) / STATE_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text())


def read_history(run_dir: str | Path) -> dict[str, list[float]]:
    """The run's ``history.csv`` as ``{column: [values per epoch]}`` (empty if absent)."""
    path = Path(run_dir) / HISTORY_FILE
    if not path.exists():
        return {}
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    number = lambda v: math.nan if v in ("", None) else float(v)  # noqa: E731
    return {key: [number(row[key]) for row in rows] for key in (rows[0] if rows else ())}


class RunCheckpoint(keras.callbacks.Callback):
    """Saves ``last.keras``, ``best.keras``, ``history.csv`` and ``state.json`` each epoch.

    Args:
        run_dir: The run folder.
        monitor: The log key that decides the best model (e.g. ``"val_dice"``); falls back
            to the training key without ``val_`` when there is no validation data.
        mode: ``"max"`` or ``"min"``.
        initial_state: The state read back when resuming (``None`` for a new run).
        is_chief: Only the chief writes files (multi-worker training).
    """

    def __init__(
        self, run_dir, *, monitor="val_dice", mode="max", initial_state=None, is_chief=True
    ):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.run_dir = Path(run_dir)
        self.monitor = monitor
        self.mode = mode
        self.is_chief = is_chief
        state = initial_state or {}
        self.best_score = state.get("best_score")
        self.best_epoch = state.get("best_epoch")
        self.epochs_done = state.get("epochs_done", 0)
        self.train_seconds = state.get("train_seconds", 0.0)
        self.history = read_history(self.run_dir) if state else {}
        # Rows past the resumed epoch belong to an epoch whose checkpoint never landed.
        self.history = {k: v[: self.epochs_done] for k, v in self.history.items()}
        self.diverged = False
        self._epoch_start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        self.train_seconds += time.perf_counter() - (self._epoch_start or time.perf_counter())
        if self.diverged or not all(_finite(v) for k, v in logs.items() if "loss" in k):
            return  # never checkpoint a diverged model
        self.epochs_done = epoch + 1
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}
        row["learning_rate"] = _current_learning_rate(self.model)
        row["seconds"] = self.train_seconds
        for key in set(self.history) | set(row):
            self.history.setdefault(key, [math.nan] * (self.epochs_done - 1))
            self.history[key].append(row.get(key, math.nan))
        score = logs.get(self.monitor, logs.get(self.monitor.removeprefix("val_")))
        improved = _finite(score) and (
            self.best_score is None
            or (score > self.best_score if self.mode == "max" else score < self.best_score)
        )
        if improved:
            self.best_score, self.best_epoch = float(score), epoch + 1
        if not self.is_chief:
            return
        if improved:
            save_model(self.model, self.run_dir / BEST_MODEL)
        save_model(self.model, self.run_dir / LAST_MODEL)
        write_text_atomic(self.run_dir / HISTORY_FILE, self._history_csv())
        self.write_state(finished=False)

    def write_state(self, *, finished: bool, stopped_reason: str | None = None):
        if not self.is_chief:
            return
        write_json_atomic(
            self.run_dir / STATE_FILE,
            {
                "epochs_done": self.epochs_done,
                "best_score": self.best_score,
                "best_epoch": self.best_epoch,
                "monitor": self.monitor,
                "train_seconds": round(self.train_seconds, 3),
                "finished": finished,
                "stopped_reason": stopped_reason,
            },
        )

    def _history_csv(self) -> str:
        keys = ["epoch"] + sorted(k for k in self.history if k != "epoch")
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(keys)
        for i in range(self.epochs_done):
            row = [_format(self.history[k][i]) for k in keys]
            row[0] = str(int(self.history["epoch"][i]))  # "3", also after a resume (3.0)
            writer.writerow(row)
        return buffer.getvalue()


class NanGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss, remembering where it happened.

    The epoch in which the loss diverged is never checkpointed (see :class:`RunCheckpoint`),
    so ``last.keras`` stays the last good model.
    """

    def __init__(self, checkpoint: RunCheckpoint | None = None):
        super().__init__()
        self.checkpoint = checkpoint
        self.where: tuple[int, int] | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not _finite(loss):
            self.where = (self._epoch + 1, batch + 1)
            if self.checkpoint is not None:
                self.checkpoint.diverged = True
            self.model.stop_training = True


class TimeBudget(keras.callbacks.Callback):
    """Trains for a wall-clock budget, the learning rate following the time used.

    Before every batch the learning rate is the ``schedule`` (a name in
    :data:`~unet_lib.training.registry.SCHEDULES`, the rule epochs use too) read at the
    fraction of the budget used, as if the budget were :attr:`STEPS` steps of which the first
    ``warmup_fraction`` warm up. Training stops after the batch that crosses the budget; that
    epoch is finished early, validated and checkpointed as usual.

    Args:
        budget_seconds: The budget.
        peak_learning_rate: The learning rate after warm-up.
        schedule: ``"cosine"`` or ``"constant"``.
        warmup_fraction: Share of the budget used for warm-up.
        seconds_used: Training seconds already spent (when resuming).
    """

    STEPS = 10_000

    def __init__(
        self, budget_seconds, peak_learning_rate, *, schedule="cosine", warmup_fraction=0.05,
        seconds_used=0.0,
    ):  # fmt: skip
        super().__init__()
        if budget_seconds <= 0:
            raise ValueError(f"the time budget must be positive, got {budget_seconds} s")
        self.budget_seconds = float(budget_seconds)
        self.peak_learning_rate = float(peak_learning_rate)
        self.schedule = schedule
        self.rule = SCHEDULES[schedule](
            self.peak_learning_rate, self.STEPS, round(warmup_fraction * self.STEPS)
        )
        self.seconds_used = float(seconds_used)
        self.exhausted = False
        self._start = None

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter() - self.seconds_used

    def fraction_used(self) -> float:
        return min(1.0, (time.perf_counter() - self._start) / self.budget_seconds)

    def learning_rate_at(self, fraction: float) -> float:
        """The schedule's learning rate after ``fraction`` of the budget."""
        rate = self.rule(fraction * self.STEPS) if callable(self.rule) else self.rule
        return float(keras.ops.convert_to_numpy(rate))

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate.assign(self.learning_rate_at(self.fraction_used()))

    def on_train_batch_end(self, batch, logs=None):
        if self.fraction_used() >= 1.0:
            self.exhausted = True
            self.model.stop_training = True


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _format(value) -> str:
    return "" if isinstance(value, float) and math.isnan(value) else repr(value)


def _current_learning_rate(model) -> float:
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return math.nan
    rate = optimizer.learning_rate  # the current value, schedules included
    return float(keras.ops.convert_to_numpy(rate))
