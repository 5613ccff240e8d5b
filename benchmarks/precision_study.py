"""Does bfloat16 keep the Dice of float32? Same-seed pairs of fixed-length training runs.

    .venv/bin/python -m benchmarks.precision_study    # 6 + 3 pairs; 4 + 2 took 2226 s here
    .venv/bin/python -m benchmarks.precision_study --seeds 0,1 --datasets built-in --epochs 2

Each pair trains ``unet_lib.train`` twice with the same seed (same initial weights, same
batches, same augmentation) for the same number of steps, once in float32 and once in mixed
bfloat16, and compares the final validation Dice. Pairs on several seeds give the mean
difference and its spread; the rule (issue #7) is that bfloat16 may become the CPU default
where the Dice holds: mean(bfloat16 - float32) >= -0.005. The script prints the per-pair and
per-epoch differences, the mean with a 95 % confidence interval (Student t), and PASS / FAIL
for the rule; it exits 1 on FAIL. ``benchmarks/run.py --sections precision`` runs one short
pair per data set as a check; this is the longer study behind the default (README,
"Precision study").

ISBI 2012 comes from ``UNET_SHARED_DATA`` (or ``../shared/data``) and is skipped when absent.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from benchmarks.bench_common import Report, median

RULE = -0.005  # mean Dice change bfloat16 - float32 that still counts as "holds"
# Student t, two-sided 95 %, by degrees of freedom (1 .. 10); beyond that ~ the normal 1.96
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def mean_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and its 95 % confidence interval (t distribution); nan bounds for one value.

    Example:
        >>> [round(v, 3) for v in mean_interval([1.0, 3.0])]  # sd sqrt(2): half 12.706 * 1
        [2.0, -10.706, 14.706]
    """
    n = len(values)
    mean = float(np.mean(values))
    if n < 2:
        return mean, math.nan, math.nan
    half = (T95[n - 2] if n - 1 <= len(T95) else 1.96) * float(np.std(values, ddof=1)) / n**0.5
    return mean, mean - half, mean + half


def report_pairs(pairs: dict, other: str) -> Report:
    report = Report()
    rows = report.table(
        f"Same-seed pairs: final validation Dice, float32 and {other}",
        ["data", "seed", "steps", "batch", "float32", other, "Δ", "Δ per epoch",
         "speed x f32 (median step)"],
    )  # fmt: skip
    summary = report.table(
        "Mean difference per data set (95 % confidence interval, t distribution)",
        ["data", "pairs", "mean Δ", "CI low", "CI high", "float32 seed spread"],
    )
    for dataset, items in pairs.items():
        deltas = []
        for f32, oth in items:
            d = oth["val_dice"] - f32["val_dice"]
            deltas.append(d)
            history = zip(f32["val_dice_history"], oth["val_dice_history"], strict=True)
            per_epoch = [b - a for a, b in history]
            rows.append([dataset, f32["seed"], len(f32["steps"]), f32["batch_size"],
                         f32["val_dice"], oth["val_dice"], d,
                         " ".join(f"{x:+.3f}" for x in per_epoch),
                         f32["step"] / oth["step"]])  # fmt: skip
        mean, low, high = mean_interval(deltas)
        dice32 = [f32["val_dice"] for f32, _ in items]
        summary.append([dataset, len(items), mean, low, high, max(dice32) - min(dice32)])
        report.target(f"mean final Dice, {other} - float32, {dataset}", mean, RULE, ">=",
                      f"{len(items)} pairs, 95 % CI [{low:+.4f}, {high:+.4f}]")  # fmt: skip
    speed = [f32["step"] / oth["step"] for items in pairs.values() for f32, oth in items]
    if speed:
        report.note(f"{other} step / float32 step, median over runs: {median(speed):.2f}x faster")
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4,5", help="comma-separated (default 6)")
    parser.add_argument("--isbi-seeds", default="0,1,2", help="ISBI 2012 seeds (default 3)")
    parser.add_argument("--datasets", default="built-in,isbi", help="built-in and/or isbi")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=15, help="steps per epoch (default 15)")
    parser.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--precision", default="bfloat16", help="compared with float32")
    parser.add_argument("--json", type=Path, help="also write the runs and results as JSON")
    parser.add_argument("--markdown", type=Path, help="also write the tables as Markdown")
    args = parser.parse_args(argv)
    from benchmarks import bench_train as bt

    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    if "isbi" in datasets and bt.isbi_data() is None:
        print("ISBI 2012 not found (UNET_SHARED_DATA or ../shared/data): skipped")
        datasets.remove("isbi")
    start = time.perf_counter()
    pairs = {}
    for dataset in datasets:
        seeds = args.isbi_seeds if dataset == "isbi" else args.seeds
        pairs[dataset] = bt.same_seed_pairs(
            dataset, [int(s) for s in seeds.split(",")], other=args.precision,
            epochs=args.epochs, steps_per_epoch=args.steps, batch_size=args.batch,
        )  # fmt: skip
    report = report_pairs(pairs, args.precision)
    elapsed = time.perf_counter() - start
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    print(report.render())
    print(f"\nprecision study, {stamp}, {elapsed:.0f} s: {args.epochs} x {args.steps} steps, "
          f"batch {args.batch}; {len(report.failed)} of {len(report.targets)} failed")  # fmt: skip
    if args.json:
        runs = {d: [[a, b] for a, b in items] for d, items in pairs.items()}
        data = {**report.to_json(), "runs": runs, "args": vars(args) | {"json": None}}
        args.json.write_text(json.dumps(data, indent=1, default=str))
    if args.markdown:
        args.markdown.write_text(report.render(markdown=True) + "\n")
    return report.exit_code()


if __name__ == "__main__":
    sys.exit(main())
