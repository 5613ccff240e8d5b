"""The losses, optimizers and learning-rate schedules that ``train`` knows by name.

Adding one is a function and a registry line; ``train(loss=...)`` (``optimizer=``,
``schedule=``) takes a registered name or, like Keras's ``get()``, a Keras object used as
given (a ``keras.losses.Loss``, ``keras.optimizers.Optimizer`` or ``LearningRateSchedule``).
``keras`` and ``losses`` here are imported on first use, so the command line's ``--help``
stays fast.

Example:
    >>> def half_dice(class_weights, ignore_class):
    ...     return losses.DiceLoss(ignore_class=ignore_class, smooth=0.5)
    >>> LOSSES["half_dice"] = half_dice  # now train(loss="half_dice"), --loss half_dice
"""

from __future__ import annotations

import importlib

from unet_lib import IGNORE_LABEL


class _OnFirstUse:
    """A module imported on its first attribute access."""

    def __init__(self, name: str):
        self.name = name

    def __getattr__(self, attribute: str):
        return getattr(importlib.import_module(self.name), attribute)


keras, losses = _OnFirstUse("keras"), _OnFirstUse("unet_lib.losses")


# Losses: (class_weights: one per label class or None, ignore_class: a label or None) -> Loss
def dice_ce(class_weights, ignore_class):
    return losses.DiceCELoss(class_weights=class_weights, ignore_class=ignore_class)


def dice(class_weights, ignore_class):
    return losses.DiceLoss(ignore_class=ignore_class)


def ce(class_weights, ignore_class):
    return losses.DiceCELoss(
        dice_weight=0.0, class_weights=class_weights, ignore_class=ignore_class
    )


def focal(class_weights, ignore_class):
    return losses.FocalLoss(ignore_class=ignore_class)


def tversky(class_weights, ignore_class):
    return losses.TverskyLoss(ignore_class=ignore_class)


LOSSES = {"dice_ce": dice_ce, "dice": dice, "ce": ce, "focal": focal, "tversky": tversky}


# Optimizers: (learning_rate: a float or a LearningRateSchedule, weight_decay) -> Optimizer
def adam(learning_rate, weight_decay):
    return keras.optimizers.Adam(learning_rate)


def adamw(learning_rate, weight_decay):
    return keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay or 1e-4)


def sgd(learning_rate, weight_decay):
    return keras.optimizers.SGD(learning_rate, momentum=0.99, nesterov=True)


OPTIMIZERS = {"adam": adam, "adamw": adamw, "sgd": sgd}


# Schedules: (peak rate, total steps, warm-up steps) -> a float, or a schedule of the step.
# One rule for epochs and time budgets: an epoch run reads it at the optimizer's step, a
# time budget at the fraction of its time used (callbacks.TimeBudget).
def constant(peak, total_steps, warmup_steps):
    return peak


def cosine(peak, total_steps, warmup_steps):
    """Linear warm-up from 1 % of the peak, then a cosine decay to 1 % of it at the end."""
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak * 0.01 if warmup_steps else peak,
        decay_steps=max(1, total_steps - warmup_steps),
        alpha=0.01,
        warmup_target=peak if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


#: ``plateau`` starts constant; ``train`` halves it when validation stops improving.
SCHEDULES = {"constant": constant, "cosine": cosine, "plateau": constant}
_KINDS = {"loss": "losses.Loss", "optimizer": "optimizers.Optimizer",
          "schedule": "optimizers.schedules.LearningRateSchedule"}  # fmt: skip


def check_registered(option: str, value, table: dict) -> None:
    """Raises ``ValueError`` unless ``value`` is a name in ``table``, a Keras object of the
    option's kind or its serialised form (a dict, as ``config.json`` stores objects)."""
    if isinstance(value, dict) or (isinstance(value, str) and value in table):
        return
    if not isinstance(value, str):
        base = keras
        for part in _KINDS[option].split("."):
            base = getattr(base, part)
        if isinstance(value, base):
            return
    raise ValueError(
        f"{option} must be one of {tuple(table)} or a keras.{_KINDS[option]}, got {value!r}"
    )


def resolve(value, table: dict):
    """The registry entry for a name; a Keras object (or its serialised dict) as given."""
    if isinstance(value, str):
        return table[value]
    return keras.saving.deserialize_keras_object(value) if isinstance(value, dict) else value


def learning_rate(config, steps_per_epoch: int):
    """The optimizer's learning rate for ``config``: its schedule over ``epochs``; a float
    under a time budget (:class:`~unet_lib.training.callbacks.TimeBudget` then sets it)."""
    if not isinstance(config.schedule, str):
        return resolve(config.schedule, SCHEDULES)  # a LearningRateSchedule object
    if config.time_budget_minutes is not None:
        return config.learning_rate
    total = config.epochs * steps_per_epoch
    warmup = min(config.warmup_epochs * steps_per_epoch, total // 2)
    return SCHEDULES[config.schedule](config.learning_rate, total, warmup)


def make_optimizer(config, steps_per_epoch: int):
    """The optimizer named (or given) by ``config.optimizer`` with :func:`learning_rate`."""
    if not isinstance(config.optimizer, str):
        return resolve(config.optimizer, OPTIMIZERS)
    return OPTIMIZERS[config.optimizer](learning_rate(config, steps_per_epoch), config.weight_decay)


def make_loss(config, *, ignore: bool = False):
    """The loss named (or given) by ``config.loss``; ``ignore``: pixels labelled
    ``IGNORE_LABEL`` count nowhere."""
    if not isinstance(config.loss, str):
        return resolve(config.loss, LOSSES)
    weights = config.class_weights if isinstance(config.class_weights, list) else None
    return LOSSES[config.loss](weights, IGNORE_LABEL if ignore else None)
