"""Keras callbacks for a run folder: ``last.keras`` (with the optimizer state), ``best.keras``,
``history.csv`` and ``state.json``, committed together each epoch (:mod:`.runfolder`: after
a crash a rerun resumes from the last committed epoch, losing at most the running one); NaN;
a frozen-encoder warm-up; time budget; ``curves.png``; early stopping; TensorBoard (checked
before training starts)."""

import csv
import importlib.util
import io
import math
import time
import warnings
from pathlib import Path

import keras

from unet_lib.checks import is_int
from unet_lib.fileio import read_json, write_json_atomic
from unet_lib.model import save_model
from unet_lib.training.registry import SCHEDULES
from unet_lib.training.runfolder import (
    BEST_MODEL,
    HISTORY_FILE,
    LAST_MODEL,
    STATE_FILE,
    commit_epoch,
)

CURVES_FILE = "curves.png"
TENSORBOARD_DIR = "tensorboard"


def read_state(run_dir: str | Path) -> dict | None:
    """The run's ``state.json`` as a dict, or ``None`` for a run that has not started."""
    path = Path(run_dir) / STATE_FILE
    fix = "restore it from a backup, or start the run again with --overwrite"
    return read_json(path, fix) if path.exists() else None


def read_history(run_dir: str | Path) -> dict[str, list[float]]:
    """The run's ``history.csv`` as ``{column: [values per epoch]}`` (empty if absent)."""
    path = Path(run_dir) / HISTORY_FILE
    rows = list(csv.DictReader(io.StringIO(path.read_text(), newline=""))) if path.exists() else []
    number = lambda v: math.nan if v in ("", None) else float(v)  # noqa: E731
    return {key: [number(row[key]) for row in rows] for key in (rows[0] if rows else ())}


class RunCheckpoint(keras.callbacks.Callback):
    """Saves ``last.keras``, ``best.keras``, ``history.csv`` and ``state.json`` each epoch;
    ``monitor`` (``mode`` ``"max"`` or ``"min"``; without ``val_`` when there is no validation)
    decides the best; ``initial_state``: a resumed run's; only the chief writes files."""

    def __init__(
        self, run_dir, *, monitor="val_dice", mode="max", initial_state=None, is_chief=True
    ):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.run_dir, self.monitor = Path(run_dir), monitor
        self.mode, self.is_chief = mode, is_chief
        state = initial_state or {}
        self.best_score, self.best_epoch = state.get("best_score"), state.get("best_epoch")
        self.epochs_done = state.get("epochs_done", 0)
        self.train_seconds = state.get("train_seconds", 0.0)
        # rows past the resumed epoch belong to an epoch whose checkpoint never landed
        history = read_history(self.run_dir) if state else {}
        self.history = {k: v[: self.epochs_done] for k, v in history.items()}
        self.diverged, self._epoch_start = False, None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        self.train_seconds += time.perf_counter() - (self._epoch_start or time.perf_counter())
        if self.diverged or not all(_finite(v) for k, v in logs.items() if "loss" in k):
            return  # never checkpoint a diverged model
        self.epochs_done = epoch + 1
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}
        row.update(learning_rate=_current_learning_rate(self.model), seconds=self.train_seconds)
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
        writers = {}  # one commit: these files and state.json, or none of them
        if improved:
            writers[BEST_MODEL] = lambda path: save_model(self.model, path, portable=True)
        writers[LAST_MODEL] = lambda path: save_model(self.model, path)
        writers[HISTORY_FILE] = lambda path: path.write_text(self._history_csv())
        commit_epoch(self.run_dir, self.epochs_done, writers, self.state(finished=False))

    def state(self, *, finished: bool, stopped_reason: str | None = None) -> dict:
        """The ``state.json`` content for the epochs done so far."""
        state = {k: getattr(self, k) for k in ("epochs_done", "best_score", "best_epoch")}
        state.update(monitor=self.monitor, train_seconds=round(self.train_seconds, 3))
        return {**state, "finished": finished, "stopped_reason": stopped_reason}

    def write_state(self, *, finished: bool, stopped_reason: str | None = None):
        if self.is_chief:
            state = self.state(finished=finished, stopped_reason=stopped_reason)
            write_json_atomic(self.run_dir / STATE_FILE, state)

    def _history_csv(self) -> str:
        keys = sorted(k for k in self.history if k != "epoch")
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["epoch", *keys])
        for i in range(self.epochs_done):  # epoch "3", also after a resume (3.0)
            epoch = str(int(self.history["epoch"][i]))
            writer.writerow([epoch, *(_format(self.history[k][i]) for k in keys)])
        return buffer.getvalue()


