"""TrainConfig: every choice of a training run. Each field's metadata holds its ``help``;
``derived``: the default comes from the data (:mod:`.plan`, unless ``auto_configure=False``);
and the ``train`` flag generated from it: ``flag`` (``True``: ``--field-name``, a name, or
``False`` for none), ``convert`` (flag text -> value) and further ``argparse`` settings."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from unet_lib.checks import from_fields, is_int
from unet_lib.training.registry import LOSSES, OPTIMIZERS, SCHEDULES, check_registered

if TYPE_CHECKING:
    import keras

CONFIG_FILE = "config.json"
SPLITS = ("random", "contiguous")


def option(default, help, *, derived=False, flag=True, convert=None, **argparse):
    """A :class:`TrainConfig` field with its metadata (module docstring); ``[]``, ``{}``: new."""
    meta = dict(help=help, derived=derived, flag=flag, convert=convert, argparse=argparse)
    if isinstance(default, list | dict):
        return field(default_factory=type(default), metadata=meta)
    return field(default=default, metadata=meta)


def _labels(text: str) -> dict:
    from unet_lib.data import load_label_mapping

    return load_label_mapping(".", text).to_dict()


def _class_weights(text: str):
    text = text.strip()
    try:
        return "balanced" if text == "balanced" else [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(
            f"--class-weights takes 'balanced' or one number per class (1,5,2), got {text!r}"
        ) from None


_ON_OFF = {"auto": "auto", "on": True, "off": False}
# model.ENCODERS' keys and log2 of model.ENCODER_STRIDE (a test holds them equal; this module
# stays free of Keras so that the command line starts fast)
ENCODER_NAMES = ("resnet50", "vgg16", "mobilenetv2", "efficientnetb0")
ENCODER_DEPTH = 5
MIN_PATCH = 8
MIN_BOTTLENECK = 2  # pixels left on the short side after depth halvings


def check_depth(depth: int, side: int, what: str) -> None:
    """Raises ``ValueError`` when ``depth`` halvings leave less than ``MIN_BOTTLENECK`` pixels
    of a ``side`` (the short side of ``what``: the patch size, the smallest image), naming the
    largest depth that fits. ``check_depth(10, 64, "the patch size")``: 64 / 2**10 < 2."""
    if side / 2**depth < MIN_BOTTLENECK:
        fits = max(1, int(math.log2(max(side, 1) / MIN_BOTTLENECK)))
        raise ValueError(
            f"depth {depth} halves {what} ({side} px) to {side / 2**depth:.2g} px; use "
            f"--depth {fits} or less (or a larger patch)"
        )


def is_tta_setting(value) -> bool:
    """True, False, "auto", or a number of transforms 1..8 (``inference.tta_transforms``)."""
    if isinstance(value, bool) or value == "auto":
        return True
    return isinstance(value, int) and 1 <= value <= 8


@dataclass
class TrainConfig:
    """Every choice of a training run; written to ``config.json`` as it was resolved."""

    # data
    data: str | None = option(None, "dataset folder: images/, masks/, dataset.json", flag=False)
    val_data: str | None = option(None, "a separate validation folder", metavar="DIR", group="v")
    val_fraction: float = option(0.2, "share of the pairs that validates", group="v")
    split: str = option("random", "seeded random, or the last sorted stems", derived=True,
                        choices=SPLITS)  # fmt: skip
    labels: dict | None = option(None, "label mapping overriding dataset.json", derived=True,
                                 metavar="JSON_OR_FILE", convert=_labels)  # fmt: skip
    channels: int | None = option(None, "convert images to 1 or 3 channels", derived=True,
                                  choices=(1, 3))  # fmt: skip
    train_stems: list[str] = option([], "training stems", derived=True, flag=False)
    val_stems: list[str] = option([], "validation stems", derived=True, flag=False)
    # model
    num_classes: int | None = option(None, "model outputs (1: binary)", derived=True, flag=False)
    depth: int = option(4, "U-Net levels", derived=True)
    base_filters: int = option(32, "filters of the first level", derived=True)
    convs_per_level: int = option(2, "convolutions per level")
    batch_norm: bool = option(True, "batch normalisation")
    dropout: float = option(0.0, "dropout rate")
    upsampling: str = option("transpose", "decoder upsampling", choices=("transpose", "bilinear"))
    padding: str = option("same", "convolution padding", choices=("same", "valid"))
    encoder: str | None = option(None, "a keras.applications backbone as the encoder",
                                 choices=ENCODER_NAMES)  # fmt: skip
    encoder_weights: str | None = option(None, "'imagenet' or the path of the backbone's "
                                         "weights file (none: random)", metavar="W")  # fmt: skip
    freeze_encoder: bool = option(False, "keep the backbone's weights fixed")
    freeze_encoder_epochs: int = option(0, "keep the backbone fixed for the first N epochs, "
                                        "then train it too (the new decoder warms up first)",
                                        metavar="N")  # fmt: skip
    intensity_scaling: list | None = option(None, "each channel's (low, high) stretched to (0, "
                                            "1) by the model's first layer (derived for data "
                                            "using under a quarter of their stored range)",
                                            derived=True, flag=False)  # fmt: skip
    # objective
    loss: str = option("dice_ce", "a registered loss, or a keras Loss", derived=True,
                       choices=LOSSES)  # fmt: skip
    class_weights: str | list[float] | None = option(None, "'balanced' or one weight per "
                                                     "class: 1,5,2", derived=True, metavar="W",
                                                     convert=_class_weights)  # fmt: skip
    weight_map: bool = option(False, "the U-Net paper's border weight map")
    weight_map_w0: float = option(10.0, "weight map: border weight")
    weight_map_sigma: float = option(5.0, "weight map: border width (pixels)")
    # optimisation
    optimizer: str = option("adam", "a registered optimizer, or a keras one", choices=OPTIMIZERS)
    learning_rate: float = option(1e-3, "peak learning rate", metavar="LR")
    weight_decay: float = option(0.0, "AdamW weight decay (0: 1e-4)")
    schedule: str = option("cosine", "learning-rate schedule", derived=True, choices=SCHEDULES)
    warmup_epochs: int = option(1, "epochs of warm-up (cosine)")
    epochs: int = option(50, "epochs to train")
    time_budget_minutes: float | None = option(
        None, "train for this wall-clock time instead", flag="--time-budget", metavar="MINUTES"
    )
    steps_per_epoch: int | None = option(
        None, "steps per epoch (none: one pass over the data)", derived=True
    )
    batch_size: int = option(8, "images per step and replica", derived=True)
    patch_size: int | None = option(
        None, "random crops of P x P (none: whole images)", derived=True, metavar="P"
    )
    foreground_fraction: float = option(0.0, "share of patches centred on a foreground pixel",
                                        derived=True)  # fmt: skip
    augment: dict | bool = option(True, "augmentation (a dict: AugmentConfig fields)",
                                  derived=True, flag="--no-augment")  # fmt: skip
    early_stopping: int | None = option(
        None, "stop after this many epochs without a better validation Dice (none: off)",
        metavar="PATIENCE",
    )  # fmt: skip
    # run
    seed: int = option(0, "seed of weights, split, shuffling, augmentation")
    deterministic: bool = option(False, "reproducible on this CPU (slower)")
    precision: str = option("auto", "compute precision", derived=True,
                            choices=("auto", "float32", "bfloat16", "float16"))  # fmt: skip
    jit_compile: str | bool = option("auto", "XLA compilation", flag=False)
    devices: dict = option({}, "the devices used (written by train)", flag=False)
    # self-configuration (unet_lib.training.plan)
    auto_configure: bool = option(True, "deriving the options not given from the data",
                                  flag="--no-auto-configure")  # fmt: skip
    eval_tta: bool | int | str = option("auto", "test-time augmentation when evaluating (auto: "
                                        "if it helps on validation, with the flips and turns "
                                        "that training used)", choices=tuple(_ON_OFF),
                                        convert=_ON_OFF.get)  # fmt: skip
    eval_threshold: float | str = option("auto", "binary threshold (auto: best on validation)",
                                         flag=False)  # fmt: skip
    plan: dict = option({}, "fingerprint, derived options, reasons", flag=False)

    def __post_init__(self):
        for name in ("data", "val_data"):  # Path objects are welcome; config.json holds text
            if isinstance(getattr(self, name), os.PathLike):
                setattr(self, name, os.fspath(getattr(self, name)))
        for name, table in (("loss", LOSSES), ("schedule", SCHEDULES), ("optimizer", OPTIMIZERS)):
            check_registered(name, getattr(self, name), table)
        self._check_numbers()
        budget, threshold, tta = self.time_budget_minutes, self.eval_threshold, self.eval_tta
        problems = {
            f"split must be one of {SPLITS}": self.split not in SPLITS,
            "epochs must be >= 1": budget is None and self.epochs < 1,
            "time_budget_minutes must be positive": budget is not None and budget <= 0,
            "batch_size must be >= 1": self.batch_size < 1,
            "val_fraction must be in [0, 1)": not 0.0 <= self.val_fraction < 1.0,
            "learning_rate must be positive": self.learning_rate <= 0,
            "early_stopping must be a whole number >= 1 or None": self.early_stopping is not None
            and not (is_int(self.early_stopping) and self.early_stopping >= 1),
            "eval_tta must be True, False, 'auto' or a count 1..8": not is_tta_setting(tta),
            "eval_threshold must be in (0, 1) or 'auto'": threshold != "auto"
            and not 0 < float(threshold) < 1,
            "freeze_encoder_epochs needs an encoder (encoder=NAME) and freeze_encoder=False": (
                self.freeze_encoder_epochs and (self.encoder is None or self.freeze_encoder)
            ),
        }
        for message, bad in problems.items():
            if bad:
                raise ValueError(f"{message}, got {getattr(self, message.split()[0])!r}")
        if budget is not None and self.schedule not in ("cosine", "constant"):
            raise ValueError(
                f"schedule={self.schedule!r} cannot follow a time budget; use cosine or constant"
            )

    def _check_numbers(self) -> None:
        """Whole-number options, the patch size, and the depth against the patch."""
        lows = {"epochs": 1, "batch_size": 1, "depth": 1, "base_filters": 1,
                "convs_per_level": 1, "warmup_epochs": 0, "seed": 0,
                "freeze_encoder_epochs": 0}  # fmt: skip
        optional = {"steps_per_epoch": 1, "num_classes": 1}
        for name, low in {**lows, **optional}.items():
            value = getattr(self, name)
            if (value is not None or name in lows) and not (is_int(value) and value >= low):
                none = " (or None: derived)" if name in optional else ""
                raise ValueError(f"{name} must be a whole number >= {low}{none}, got {value!r}")
        patch = self.patch_size
        sides = [patch] if is_int(patch) else list(patch) if isinstance(patch, list | tuple) else []
        if patch is not None and not (sides and len(sides) <= 2 and all(
                is_int(v) and v >= MIN_PATCH for v in sides)):  # fmt: skip
            raise ValueError(
                f"patch_size must be a whole number >= {MIN_PATCH} or (height, width) (or None: "
                f"whole images), got {patch!r}"
            )
        if sides:
            check_depth(self.size_depth, min(sides), "the patch size")

    @property
    def size_depth(self) -> int:
        """Halvings of the input: ``depth``, or the encoder's 5 (sizes divide by 2**this)."""
        return self.depth if self.encoder is None else ENCODER_DEPTH

    def to_dict(self) -> dict:
        """The fields as JSON-ready values; Keras objects in their serialised form."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        return from_fields(cls, values, "training options:")

    def augment_config(self):
        """The :class:`~unet_lib.data.AugmentConfig` of ``augment`` (``None``: off)."""
        from unet_lib.data import AugmentConfig

        if not self.augment:
            return None
        values = {} if self.augment is True else dict(self.augment)
        if self.intensity_scaling is not None:  # intensity changes in the model's units
            values.setdefault("intensity_window", self.intensity_scaling)
        return AugmentConfig.from_dict(values)


@dataclass
class TrainResult:
    """What :func:`unet_lib.train` returns."""

    model: keras.Model  # the best model by validation Dice
    history: dict[str, list[float]]
    run_dir: Path
    config: TrainConfig
    state: dict


def _plain(value):
    if value is None or isinstance(value, str | int | float | bool | list | tuple | dict):
        return copy.deepcopy(value)
    import keras

    return keras.saving.serialize_keras_object(value)
