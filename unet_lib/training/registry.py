"""The losses, optimizers and learning-rate schedules that ``train`` knows by name (adding
one is a registry entry, e.g. ``LOSSES["half_dice"] = lambda w, i: DiceLoss(ignore_class=i)``);
like Keras's ``get()``, ``train(loss=...)`` (``optimizer=``, ``schedule=``) also takes a Keras
object. ``keras`` and ``losses`` load on first use, so ``--help`` stays fast."""

import functools
import importlib

from unet_lib import IGNORE_LABEL


class _OnFirstUse:  # a module imported on its first attribute access
    def __init__(self, name: str):
        self.name = name

    def __getattr__(self, attribute: str):
        return getattr(importlib.import_module(self.name), attribute)


keras, losses = _OnFirstUse("keras"), _OnFirstUse("unet_lib.losses")

#: name -> (class_weights: one per label class or None; ``train`` passes None, its class weights
#: come as per-pixel sample weights, ignore_class: a label or None) -> Loss
LOSSES = {
    "dice_ce": lambda w, i: losses.DiceCELoss(class_weights=w, ignore_class=i),
    "dice": lambda w, i: losses.DiceLoss(ignore_class=i),
    "ce": lambda w, i: losses.DiceCELoss(dice_weight=0.0, class_weights=w, ignore_class=i),
    "focal": lambda w, i: losses.FocalLoss(ignore_class=i),
    "tversky": lambda w, i: losses.TverskyLoss(ignore_class=i),
}
#: name -> (learning_rate: a float or a LearningRateSchedule, weight_decay) -> Optimizer
OPTIMIZERS = {
    "adam": lambda rate, decay: keras.optimizers.Adam(rate),
    "adamw": lambda rate, decay: keras.optimizers.AdamW(rate, weight_decay=decay or 1e-4),
    "sgd": lambda rate, decay: keras.optimizers.SGD(rate, momentum=0.99, nesterov=True),
}


def cosine(peak, total_steps, warmup_steps):
    """Linear warm-up from 1 % of the peak, then a cosine decay to 1 % of it at the end."""
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak * 0.01 if warmup_steps else peak,
        decay_steps=max(1, total_steps - warmup_steps),
        alpha=0.01,
        warmup_target=peak if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


#: name -> (peak rate, total steps, warm-up steps) -> a float or a schedule of the step. One
#: rule for epochs (read at the optimizer's step) and time budgets (callbacks.TimeBudget: at
#: the fraction of the time used); ``plateau`` starts constant, ``train`` halves it on plateaus.
SCHEDULES = {"constant": lambda peak, *_: peak, "cosine": cosine, "plateau": lambda peak, *_: peak}
_KINDS = {"loss": "losses.Loss", "optimizer": "optimizers.Optimizer",
          "schedule": "optimizers.schedules.LearningRateSchedule"}  # fmt: skip


def check_registered(option: str, value, table: dict) -> None:
    """Raises ``ValueError`` unless ``value`` is a name in ``table``, a Keras object of the
    option's kind or its serialised form (a dict, as ``config.json`` stores objects)."""
    if isinstance(value, dict) or (isinstance(value, str) and value in table):
        return
    if not isinstance(value, str):
        if isinstance(value, functools.reduce(getattr, _KINDS[option].split("."), keras)):
            return
    raise ValueError(
        f"{option} must be one of {tuple(table)} or a keras.{_KINDS[option]}, got {value!r}"
    )


def resolve(value, table: dict, *args):
    """The registry entry for a name, called with ``args``; a Keras object (or its serialised
    dict) as given."""
    if isinstance(value, str):
        return table[value](*args)
    return keras.saving.deserialize_keras_object(value) if isinstance(value, dict) else value


def learning_rate(config, steps_per_epoch: int):
    """The optimizer's learning rate for ``config``: its schedule over ``epochs``; a float
    under a time budget (:class:`~unet_lib.training.callbacks.TimeBudget` then sets it)."""
    if config.time_budget_minutes is not None:  # the schedule is then a name (TrainConfig)
        return config.learning_rate
    total = config.epochs * steps_per_epoch
    warmup = min(config.warmup_epochs * steps_per_epoch, total // 2)
    return resolve(config.schedule, SCHEDULES, config.learning_rate, total, warmup)


def make_optimizer(config, steps_per_epoch: int):
    """The optimizer named (or given) by ``config.optimizer`` with :func:`learning_rate`."""
    rate = learning_rate(config, steps_per_epoch)
    return resolve(config.optimizer, OPTIMIZERS, rate, config.weight_decay)


def make_loss(config, *, ignore: bool = False):
    """The loss named (or given) by ``config.loss``; ``ignore``: pixels labelled
    ``IGNORE_LABEL`` count nowhere. ``config.class_weights`` reach the loss once, as the
    per-pixel sample weights of the training data (``datasets.sample_weights``), not here."""
    return resolve(config.loss, LOSSES, None, IGNORE_LABEL if ignore else None)
