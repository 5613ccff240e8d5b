"""train(): from a dataset folder to a run folder, resumable, reproducible on request.

One call builds the model, the ``tf.data`` pipelines, the loss, the optimiser and its
learning-rate schedule, trains, and leaves a run folder that holds everything needed to
rebuild, resume and evaluate:

* ``config.json``  the resolved configuration (model, data, split, loss, schedule, device
  settings), enough to rebuild the model and the pipeline;
* ``history.csv``, ``best.keras`` (best validation Dice), ``last.keras``, ``state.json``
  (see :mod:`unet_lib.training.callbacks`).

Rerunning the same call on the same folder after a crash or Ctrl-C resumes after the last
finished epoch; on a finished run it returns the stored result without training.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from unet_lib import IGNORE_LABEL, losses, metrics, runtime
from unet_lib.data import folder, pipeline
from unet_lib.data.augment import AugmentConfig
from unet_lib.fileio import write_json_atomic
from unet_lib.model.unet import build_unet
from unet_lib.runtime import workers
from unet_lib.training import callbacks as run_callbacks

CONFIG_FILE = "config.json"
LOSSES = ("dice_ce", "dice", "ce", "focal", "tversky")
SCHEDULES = ("constant", "cosine", "plateau")
OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass
class TrainConfig:
    """Every choice of a training run; written to ``config.json`` as it was resolved."""

    # data
    data: str | None = None
    val_data: str | None = None
    val_fraction: float = 0.2
    split: str = "random"  # or "contiguous": the last block of sorted stems validates
    labels: dict | None = None
    channels: int | None = None
    train_stems: list[str] = field(default_factory=list)
    val_stems: list[str] = field(default_factory=list)
    # model
    num_classes: int | None = None  # model outputs; None: 1 for binary data, else K
    depth: int = 4
    base_filters: int = 32
    convs_per_level: int = 2
    batch_norm: bool = True
    dropout: float = 0.0
    upsampling: str = "transpose"
    padding: str = "same"
    # objective
    loss: str = "dice_ce"
    class_weights: str | list[float] | None = None  # None, "balanced" or one per class
    weight_map: bool = False  # the U-Net paper's border weight map
    weight_map_w0: float = 10.0
    weight_map_sigma: float = 5.0
    # optimisation
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup_epochs: int = 1
    epochs: int = 50
    time_budget_minutes: float | None = None
    steps_per_epoch: int | None = None
    batch_size: int = 8
    patch_size: int | None = None
    foreground_fraction: float = 0.0  # share of patches centred on a foreground pixel
    augment: dict | bool = True
    # run
    seed: int = 0
    deterministic: bool = False
    precision: str = "auto"
    jit_compile: str | bool = "auto"
    devices: dict = field(default_factory=dict)
    # self-configuration (unet_lib.training.plan): derive every option not given explicitly
    auto_configure: bool = True
    eval_tta: bool | str = "auto"  # "auto": TTA at evaluation if it helps on validation
    eval_threshold: float | str = "auto"  # binary decision threshold; "auto": best on val
    plan: dict = field(default_factory=dict)  # fingerprint, derived options, reasons

    def __post_init__(self):
        for name in ("data", "val_data"):  # Path objects are welcome; config.json holds text
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                setattr(self, name, os.fspath(value))
        _check_choice("loss", self.loss, LOSSES)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("split", self.split, ("random", "contiguous"))
        if self.time_budget_minutes is None and self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.time_budget_minutes is not None and self.time_budget_minutes <= 0:
            raise ValueError(
                f"time_budget_minutes must be positive, got {self.time_budget_minutes}"
            )
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.eval_tta not in (True, False, "auto"):
            raise ValueError(f"eval_tta must be True, False or 'auto', got {self.eval_tta!r}")
        if self.eval_threshold != "auto" and not 0 < float(self.eval_threshold) < 1:
            raise ValueError(f"eval_threshold must be in (0, 1) or 'auto', got "
                             f"{self.eval_threshold!r}")  # fmt: skip
        if self.schedule == "plateau" and self.time_budget_minutes is not None:
            raise ValueError(
                "schedule='plateau' cannot follow a time budget; use 'cosine' or 'constant'"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown training options: {sorted(unknown)}")
        return cls(**values)

    def augment_config(self) -> AugmentConfig | None:
        if self.augment is True:
            return AugmentConfig()
        if not self.augment:
            return None
        return AugmentConfig.from_dict(self.augment)


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    model: keras.Model  # the best model by validation Dice
    history: dict[str, list[float]]
    run_dir: Path
    config: TrainConfig
    state: dict


def train(
    data,
    out_dir,
    *,
    verbose: int = 1,
    tensorboard: bool = False,
    overwrite=False,
    callbacks: list | None = None,
    devices=None,
    **options,
) -> TrainResult:
    """Train a U-Net on a dataset folder into a run folder.

    Args:
        data: A dataset folder (``images/``, ``masks/``, optional ``dataset.json``).
        out_dir: The run folder; created if absent, resumed if it holds an unfinished run.
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.
        tensorboard: Also write TensorBoard logs to ``out_dir/tensorboard``.
        overwrite: Start afresh even if ``out_dir`` holds a run.
        callbacks: Extra Keras callbacks, run after the library's own.
        devices: Which devices to train on (default: ``UNET_DEVICES`` from the environment,
            else every GPU, else the CPU): ``"cpu:2"``, ``"gpu:0,1"``, ... (see
            :func:`unet_lib.runtime.devices.select_devices`). Several devices train with
            ``MirroredStrategy``; ``TF_CONFIG`` naming a cluster trains with
            ``MultiWorkerMirroredStrategy`` (every worker runs the same call on the same,
            shared run folder; only the chief writes it). ``batch_size`` is per replica.
        **options: Any :class:`TrainConfig` field (``epochs``, ``batch_size``, ``loss``,
            ``base_filters``, ``time_budget_minutes``, ``seed``, ...).

    Returns:
        A :class:`TrainResult` with the best model, the history and the run folder.

    Raises:
        unet_lib.data.DatasetError: If the dataset has problems (all of them listed).
        FloatingPointError: If the loss became NaN; ``last.keras`` keeps the last good model.
        ValueError: On bad options, or a run folder started with different settings.

    Example:
        >>> result = train("data/generated/membranes", "runs/demo", epochs=5)  # doctest: +SKIP
        >>> result.history["val_dice"][-1]  # doctest: +SKIP
    """
    run_dir = Path(out_dir)
    config = TrainConfig(data=str(data), **options)
    state = None if overwrite else run_callbacks.read_state(run_dir)
    if state is not None:
        config = _config_for_resume(run_dir, config)
        if state.get("finished"):
            if verbose:
                print(f"train: {run_dir} already finished; returning its best model")
            return _result(run_dir, config, state)

    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        runtime.enable_determinism()
    dataset = None
    if state is None and config.auto_configure:
        dataset = folder.load_dataset(config.data, labels=config.labels, channels=config.channels)
        _apply_plan(config, dataset, set(options), devices, verbose)
    elif state is None:  # the fixed defaults: plain evaluation unless asked otherwise
        config.eval_tta = False if config.eval_tta == "auto" else config.eval_tta
        config.eval_threshold = 0.5 if config.eval_threshold == "auto" else config.eval_threshold
    settings = runtime.device_settings(
        devices,
        per_device_batch_size=config.batch_size,
        precision=config.precision,
        jit_compile=config.jit_compile,
    )
    if state is None and config.auto_configure:
        _per_replica_epoch(config, settings.num_replicas)
    chief = runtime.is_chief(settings)
    if settings.num_workers > 1 and config.time_budget_minutes is not None:
        raise ValueError(
            "time_budget_minutes cannot be used with several workers (each would stop at a "
            "different step); give epochs instead"
        )
    _agree_on_start(settings, state)  # every worker starts from the same epoch
    if state is not None:
        if verbose:
            print(f"train: resuming {run_dir} after epoch {state['epochs_done']}")
    elif overwrite and chief:
        for name in (run_callbacks.STATE_FILE, run_callbacks.HISTORY_FILE, CONFIG_FILE):
            (run_dir / name).unlink(missing_ok=True)
    runtime.apply_settings(settings)

    if dataset is None:
        dataset = folder.load_dataset(config.data, labels=config.labels, channels=config.channels)
    mapping = dataset.mapping
    config.labels = mapping.to_dict()
    config.channels = dataset.channels
    if config.num_classes is None:
        config.num_classes = mapping.model_num_classes
    _split(config, dataset)
    config.devices = {
        "strategy": settings.strategy_name,
        "replicas": settings.num_replicas,
        "workers": settings.num_workers,
        "device_kind": settings.device_kind,
        "device_names": list(settings.devices),
        "backend": keras.backend.backend(),
        "precision": settings.precision_policy,
        "jit_compile": settings.jit_compile,
        "per_replica_batch_size": settings.per_device_batch_size,
        "global_batch_size": settings.global_batch_size,
    }
    if chief:
        write_json_atomic(run_dir / CONFIG_FILE, config.to_dict())

    train_ds, val_ds, steps, val_padded = _datasets(
        config, dataset, settings.global_batch_size, settings.num_replicas
    )
    ignore = mapping.ignore_value is not None or val_padded
    if settings.num_workers > 1:
        train_ds, val_ds = (workers.shard_by_data(ds) for ds in (train_ds, val_ds))
    if verbose:
        print(_describe(config, settings, len(config.train_stems), len(config.val_stems), steps))

    with settings.strategy.scope():
        if state is not None:
            model = keras.saving.load_model(run_dir / run_callbacks.LAST_MODEL, safe_mode=True)
        else:
            model = build_model(config)
            model.compile(
                optimizer=_optimizer(config, steps),
                loss=make_loss(config, ignore=ignore),
                metrics=make_metrics(config, ignore=ignore),
                jit_compile=settings.jit_compile,
            )

    if settings.num_workers > 1:
        _build_for_multi_worker(model, train_ds, settings.strategy)

    checkpoint = run_callbacks.RunCheckpoint(
        run_dir,
        monitor="val_dice" if val_ds is not None else "dice",
        initial_state=state,
        is_chief=chief,
    )
    guard = run_callbacks.NanGuard(checkpoint)
    callback_list: list[keras.callbacks.Callback] = [guard, checkpoint]
    epochs = config.epochs
    budget = None
    if config.time_budget_minutes is not None:
        budget = run_callbacks.TimeBudget(
            config.time_budget_minutes * 60,
            config.learning_rate,
            schedule="constant" if config.schedule == "constant" else "cosine",
            seconds_used=checkpoint.train_seconds,
        )
        callback_list.append(budget)
        epochs = 10**6  # the budget ends training
    elif config.schedule == "plateau":
        callback_list.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=checkpoint.monitor, mode="max", factor=0.5, patience=5, min_lr=1e-6
            )
        )
    if tensorboard:
        callback_list.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard")))
    callback_list += list(callbacks or [])

    initial_epoch = state["epochs_done"] if state else 0
    budget_left = budget is None or checkpoint.train_seconds < budget.budget_seconds
    if initial_epoch < epochs and budget_left:
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps,
            callbacks=callback_list,
            shuffle=False,  # the pipeline shuffles, seeded
            verbose=verbose,
        )
    if guard.where is not None:
        epoch, batch = guard.where
        checkpoint.write_state(finished=False, stopped_reason="nan_loss")
        raise FloatingPointError(
            f"the loss became NaN at epoch {epoch}, batch {batch}; the last good model "
            f"(epoch {checkpoint.epochs_done}) is kept in {run_dir / run_callbacks.LAST_MODEL}. "
            "Lower --learning-rate, or check the data for NaN/Inf values."
        )
    reason = "time_budget" if budget is not None and budget.exhausted else "epochs"
    if "auto" in (config.eval_tta, config.eval_threshold) and val_ds is not None and chief:
        _choose_evaluation(config, run_dir, dataset, verbose)
    checkpoint.write_state(finished=True, stopped_reason=reason)
    workers.barrier(settings)  # the other workers read what the chief has just written
    return _result(run_dir, config, run_callbacks.read_state(run_dir))


def _apply_plan(config: TrainConfig, dataset, explicit: set, devices, verbose: int) -> None:
    """Fills every option the caller did not give from :func:`configure.plan_training`."""
    from unet_lib.training import plan as configure

    fp = configure.fingerprint(dataset)
    kind = runtime.device_kind_hint(devices)
    bf16 = bool(runtime.read_cpu_flags() & {"avx512_bf16", "amx_bf16"})
    plan = configure.plan_training(
        fp,
        device_kind=kind,
        time_budget_minutes=config.time_budget_minutes,
        bf16_cpu=bf16,
        val_fraction=config.val_fraction,
        given={key: getattr(config, key) for key in explicit if hasattr(config, key)},
    )
    aliases = {"split": ("val_data", "val_stems", "train_stems")}  # a given split wins
    derived = {}
    for key, value in plan.options.items():
        if key in explicit or any(a in explicit for a in aliases.get(key, ())):
            continue
        setattr(config, key, value)
        derived[key] = plan.reasons[key]
    config.plan = {"fingerprint": fp.to_dict(), "device_kind": kind, "derived": derived}
    if verbose:
        print("train: dataset fingerprint\n" + configure.describe_fingerprint(fp))
        print("train: derived settings (explicit options win)\n"
              + configure.describe_plan(plan, explicit))  # fmt: skip


def _per_replica_epoch(config: TrainConfig, replicas: int) -> None:
    """A derived epoch length counts batches of one replica; each step takes one batch per
    replica, so with several the epoch needs ``replicas`` times fewer steps."""
    derived = (config.plan or {}).get("derived", {})
    if replicas > 1 and "steps_per_epoch" in derived:
        config.steps_per_epoch = max(1, math.ceil(config.steps_per_epoch / replicas))
        derived["steps_per_epoch"] += f"; / {replicas} replicas (a step takes {replicas} batches)"


def evaluation_settings(config: dict) -> tuple[bool, float]:
    """The test-time augmentation and threshold a run chose on its validation images.

    Args:
        config: A run's ``config.json`` as a dict (or ``TrainConfig.to_dict()``).

    Returns:
        ``(tta, threshold)`` from ``eval_tta`` / ``eval_threshold``; ``False`` and ``0.5``
        where a value is missing or still ``"auto"`` (no validation images, or a run folder
        written before the choice existed).

    Example:
        >>> evaluation_settings({"eval_tta": True, "eval_threshold": 0.55})
        (True, 0.55)
    """
    threshold = config.get("eval_threshold", "auto")
    return config.get("eval_tta") is True, 0.5 if threshold == "auto" else float(threshold)


def _choose_evaluation(config: TrainConfig, run_dir: Path, dataset, verbose: int) -> None:
    """Decides ``eval_tta`` (and, for one output channel, ``eval_threshold``) on the
    validation images: the best model predicts them with and without test-time augmentation
    (8 flips / rotations); the choice with the higher pooled foreground Dice wins, and for
    binary models the threshold in 0.30, 0.35, ..., 0.70 that maximises it."""
    from unet_lib.data import load_dataset
    from unet_lib.inference.predictor import predict_probabilities

    model = keras.saving.load_model(run_dir / run_callbacks.BEST_MODEL, safe_mode=True)
    if config.val_data:
        val = load_dataset(config.val_data, labels=config.labels, channels=config.channels)
    else:
        val = dataset.select(config.val_stems)
    binary = config.num_classes == 1
    thresholds = [round(t, 2) for t in np.arange(0.30, 0.701, 0.05)] if binary else [0.5]
    choices = (False, True) if config.eval_tta == "auto" else (bool(config.eval_tta),)
    scores = {}
    for tta in choices:
        counts = {t: 0 for t in thresholds}
        for image, mask in zip(val.images, val.masks, strict=True):
            p = predict_probabilities(model, image, tta=tta)
            for t in thresholds:
                counts[t] = counts[t] + _foreground_counts(p, mask, t, binary)
        for t, c in counts.items():
            scores[(tta, t)] = _mean_dice(c)
    (tta, threshold), best = max(scores.items(), key=lambda kv: (kv[1], -abs(kv[0][1] - 0.5)))
    if config.eval_tta == "auto":
        config.eval_tta = tta
    if binary and config.eval_threshold == "auto":
        config.eval_threshold = threshold
    elif config.eval_threshold == "auto":
        config.eval_threshold = 0.5
    plain = scores[(choices[0], 0.5)]
    config.plan.setdefault("derived", {})["evaluation"] = (
        f"validation Dice {best:.4f} with tta={tta}, threshold={threshold:g} "
        f"({plain:.4f} with tta={choices[0]} at 0.5)"
    )
    write_json_atomic(run_dir / CONFIG_FILE, config.to_dict())
    if verbose:
        print(f"train: evaluation settings: tta={config.eval_tta}, threshold="
              f"{config.eval_threshold} ({config.plan['derived']['evaluation']})")  # fmt: skip


def _foreground_counts(p: np.ndarray, mask: np.ndarray, threshold: float, binary: bool):
    """``(3, K-1)`` array of tp, fp, fn per foreground class (ignored pixels left out)."""
    valid = mask >= 0
    pred = (p[..., 0] >= threshold) if binary else np.argmax(p, axis=-1)
    pred, truth = pred[valid].astype(np.int64), mask[valid].astype(np.int64)
    k = 2 if binary else p.shape[-1]
    confusion = np.bincount(truth * k + pred, minlength=k * k).reshape(k, k)
    tp = np.diag(confusion)[1:]
    fp = confusion.sum(0)[1:] - tp
    fn = confusion.sum(1)[1:] - tp
    return np.stack([tp, fp, fn])


def _mean_dice(counts: np.ndarray) -> float:
    """Mean over foreground classes of 2 tp / (2 tp + fp + fn); classes absent from both
    truth and prediction are left out."""
    tp, fp, fn = counts
    denominator = 2 * tp + fp + fn
    present = denominator > 0
    if not present.any():
        return 0.0
    return float(np.mean(2 * tp[present] / denominator[present]))


def _agree_on_start(settings, state: dict | None) -> None:
    """Multi-worker: waits for every worker and checks that all read the same state."""
    if settings.num_workers <= 1:
        return
    done = -1 if state is None else int(state.get("epochs_done", 0))
    if not workers.same_on_every_worker(settings, done):
        raise RuntimeError(
            "the workers read different run states (epochs done): with several workers the "
            "run folder must be on a filesystem that every worker shares, at the same path"
        )


def _build_for_multi_worker(model, dataset, strategy) -> None:
    """Works around two Keras 3.15 ``fit`` steps that fail under ``MultiWorkerMirroredStrategy``.

    1. ``fit`` / ``evaluate`` first build the compiled metrics, loss and optimizer from a
       batch averaged over the replicas with ``strategy.reduce``, which fails across workers
       on an ``(x, y)`` tuple (``Attempt to convert a value (PerReplica...)``). Only shapes
       matter for that build, so the dataset's element spec builds the same here, and that
       step is then skipped. Every worker builds identically.
    2. Each step's logs are averaged over the replicas with
       ``strategy.reduce("MEAN", v, axis=0)``, which fails on scalars (``Invalid reduction
       dimension 0``), so the step returns them as 1-element vectors. The per-step logs are
       then the same on every worker (so ``NanGuard`` stops all of them at the same step);
       the epoch logs are read from the metric variables, whose counts are summed over every
       replica of every worker.
    """
    with strategy.scope():  # the element spec, not a batch: iterating the dataset here would
        # advance its per-iteration reshuffling and seeds, and change the data fit() sees
        model._symbolic_build(data_batch=dataset.element_spec)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    compute_metrics = model.compute_metrics

    def vector_logs(x, y, y_pred, sample_weight=None):
        logs = compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        return {key: keras.ops.reshape(value, (-1,)) for key, value in logs.items()}

    model.compute_metrics = vector_logs


# ----------------------------------------------------------------------------- pieces
def build_model(config: TrainConfig) -> keras.Model:
    """The U-Net described by a configuration."""
    return build_unet(
        (None, None, config.channels),
        config.num_classes,
        depth=config.depth,
        base_filters=config.base_filters,
        convs_per_level=config.convs_per_level,
        batch_norm=config.batch_norm,
        dropout=config.dropout,
        upsampling=config.upsampling,
        padding=config.padding,
    )


def make_loss(config: TrainConfig, *, ignore: bool = False) -> keras.losses.Loss:
    """The loss object named by ``config.loss``."""
    kwargs = {"ignore_class": IGNORE_LABEL} if ignore else {}
    weights = config.class_weights if isinstance(config.class_weights, list) else None
    if config.loss == "dice_ce":
        return losses.DiceCELoss(class_weights=weights, **kwargs)
    if config.loss == "dice":
        return losses.DiceLoss(**kwargs)
    if config.loss == "ce":
        return losses.DiceCELoss(dice_weight=0.0, class_weights=weights, **kwargs)
    if config.loss == "focal":
        return losses.FocalLoss(**kwargs)
    return losses.TverskyLoss(**kwargs)


def make_metrics(config: TrainConfig, *, ignore: bool = False) -> list[keras.metrics.Metric]:
    """Streaming Dice and IoU over the foreground classes."""
    kwargs = {"ignore_class": IGNORE_LABEL} if ignore else {}
    return [
        metrics.DiceMetric(config.num_classes, **kwargs),
        metrics.IoUMetric(config.num_classes, **kwargs),
    ]


def _optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    rate = config.learning_rate
    if config.schedule == "cosine" and config.time_budget_minutes is None:
        total = config.epochs * steps_per_epoch
        warmup = min(config.warmup_epochs * steps_per_epoch, total // 2)
        rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=rate * 0.01 if warmup else rate,
            decay_steps=max(1, total - warmup),
            alpha=0.01,
            warmup_target=rate if warmup else None,
            warmup_steps=warmup,
        )
    if config.optimizer == "adam":
        return keras.optimizers.Adam(rate)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=config.weight_decay or 1e-4)
    return keras.optimizers.SGD(rate, momentum=0.99, nesterov=True)


def _split(config: TrainConfig, dataset) -> None:
    if config.train_stems:  # explicit lists, or a resumed run's split
        return
    if config.val_data is not None:
        config.train_stems = list(dataset.stems)
        return
    parts = folder.split_dataset(
        dataset.stems,
        val_fraction=config.val_fraction,
        seed=config.seed,
        contiguous=config.split == "contiguous",
    )
    config.train_stems, config.val_stems = parts["train"], parts["val"]


def _even_for_replicas(images: list, masks: list, replicas: int) -> tuple[list, list]:
    """Pads a validation set to a multiple of ``replicas`` with fully ignored copies.

    Distributed evaluation fails when a batch splits unevenly over the replicas (TensorFlow:
    "Inputs to operation AddN ... must have the same size and shape", [3, ...] vs [2, ...]).
    A copy of the first image with an all-``IGNORE_LABEL`` mask adds no pixel to the Dice
    and IoU counts or to the loss; only Keras's running mean of ``val_loss`` weighs the last
    batch by its padded size.
    """
    if replicas > 1 and len({m.shape for m in masks}) > 1:
        # such images go one per batch, and one image cannot be split over the replicas
        # (TensorFlow's AddN error above, [1, ...] vs [0, ...]), whatever their count
        raise ValueError(
            f"{len(images)} validation images of different sizes cannot be split over "
            f"{replicas} replicas: give validation images of one size (val_data=...), or "
            "train on one device (devices='gpu:0')"
        )
    extra = -len(images) % replicas
    if extra == 0 or not images:
        return images, masks
    blank = np.full_like(masks[0], IGNORE_LABEL)
    return images + [images[0]] * extra, masks + [blank] * extra


def _datasets(config: TrainConfig, dataset, global_batch: int, replicas: int = 1):
    index = {stem: i for i, stem in enumerate(dataset.stems)}

    def select(stems):
        ids = [index[s] for s in stems]
        return [dataset.images[i] for i in ids], [dataset.masks[i] for i in ids]

    images, masks = select(config.train_stems)
    sample_weights = _sample_weights(config, masks, dataset.mapping.num_classes)
    steps = config.steps_per_epoch or max(1, math.ceil(len(images) / global_batch))
    multiple = 2**config.depth
    train_ds = pipeline.make_dataset(
        images,
        masks,
        batch_size=global_batch,
        patch_size=config.patch_size,
        foreground_fraction=config.foreground_fraction if config.patch_size else 0.0,
        augment=config.augment_config(),
        shuffle=True,
        seed=config.seed,
        deterministic=config.deterministic,
        repeat=True,
        pad_multiple=multiple,
        drop_remainder=True,
        sample_weights=sample_weights,
    )
    if config.val_data is not None:
        val = folder.load_dataset(config.val_data, labels=config.labels, channels=config.channels)
        config.val_stems = list(val.stems)
        val_images, val_masks = val.images, val.masks
    else:
        val_images, val_masks = select(config.val_stems)
    val_ds, val_padded = None, False
    if val_images:
        count = len(val_images)
        val_images, val_masks = _even_for_replicas(list(val_images), list(val_masks), replicas)
        val_padded = len(val_images) > count
        same_size = len({m.shape for m in val_masks}) == 1
        val_ds = pipeline.make_dataset(
            val_images,
            val_masks,
            batch_size=global_batch if same_size else 1,
            augment=None,
            shuffle=False,
            pad_multiple=multiple,
        )
    return train_ds, val_ds, steps, val_padded


def _sample_weights(config: TrainConfig, masks, num_label_classes: int):
    """Per-pixel weights (class balance and/or the paper's weight map), or ``None``."""
    if config.weight_map:
        from unet_lib.weightmap import unet_weight_map

        return [
            unet_weight_map(
                m,
                w0=config.weight_map_w0,
                sigma=config.weight_map_sigma,
                class_weights=config.class_weights or "balanced",
            )
            for m in masks
        ]
    if config.class_weights is None:
        return None
    if config.class_weights == "balanced":
        counts = np.bincount(
            np.concatenate([m[m >= 0].ravel() for m in masks]), minlength=num_label_classes
        ).astype(np.float64)
        weights = counts.sum() / (num_label_classes * np.maximum(counts, 1))
        config.class_weights = [round(float(w), 6) for w in weights]
    table = np.asarray(config.class_weights, dtype=np.float32)
    if table.shape != (num_label_classes,):
        raise ValueError(
            f"class_weights needs one weight per class ({num_label_classes}), got {len(table)}"
        )
    return [np.where(m >= 0, table[np.clip(m, 0, None)], 0.0).astype(np.float32) for m in masks]


def _config_for_resume(run_dir: Path, requested: TrainConfig) -> TrainConfig:
    stored = TrainConfig.from_dict(json.loads((run_dir / CONFIG_FILE).read_text()))
    resolved_keys = {
        "labels",
        "channels",
        "num_classes",
        "train_stems",
        "val_stems",
        "devices",
        "class_weights",
    }
    defaults = TrainConfig()
    differing = [
        key
        for key, value in requested.to_dict().items()
        if key not in resolved_keys
        and value != getattr(defaults, key)  # only options the caller set
        and not _same_setting(key, value, getattr(stored, key))
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


def _result(run_dir: Path, config: TrainConfig, state: dict) -> TrainResult:
    best = run_dir / run_callbacks.BEST_MODEL
    path = best if best.exists() else run_dir / run_callbacks.LAST_MODEL
    model = keras.saving.load_model(path, safe_mode=True)
    return TrainResult(model, run_callbacks.read_history(run_dir), run_dir, config, state)


def _describe(config, settings, n_train, n_val, steps) -> str:
    length = (
        f"{config.time_budget_minutes:g} min budget"
        if config.time_budget_minutes is not None
        else f"{config.epochs} epochs"
    )
    workers = f" on {settings.num_workers} workers" if settings.num_workers > 1 else ""
    return (
        f"train: {n_train} training / {n_val} validation images, {length} of {steps} steps, "
        f"U-Net depth {config.depth} base {config.base_filters}, loss {config.loss}\n"
        f"train: strategy {settings.strategy_name}, {settings.num_replicas} replica"
        f"{'s' if settings.num_replicas != 1 else ''}{workers} "
        f"({settings.device_kind}: {', '.join(settings.devices) or 'default'}), batch "
        f"{settings.per_device_batch_size} per replica = {settings.global_batch_size} global, "
        f"{settings.precision_policy}, backend {keras.backend.backend()}"
    )


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
