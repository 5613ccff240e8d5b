"""train(): from a dataset folder to a run folder (:mod:`.callbacks`) whose ``config.json``
(the resolved :class:`TrainConfig`) rebuilds model and pipeline. The same call resumes the
run (explicit options that differ from its stored ones are refused) or returns a finished one."""

import contextlib
import math
import zlib
from pathlib import Path

import keras

from unet_lib import IGNORE_LABEL, metrics, runtime
from unet_lib.fileio import write_json_atomic
from unet_lib.model import backbone_layers, build_unet, load_model
from unet_lib.training import callbacks as run_callbacks
from unet_lib.training import plan as planning
from unet_lib.training import runfolder
from unet_lib.training.calibration import choose_evaluation
from unet_lib.training.config import CONFIG_FILE, TrainConfig, TrainResult, check_depth
from unet_lib.training.datasets import choose_split, load, make_datasets
from unet_lib.training.registry import make_loss, make_optimizer
from unet_lib.training.resume import check_resumed_labels, config_for_resume, load_result


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
    """Train a U-Net on a dataset folder (``images/``, ``masks/``, optional ``dataset.json``)
    into the run folder ``out_dir`` (created, or resumed if it holds an unfinished run).

    Args:
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.
        tensorboard: Also write TensorBoard logs to ``out_dir/tensorboard`` (needs the
            ``tensorboard`` package: checked before anything else).
        overwrite: Start afresh even if ``out_dir`` holds a run.
        callbacks: Extra Keras callbacks, run after the library's own.
        devices: ``"cpu:2"``, ``"gpu:0,1"``, ... (default: ``UNET_DEVICES``, else every GPU,
            else the CPU); a ``TF_CONFIG`` cluster: every worker runs the same call on one
            shared run folder, and only the chief writes.
        **options: :class:`TrainConfig` fields (``batch_size`` is per replica).

    Raises:
        unet_lib.data.DatasetError: The dataset's problems, all of them.
        FloatingPointError: The loss became NaN; ``last.keras`` keeps the last good model.
        ValueError: Bad options, or a run folder started with different settings.
    """
    run_dir = Path(out_dir)
    config = TrainConfig(data=str(data), **options)
    if tensorboard:
        run_callbacks.check_tensorboard()
    state = None if overwrite else run_callbacks.read_state(run_dir)
    if state is not None:
        requested, config = config, config_for_resume(run_dir, config, explicit=set(options))
        if state.get("finished"):
            if verbose:
                print(f"train: {run_dir} already finished; returning its best model")
            return load_result(run_dir, config, state)
        check_resumed_labels(requested.labels, config, run_dir)
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        runtime.enable_determinism()
    with contextlib.closing(runfolder.RunLock(run_dir)) as lock:  # taken by the writer
        dataset, settings = _prepare(config, run_dir, state, set(options), devices, overwrite,
                                     verbose, lock)  # fmt: skip
        train_ds, val_ds, steps, val_padded = make_datasets(config, dataset, settings)
        if runtime.is_chief(settings):  # written once the data passed every check
            write_json_atomic(run_dir / CONFIG_FILE, config.to_dict())
        if verbose:
            print(_describe(config, settings, steps))
        model = _model(config, settings, run_dir, state, steps, dataset.mapping, val_padded)
        if settings.num_workers > 1:
            _build_for_multi_worker(model, train_ds, settings.strategy)
        run = _fit(model, config, run_dir, state, settings, (train_ds, val_ds, steps), callbacks,
                   tensorboard, verbose)  # fmt: skip
        return _finish(config, run_dir, dataset, settings, *run, val_ds, verbose)


