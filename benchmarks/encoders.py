"""Encoders from scratch against the plain U-Net: DSB2018 nuclei (RGB), the defaults, the same
split and time budget, scored on the held-out images as :mod:`benchmarks.quality` scores them.

    .venv/bin/python -m benchmarks.encoders --json benchmarks/results/encoders_DATE.json
    .venv/bin/python -m benchmarks.encoders --resume   # the runs already scored are taken

Each encoder trains in a fresh process (``python -m unet_lib train --encoder NAME``) with
random weights (no weights can be downloaded on the machines this runs on); the plain U-Net
is the quality benchmark's ``defaults`` run of the same set, in the same output folder, so
``--resume`` reuses one that :mod:`benchmarks.quality` already scored. Reported per model:
held-out Dice and IoU, parameters, optimizer steps in the budget and seconds per step (the
training time over the steps, validation and saving included), and both against the plain
U-Net as ratios.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

from benchmarks import quality
from benchmarks.bench_common import ROOT, Report

ENCODERS = ("resnet50", "efficientnetb0", "mobilenetv2", "vgg16")
BASELINE = "defaults"  # the quality benchmark's recipe name for the plain U-Net


def run_models(names, root: Path, out: Path, minutes: float, resume: bool) -> list[dict]:
    """One scored result per model name (``defaults`` or an encoder), trained unless
    ``resume`` finds it saved under ``out/dsb/NAME.json``."""
    results = []
    for name in names:
        saved = out / "dsb" / f"{name}.json"
        if resume and saved.is_file():
            print(f"{name}: taken from {saved}", flush=True)
            results.append(json.loads(saved.read_text()))
            if "parameters" not in results[-1]:  # scored before the count was recorded
                from unet_lib import load_model

                model = load_model(Path(results[-1]["run"]) / "best.keras")
                results[-1]["parameters"] = model.count_params()
            continue
        result = quality.run_one("dsb", root, out, minutes, _log, recipe=name)
        saved.write_text(json.dumps(result, indent=1))
        results.append(result)
    return results


def _log(result: dict) -> None:
    print(f"  {result['recipe']}: Dice {result['test']['mean_dice']:.4f}, {result['steps']} "
          f"steps, {result['train_seconds']:.0f} s", flush=True)  # fmt: skip


def add_table(report: Report, results: list[dict]) -> None:
    """The comparison table, the plain U-Net first and every ratio against it."""
    base = next(r for r in results if r["recipe"] == BASELINE)
    base_step = base["train_seconds"] / base["steps"]
    rows = report.table(
        "DSB2018 nuclei, held-out images: encoders (random weights) against the plain U-Net",
        ["model", "parameters", "nucleus Dice", "IoU", "Dice - U-Net's", "steps",
         "s / step", "time per step vs U-Net", "best epoch"],
    )  # fmt: skip
    for r in results:
        step = r["train_seconds"] / r["steps"]
        dice = r["test"]["mean_dice"]
        rows.append([
            "plain U-Net" if r["recipe"] == BASELINE else r["recipe"],
            f"{r['parameters'] / 1e6:.1f} M", f"{dice:.4f}",
            f"{r['test']['mean_iou']:.4f}", f"{dice - base['test']['mean_dice']:+.4f}",
            r["steps"], f"{step:.3f}", f"{step / base_step:.2f}x", r["best_epoch"],
        ])  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=25.0, help="training budget per model")
    parser.add_argument("--encoders", default=",".join(ENCODERS), help="comma-separated subset")
    parser.add_argument(
        "--resume", action="store_true", help="take the runs scored before (OUT/dsb/NAME.json)"
    )
    parser.add_argument("--data-root", type=Path, help="default: UNET_SHARED_DATA")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "quality")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.encoders.split(",") if n.strip()]
    if not names or set(names) - set(ENCODERS):
        parser.error(f"--encoders {args.encoders!r}: choose from {ENCODERS}")
    root = quality.data_root(args.data_root)
    if not (root / quality.DATASETS["dsb"]["folder"]).is_dir():
        print(f"encoders: dsb2018_nuclei not found under {root}; set UNET_SHARED_DATA")
        return 2
    start = time.perf_counter()
    results = run_models([BASELINE, *names], root, args.out, args.minutes, args.resume)
    report = Report()
    add_table(report, results)
    report.note(f"{args.minutes:g} training minutes per model with the defaults (the plan "
                "picks the patch and batch; an encoder takes base_filters 16), random initial "
                "weights, TTA and threshold chosen on each run's validation images")  # fmt: skip
    print(report.render())
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    print(f"\nencoders, {stamp}, {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"results": results, **report.to_json()}, indent=1))
    if args.markdown:
        args.markdown.write_text(report.render(markdown=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