class EncoderWarmup(keras.callbacks.Callback):
    """Keeps ``layers`` (a backbone: :func:`~unet_lib.model.backbone_layers`) fixed for the
    first ``epochs`` epochs, so that the new decoder learns before the encoder moves.

    The optimizer is built for every weight before the first epoch; each frozen epoch ends
    with the layers trainable again, before the epoch's commit, so every checkpoint is the
    model after the warm-up and a resumed run loads it with all its optimizer state. The
    training step is retraced only when the frozen state changes. Place it before the
    :class:`RunCheckpoint`.
    """

    def __init__(self, layers, epochs: int):
        super().__init__()
        self.layers, self.epochs, self._traced_frozen = list(layers), int(epochs), False

    def _set_trainable(self, trainable: bool) -> None:
        for layer in self.layers:
            layer.trainable = trainable

    def on_train_begin(self, logs=None):
        # Keras builds the optimizer at the first traced step, for the weights trainable
        # then: a frozen first epoch would leave it unable to update the backbone afterwards
        self._set_trainable(True)
        optimizer = self.model.optimizer
        if not optimizer.built:
            optimizer.build(self.model.trainable_variables)

    def on_epoch_begin(self, epoch, logs=None):
        frozen = epoch < self.epochs
        self._set_trainable(not frozen)
        if frozen != self._traced_frozen:
            self.model.make_train_function(force=True)
            self._traced_frozen = frozen

    def on_epoch_end(self, epoch, logs=None):
        self._set_trainable(True)


class NanGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss, remembering where (``where``: epoch,
    batch); ``checkpoint`` then skips that epoch, so ``last.keras`` stays the last good model."""

    def __init__(self, checkpoint: RunCheckpoint | None = None):
        super().__init__()
        self.checkpoint, self._epoch = checkpoint, 0
        self.where: tuple[int, int] | None = None

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
    """Trains for ``budget_seconds`` (``seconds_used`` already spent, when resuming).

    Before every batch the learning rate is the ``schedule`` (``"cosine"`` or ``"constant"``
    from :data:`~unet_lib.training.registry.SCHEDULES`, the rule epochs use too) with peak
    ``peak_learning_rate``, read at the fraction of the budget used as if the budget were
    :attr:`STEPS` steps, the first ``warmup_fraction`` warming up. Training stops after the
    batch that crosses the budget; that epoch is validated and checkpointed as usual.
    """

    STEPS = 10_000

    def __init__(
        self, budget_seconds, peak_learning_rate, *, schedule="cosine", warmup_fraction=0.05,
        seconds_used=0.0,
    ):  # fmt: skip
        super().__init__()
        if budget_seconds <= 0:
            raise ValueError(f"the time budget must be positive, got {budget_seconds} s")
        self.budget_seconds, self.schedule = float(budget_seconds), schedule
        self.peak_learning_rate = peak = float(peak_learning_rate)
        self.rule = SCHEDULES[schedule](peak, self.STEPS, round(warmup_fraction * self.STEPS))
        self.seconds_used, self.exhausted, self._start = float(seconds_used), False, None

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter() - self.seconds_used

    def fraction_used(self) -> float:
        return min(1.0, (time.perf_counter() - self._start) / self.budget_seconds)

    def learning_rate_at(self, fraction: float) -> float:
        """The schedule's learning rate after ``fraction`` of the budget."""
        return _number(self.rule(fraction * self.STEPS) if callable(self.rule) else self.rule)

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate.assign(self.learning_rate_at(self.fraction_used()))

    def on_train_batch_end(self, batch, logs=None):
        if self.fraction_used() >= 1.0:
            self.exhausted = self.model.stop_training = True


class BudgetProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar for a time-budgeted run, whose epoch count is only an upper bound:
    each epoch opens with ``Epoch 3 (4.2 of 25 min used)`` instead of ``Epoch 3/1000000``.
    Passed to ``fit`` among the callbacks, it replaces Keras' own bar."""

    def __init__(self, budget: TimeBudget):
        super().__init__()
        self.budget = budget

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs = 1  # the parent's "Epoch e/E" line stays silent
        super().on_epoch_begin(epoch, logs)
        if self.verbose:
            used = self.budget.fraction_used() * self.budget.budget_seconds / 60
            print(f"Epoch {epoch + 1} ({used:.1f} of {self.budget.budget_seconds / 60:g} min used)")