def _fit(model, config, run_dir, state, settings, data, extra, tensorboard, verbose):
    """``model.fit`` with the run's callbacks, then ``extra``; returns
    ``(checkpoint, guard, budget, early)`` (``budget``, ``early``: ``None`` when not used)."""
    train_ds, val_ds, steps = data
    monitor = "val_dice" if val_ds is not None else "dice"
    checkpoint = run_callbacks.RunCheckpoint(
        run_dir, monitor=monitor, initial_state=state, is_chief=runtime.is_chief(settings)
    )
    guard, budget, epochs, scheduling = run_callbacks.NanGuard(checkpoint), None, config.epochs, []
    if config.time_budget_minutes is not None:  # sets the learning rate and ends training
        minutes, used = config.time_budget_minutes, checkpoint.train_seconds
        budget = run_callbacks.TimeBudget(
            minutes * 60, config.learning_rate, schedule=config.schedule, seconds_used=used
        )
        scheduling, epochs = [budget, run_callbacks.BudgetProgbar(budget)], 10**6
    elif config.schedule == "plateau":  # halves the rate when validation stops improving
        plateau = dict(monitor=checkpoint.monitor, mode="max", factor=0.5, patience=5, min_lr=1e-6)
        scheduling = [keras.callbacks.ReduceLROnPlateau(**plateau)]
    watchers, early = _watchers(config, checkpoint, tensorboard, verbose)
    warmup = []  # before the checkpoint: it unfreezes the encoder before the epoch's commit
    if config.freeze_encoder_epochs:
        layers = backbone_layers(model, config.encoder)
        warmup = [run_callbacks.EncoderWarmup(layers, config.freeze_encoder_epochs)]
    initial_epoch = state["epochs_done"] if state else 0
    if early is not None and early.due():  # resumed after it had stopped (state not final)
        early.stopped = True
    elif initial_epoch < epochs and (budget is None or budget.seconds_used < budget.budget_seconds):
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps,
            callbacks=[guard, *warmup, checkpoint, *watchers, *scheduling, *(extra or [])],
            shuffle=False,  # the pipeline shuffles, seeded
            verbose=verbose,
        )
    return checkpoint, guard, budget, early


def _watchers(config, checkpoint, tensorboard: bool, verbose: int):
    """``(callbacks, early)``: what reads ``checkpoint`` after each epoch: ``curves.png``
    (chief), early stopping (``config.early_stopping``, else ``early`` is ``None``) and
    TensorBoard logs; they go right after the checkpoint."""
    watchers = [run_callbacks.TrainingCurves(checkpoint)] if checkpoint.is_chief else []
    early = None
    if config.early_stopping is not None:
        early = run_callbacks.EarlyStop(checkpoint, config.early_stopping, verbose=verbose)
        watchers.append(early)
    if tensorboard:
        watchers.append(run_callbacks.tensorboard_callback(checkpoint.run_dir))
    return watchers, early


def _prepare(config, run_dir: Path, state, explicit: set, devices, overwrite, verbose: int, lock):
    """Plans a new run, settles the devices, takes the run folder (``lock``, then
    :func:`runfolder.recover`), loads the dataset and resolves what the data decides; returns
    ``(dataset, settings)``."""
    dataset = load(config, config.data)
    if state is None and config.auto_configure:
        _apply_plan(config, dataset, explicit, devices, verbose)
    elif state is None:  # the fixed defaults: plain evaluation unless asked otherwise
        config.eval_tta = False if config.eval_tta == "auto" else config.eval_tta
        config.eval_threshold = 0.5 if config.eval_threshold == "auto" else config.eval_threshold
    settings = runtime.device_settings(
        devices,
        per_device_batch_size=config.batch_size,
        precision=config.precision,
        jit_compile=config.jit_compile,
    )
    derived = config.plan.get("derived", {}) if state is None and config.auto_configure else {}
    if (replicas := settings.num_replicas) > 1 and "steps_per_epoch" in derived:
        # a derived epoch counts one replica's batches; a step takes one batch per replica
        config.steps_per_epoch = max(1, math.ceil(config.steps_per_epoch / replicas))
        derived["steps_per_epoch"] += f"; / {replicas} replicas (a step takes {replicas} batches)"
    if runtime.is_chief(settings):  # before the workers' barrier: they read what it recovers
        _take_folder(run_dir, state, overwrite, lock, verbose)
    _check_workers(settings, state, config, run_dir)
    if state is not None and verbose:
        print(f"train: resuming {run_dir} after epoch {state['epochs_done']}")
    runtime.apply_settings(settings)
    config.labels, config.channels = dataset.mapping.to_dict(), dataset.channels
    _check_against_data(config, dataset)
    choose_split(config, dataset)
    config.devices = _device_record(settings)
    return dataset, settings


