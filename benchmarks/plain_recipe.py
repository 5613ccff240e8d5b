"""The plain recipe every quality figure is shown against: what a careful Keras user would
train without self-configuration, on the same split and time budget as the defaults.

    .venv/bin/python -m benchmarks.plain_recipe --data TRAIN --out RUN --time-budget 25

U-Net of width 32 with batch normalisation, cross-entropy (unlabelled pixels ignored),
horizontal flips only, random 256 x 256 crops in batches of 8, Adam at 1e-3 with a cosine
decay, float32, argmax / 0.5 threshold and no test-time augmentation. The options the recipe
does not name (the validation split, the epoch length) are the defaults' own, so validation
and model selection are the same for both.
"""

from __future__ import annotations

import argparse
import sys

#: the recipe's options, given to ``unet_lib.train`` explicitly (so the plan derives no other)
RECIPE = {
    "base_filters": 32,
    "depth": 4,
    "batch_norm": True,
    "loss": "ce",
    "class_weights": None,
    "augment": {
        "flip": True,
        "flip_vertical": False,
        "rotate90": False,
        "affine": False,
        "elastic": False,
        "intensity": False,
        "noise": False,
    },  # fmt: skip
    "patch_size": 256,
    "foreground_fraction": 0.0,
    "batch_size": 8,
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "schedule": "cosine",
    "precision": "float32",
    "eval_tta": False,
    "eval_threshold": 0.5,
}


def describe() -> str:
    """The recipe in one line, for reports."""
    return (
        "U-Net width 32 + batch norm, cross-entropy, horizontal flips only, 256^2 crops, "
        "batch 8, Adam 1e-3 with cosine decay, float32, no TTA"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="training folder (images/, masks/)")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--time-budget", type=float, required=True, metavar="MINUTES")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import unet_lib

    unet_lib.train(args.data, args.out, time_budget_minutes=args.time_budget, seed=args.seed,
                   overwrite=True, verbose=2, **RECIPE)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