class TrainingCurves(keras.callbacks.Callback):
    """Redraws ``RUN/curves.png`` after the epochs that ``checkpoint`` recorded: loss and Dice,
    train and validation, the epoch of ``best.keras`` starred, from the checkpoint's history
    (what ``history.csv`` holds); at most once per ``min_seconds`` (a drawing takes about a
    second, which short epochs under a time budget would feel) and at the end of training.
    Only the chief draws; Matplotlib is imported at the first drawing; a failure to draw (no
    Matplotlib, a full disk) never stops training: it warns once and draws no more. Goes
    after ``checkpoint`` in the callback list.
    """

    METRICS = ("loss", "dice")

    def __init__(self, checkpoint: RunCheckpoint, path=None, min_seconds: float = 60.0):
        super().__init__()
        self.checkpoint, self.min_seconds = checkpoint, min_seconds
        self.path = Path(path) if path is not None else checkpoint.run_dir / CURVES_FILE
        self.failed, self._drawn, self._last = False, 0, -math.inf

    def on_epoch_end(self, epoch, logs=None):
        if time.monotonic() - self._last >= self.min_seconds:
            self._update()

    def on_train_end(self, logs=None):
        self._update()

    def _update(self) -> None:
        done = self.checkpoint.epochs_done
        if self.failed or not self.checkpoint.is_chief or done == self._drawn:
            return  # nothing new (a diverged epoch is not recorded)
        try:
            self.draw()
            self._drawn, self._last = done, time.monotonic()
        except Exception as error:  # a picture is never worth a stopped run
            self.failed = True
            warnings.warn(
                f"train: could not draw {self.path} ({type(error).__name__}: {error}); "
                "training goes on without it",
                RuntimeWarning,
                stacklevel=2,
            )

    def draw(self) -> Path:
        """Writes the picture (atomically) from the checkpoint's history; returns its path."""
        import matplotlib.pyplot as plt

        from unet_lib import viz

        history = self.checkpoint.history
        metrics = [m for m in self.METRICS if m in history or f"val_{m}" in history]
        c = self.checkpoint
        fig = viz.plot_history(history, metrics=metrics, monitor=c.monitor, mode=c.mode)
        try:
            viz.save_figure(fig, self.path)
        finally:
            plt.close(fig)
        return self.path


class EarlyStop(keras.callbacks.Callback):
    """Stops training after ``patience`` epochs in a row without a better score of the metric
    that keeps ``best.keras`` (``checkpoint.monitor``: ``val_dice``, higher is better), like
    ``keras.callbacks.EarlyStopping(patience=...)``; counted from ``checkpoint.best_epoch``,
    which ``state.json`` keeps, so a resumed run goes on counting where it stopped.
    ``stopped``: ``True`` once it stopped training. Goes after ``checkpoint``.

    Example: patience 2, best score at epoch 3, epochs 4 and 5 no better: stops after 5.
    """

    def __init__(self, checkpoint: RunCheckpoint, patience: int, *, verbose: int = 0):
        super().__init__()
        if not is_int(patience) or patience < 1:
            raise ValueError(f"early_stopping (--early-stopping) must be >= 1, got {patience!r}")
        self.checkpoint, self.patience, self.verbose = checkpoint, int(patience), verbose
        self.stopped = False

    def stale_epochs(self) -> int:
        """Epochs recorded since the best one (all of them before a finite score)."""
        return self.checkpoint.epochs_done - (self.checkpoint.best_epoch or 0)

    def due(self) -> bool:
        """Whether training should stop now (also true of a resumed run that had stopped)."""
        return self.stale_epochs() >= self.patience

    def on_epoch_end(self, epoch, logs=None):
        if self.checkpoint.diverged or not self.due():
            return
        self.stopped = self.model.stop_training = True
        if self.verbose:
            c = self.checkpoint
            best = "no finite score yet" if c.best_epoch is None else (
                f"best {c.best_score:.4f} at epoch {c.best_epoch}"
            )  # fmt: skip
            print(
                f"train: early stopping after epoch {c.epochs_done}: {c.monitor} has not "
                f"improved for {self.stale_epochs()} epochs ({best})"
            )


def check_tensorboard() -> None:
    """Raises, before any training, when TensorBoard logs cannot be written: Keras' callback
    needs the ``tensorboard`` package (TensorFlow 2.21 no longer installs it) and would fail
    only after the first epoch started."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ModuleNotFoundError(
            "--tensorboard (tensorboard=True) needs the tensorboard package, which is not "
            "installed: pip install tensorboard (or pip install 'unet_lib[tensorflow]')"
        )


def tensorboard_callback(run_dir) -> keras.callbacks.Callback:
    """Keras' TensorBoard callback writing to ``RUN/tensorboard`` (:func:`check_tensorboard`
    first); view the logs with ``tensorboard --logdir RUN/tensorboard``."""
    check_tensorboard()
    return keras.callbacks.TensorBoard(str(Path(run_dir) / TENSORBOARD_DIR))


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _format(value) -> str:
    return "" if isinstance(value, float) and math.isnan(value) else repr(value)


def _current_learning_rate(model) -> float:
    optimizer = getattr(model, "optimizer", None)  # its rate now, schedules included
    return math.nan if optimizer is None else _number(optimizer.learning_rate)


def _number(tensor) -> float:
    return float(keras.ops.convert_to_numpy(tensor))