def _take_folder(run_dir: Path, state, overwrite: bool, lock, verbose: int) -> None:
    """Locks the run folder, then makes its files those ``state.json`` records (a killed run:
    :func:`runfolder.recover`), or, with ``overwrite``, removes the old run's files."""
    lock.acquire()
    if overwrite:
        state = None
        names = (runfolder.STATE_FILE, runfolder.HISTORY_FILE, CONFIG_FILE, runfolder.BEST_MODEL,
                 runfolder.LAST_MODEL, run_callbacks.CURVES_FILE)  # fmt: skip
        for name in names:
            (run_dir / name).unlink(missing_ok=True)
    elif run_callbacks.read_state(run_dir) != state:
        raise RuntimeError(f"{run_dir} changed while this training started; run it again")
    for action in runfolder.recover(run_dir, state):
        if verbose:
            print(f"train: {run_dir}: {action}")


def _check_against_data(config, dataset) -> None:
    """``num_classes`` (derived when not given) and, for whole images, the depth against the
    smallest image; raises ValueError naming the option and the fix."""
    mapping, needed = dataset.mapping, dataset.mapping.model_num_classes
    if config.num_classes is None:
        config.num_classes = needed
    elif config.num_classes != needed:
        raise ValueError(
            f"num_classes={config.num_classes} but the data has {mapping.num_classes} classes "
            f"{list(mapping.class_names)}, which need {needed} output(s); leave num_classes "
            "out (it is derived from the data)"
        )
    if config.patch_size is None and len(dataset):
        side = min(min(m.shape[:2]) for m in dataset.masks)
        check_depth(config.size_depth, side, "the smallest image")


def _device_record(settings) -> dict:
    return {
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


def _apply_plan(config, dataset, explicit: set, devices, verbose: int) -> None:
    """Fills every option the caller did not give from :func:`plan.plan_training`."""
    fp = planning.fingerprint(dataset)
    kind = runtime.device_kind_hint(devices)
    plan = planning.plan_training(
        fp,
        device_kind=kind,
        time_budget_minutes=config.time_budget_minutes,
        bf16_cpu=bool(runtime.read_cpu_flags() & {"avx512_bf16", "amx_bf16"}),
        val_fraction=config.val_fraction,
        given={key: getattr(config, key) for key in explicit if hasattr(config, key)},
    )
    skip = explicit | ({"split"} if explicit & {"val_data", "val_stems", "train_stems"} else set())
    derived = {k: why for k, why in plan.reasons.items() if k not in skip}  # a given split wins
    for key in derived:
        setattr(config, key, plan.options[key])
    config.plan = {"fingerprint": fp.to_dict(), "device_kind": kind, "derived": derived}
    if verbose:
        print("train: dataset fingerprint\n" + planning.describe_fingerprint(fp))
        print("train: derived settings (explicit options win)\n"
              + planning.describe_plan(plan, explicit))  # fmt: skip


def _model(config, settings, run_dir: Path, state, steps: int, mapping, val_padded: bool):
    """The compiled model: built afresh, or the last checkpoint of a resumed run."""
    ignore = mapping.ignore_value is not None or val_padded
    with settings.strategy.scope():
        if state is not None:
            return load_model(run_dir / runfolder.LAST_MODEL)
        model = build_model(config)
        model.compile(
            optimizer=make_optimizer(config, steps),
            loss=make_loss(config, ignore=ignore),
            metrics=make_metrics(config, ignore=ignore),
            jit_compile=settings.jit_compile,
        )
    return model


def _finish(config, run_dir, dataset, settings, checkpoint, guard, budget, early, val_ds, verbose):
    """Raises on a NaN loss; else chooses evaluation settings, marks the run finished."""
    if guard.where is not None:
        epoch, batch = guard.where
        checkpoint.write_state(finished=False, stopped_reason="nan_loss")
        raise FloatingPointError(
            f"the loss became NaN at epoch {epoch}, batch {batch}; the last good model "
            f"(epoch {checkpoint.epochs_done}) is kept in {run_dir / runfolder.LAST_MODEL}. "
            "Lower --learning-rate, or check the data for NaN/Inf values."
        )
    reason = "time_budget" if budget is not None and budget.exhausted else "epochs"
    reason = "early_stopping" if early is not None and early.stopped else reason
    auto = "auto" in (config.eval_tta, config.eval_threshold)
    if auto and val_ds is not None and runtime.is_chief(settings):
        choose_evaluation(config, run_dir, dataset, verbose)
    checkpoint.write_state(finished=True, stopped_reason=reason)
    runtime.barrier(settings)  # the other workers read what the chief has just written
    return load_result(run_dir, config, run_callbacks.read_state(run_dir))


def _check_workers(settings, state: dict | None, config, run_dir: Path) -> None:
    """Multi-worker: refuses a time budget, waits for every worker and checks that all name
    the same run folder and read the same state (so all start from the same epoch)."""
    if settings.num_workers <= 1:
        return
    if config.time_budget_minutes is not None:
        raise ValueError(
            "time_budget_minutes cannot be used with several workers (each would stop at a "
            "different step); give epochs instead"
        )
    path_code = zlib.crc32(str(run_dir.resolve()).encode()) % 2**20  # squares stay exact in float64
    if not runtime.same_on_every_worker(settings, path_code):
        raise ValueError(
            f"the workers name different run folders (this one: {run_dir}); every worker must "
            "give the same --out, on a filesystem they all share"
        )
    done = -1 if state is None else int(state.get("epochs_done", 0))
    if not runtime.same_on_every_worker(settings, done):
        raise RuntimeError(
            "the workers read different run states (epochs done): with several workers the "
            "run folder must be on a filesystem that every worker shares, at the same path"
        )


def _build_for_multi_worker(model, dataset, strategy) -> None:
    """Works around two Keras 3.15 ``fit`` steps that fail under ``MultiWorkerMirroredStrategy``
    (docs/distributed.md): builds the compiled objects from the dataset's element spec, and
    returns each step's logs as 1-element vectors, which ``strategy.reduce`` can average."""
    with strategy.scope():
        model._symbolic_build(data_batch=dataset.element_spec)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    compute_metrics = model.compute_metrics

    def vector_logs(x, y, y_pred, sample_weight=None):
        logs = compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        return {key: keras.ops.reshape(value, (-1,)) for key, value in logs.items()}

    model.compute_metrics = vector_logs


_NETWORK = ("depth base_filters convs_per_level batch_norm dropout upsampling padding "
            "intensity_scaling encoder encoder_weights freeze_encoder").split()  # fmt: skip


def build_model(config: TrainConfig) -> keras.Model:
    """The U-Net described by a configuration."""
    network = {name: getattr(config, name) for name in _NETWORK}
    return build_unet((None, None, config.channels), config.num_classes, **network)


def make_metrics(config: TrainConfig, *, ignore: bool = False) -> list[keras.metrics.Metric]:
    """Streaming Dice and IoU over the foreground classes."""
    kwargs = {"ignore_class": IGNORE_LABEL} if ignore else {}
    return [kind(config.num_classes, **kwargs) for kind in (metrics.DiceMetric, metrics.IoUMetric)]


def _describe(config, settings, steps) -> str:
    budget = config.time_budget_minutes
    length = f"{config.epochs} epochs" if budget is None else f"{budget:g} min budget"
    workers = f" on {settings.num_workers} workers" if settings.num_workers > 1 else ""
    loss = config.loss if isinstance(config.loss, str) else type(config.loss).__name__
    return (
        f"train: {len(config.train_stems)} training / {len(config.val_stems)} validation "
        f"images, {length} of {steps} steps, U-Net depth {config.depth} base "
        f"{config.base_filters}, loss {loss}\n"
        f"train: strategy {settings.strategy_name}, {settings.num_replicas} replica"
        f"{'s' if settings.num_replicas != 1 else ''}{workers} "
        f"({settings.device_kind}: {', '.join(settings.devices) or 'default'}), batch "
        f"{settings.per_device_batch_size} per replica = {settings.global_batch_size} global, "
        f"{settings.precision_policy}, backend {keras.backend.backend()}"
    )
