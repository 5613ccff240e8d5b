"""Quality on real data: the self-configured defaults and, beside them, a plain recipe
(:mod:`benchmarks.plain_recipe`), each trained on the same split and time budget, scored on
held-out images never used for training or model selection.

    .venv/bin/python -m benchmarks.quality                    # all four sets, both recipes
    .venv/bin/python -m benchmarks.quality --minutes 0.25 --smoke   # end to end, ~4 min
    .venv/bin/python -m benchmarks.quality --datasets facade --recipes defaults --resume

The defaults are trained exactly as a user would::

    python -m unet_lib train --data TRAIN --out RUN --time-budget MINUTES

(in a fresh process, as is the plain recipe), then the best model is scored on the test
block with the test-time-augmentation and threshold choices the run made on its validation
images (``eval_tta``, ``eval_threshold``; the plain recipe: none and 0.5). The data come
from ``UNET_SHARED_DATA`` (or ``--data-root``, default ``../shared/data``); the train / test
folders are made of symbolic links under ``--out``, with a ``dataset.json`` that says which
mask value is which class. Each scored run is also written to ``OUT/SET/RECIPE.json``;
``--resume`` takes those instead of training again, so one run of everything can be spread
over several sittings. Exits 1 when a target fails (not with ``--smoke``).

* ISBI 2012: slices 0-17 train, 18-23 test; pixel error <= 0.0611 and Rand error <= 0.0382
  (the U-Net paper's challenge figures: a level to reach, on a different test block),
  membrane Dice >= 0.85.
* DSB2018 nuclei: seeded 80/20 split of the 107 tiles; nucleus Dice >= 0.85.
* VNC multi-class: slices 0-15 train, 16-19 test, 5 classes; mean IoU of the five (no class
  is named ``background``, so intracellular counts too) >= 0.60.
* LabelMeFacade: ``split.csv`` (100 train, 106 test photographs), 9 classes; mean IoU over
  all nine >= the plain recipe's + 0.03, and every class of more than 0.5 % of the test
  pixels predicted somewhere.
* Every set: the defaults at least match the plain recipe (within 0.005) on its headline
  figure.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import plain_recipe
from benchmarks.bench_common import ROOT, Report

HERE = Path(__file__).resolve().parent

ISBI_LABELS = {"background": 255, "membrane": 0}
DSB_LABELS = {"background": 0, "nucleus": 255}
# intracellular is class 0 but not named "background": the means are over all five classes
VNC_LABELS = {
    "intracellular": 255,
    "membrane": [0, 32, 64, 96, 128],
    "glia": 159,
    "mitochondria": 191,
    "synapse": 223,
}
DATASETS = {
    "isbi": dict(folder="isbi2012_membrane", labels=ISBI_LABELS, name="ISBI 2012"),
    "dsb": dict(folder="dsb2018_nuclei", labels=DSB_LABELS, name="DSB2018 nuclei"),
    "vnc": dict(folder="vnc_multiclass", labels=VNC_LABELS, name="VNC multi-class"),
    # labels None: the set's own dataset.json (class indices)
    "facade": dict(folder="labelme_facade", labels=None, name="LabelMeFacade"),
}
RECIPES = ("defaults", "plain")
#: per set, the figure the two recipes are compared on: (label, key in "test", higher is better)
HEADLINE = {
    "isbi": ("challenge pixel error", "challenge_pixel_error", False),
    "dsb": ("nucleus Dice", "mean_dice", True),
    "vnc": ("mean IoU", "mean_iou", True),
    "facade": ("mean IoU (9 classes)", "mean_iou", True),
}
MATCH = 0.005  # the defaults may trail the plain recipe's headline figure by at most this
FACADE_MARGIN = 0.03  # ... and must beat it by this on the photographs
VISIBLE_CLASS = 0.005  # a class of more than this share of the test pixels must be predicted
TARGETS = {
    "isbi": [
        ("pixel error", "pixel_error", 0.0611, "<="),
        ("Rand error", "rand_error", 0.0382, "<="),
        ("membrane Dice", "mean_dice", 0.85, ">="),
        # the paper's two figures as the challenge scored them (unet_lib.evaluation.challenge)
        ("pixel error, challenge's definition", "challenge_pixel_error", 0.0611, "<="),
        ("Rand error, challenge's definition", "challenge_rand_error", 0.0382, "<="),
    ],
    "dsb": [("nucleus Dice", "mean_dice", 0.85, ">=")],
    "vnc": [("mean IoU (5 classes)", "mean_iou", 0.60, ">=")],
    "facade": [
        ("classes over 0.5 % of the pixels never predicted", "unpredicted_classes", 0, "<=")
    ],
}


def data_root(given: Path | None) -> Path:
    if given is not None:
        return given
    env = os.environ.get("UNET_SHARED_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def split_stems(
    key: str, stems: list[str], seed: int = 0, split_csv: Path | None = None
) -> tuple[list[str], list[str]]:
    """The fixed splits: ISBI 0-17 / 18-23, VNC 0-15 / 16-19, DSB seeded 80/20, the facades
    by their ``split.csv`` (``stem,split`` rows, split ``train`` or ``test``)."""
    if key == "facade":
        rows = [line.split(",") for line in Path(split_csv).read_text().split()[1:]]
        chosen = {stem: part for stem, part in rows}
        return ([s for s in stems if chosen.get(s) == "train"],
                [s for s in stems if chosen.get(s) == "test"])  # fmt: skip
    if key == "isbi":
        return [s for s in stems if int(s) <= 17], [s for s in stems if int(s) >= 18]
    if key == "vnc":
        return [s for s in stems if int(s) <= 15], [s for s in stems if int(s) >= 16]
    order = np.random.default_rng(seed).permutation(sorted(stems))
    n_test = round(0.2 * len(stems))
    return sorted(order[n_test:].tolist()), sorted(order[:n_test].tolist())


def link_split(source: Path, dest: Path, stems: list[str], labels: dict) -> Path:
    """A dataset folder of symbolic links to ``stems`` of ``source`` plus a dataset.json."""
    for sub in ("images", "masks"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
        files = {p.stem: p for p in (source / sub).iterdir()}
        for stem in stems:
            link = dest / sub / files[stem].name
            if not link.is_symlink():
                link.symlink_to(files[stem].resolve())
    (dest / "dataset.json").write_text(json.dumps({"labels": labels}, indent=1))
    return dest


def isbi_challenge(model, test_dir: Path, tta, threshold: float) -> dict:
    """The ISBI 2012 challenge's own scores of the test block (``evaluation.challenge``):
    1 - the best cell F-score and the best Rand error over the thresholds 0.0-1.0 of the
    membrane probabilities (an oracle choice on the test labels, as the challenge scored the
    U-Net paper), and the same two at the run's own threshold (no oracle)."""
    from unet_lib.data import load_dataset
    from unet_lib.evaluation import challenge_scores
    from unet_lib.inference import predict_probabilities

    data = load_dataset(test_dir)
    probs = [predict_probabilities(model, image, tta=tta) for image in data.images]
    truths = [m[..., 0] if m.ndim == 3 else m for m in data.masks]
    best = challenge_scores(truths, probs)
    # the run calls a pixel membrane when p > threshold: cells are 1 - p > 1 - threshold
    own = challenge_scores(truths, probs, thresholds=[1.0 - threshold])
    return {
        "challenge_pixel_error": best["pixel_error"],
        "challenge_pixel_threshold": best["pixel_threshold"],
        "challenge_rand_error": best["rand_error"],
        "challenge_rand_threshold": best["rand_threshold"],
        "challenge_pixel_error_at_run_threshold": own["pixel_error"],
        "challenge_rand_error_at_run_threshold": own["rand_error"],
    }


def prepare_split(key: str, root: Path, out: Path) -> tuple[Path, Path, int, int]:
    """The linked ``(train, test)`` folders of a set under ``out/key`` and their sizes."""
    spec = DATASETS[key]
    source = root / spec["folder"]
    labels = spec["labels"] or json.loads((source / "dataset.json").read_text())["labels"]
    stems = sorted(p.stem for p in (source / "images").iterdir())
    train_stems, test_stems = split_stems(key, stems, split_csv=source / "split.csv")
    train_dir = link_split(source, out / key / "train", train_stems, labels)
    test_dir = link_split(source, out / key / "test", test_stems, labels)
    return train_dir, test_dir, len(train_stems), len(test_stems)


def train_command(recipe: str, train_dir: Path, run_dir: Path, minutes: float) -> list[str]:
    """The fresh-process command that trains ``recipe``: ``defaults``, ``plain``, or the name
    of an encoder (the defaults with ``--encoder NAME``, :mod:`benchmarks.encoders`)."""
    if recipe == "plain":
        return [sys.executable, "-m", "benchmarks.plain_recipe", "--data", str(train_dir),
                "--out", str(run_dir), "--time-budget", str(minutes)]  # fmt: skip
    encoder = [] if recipe == "defaults" else ["--encoder", recipe]
    return [sys.executable, "-m", "unet_lib", "train", "--data", str(train_dir),
            "--out", str(run_dir), "--time-budget", str(minutes), "--quiet",
            "--overwrite", *encoder]  # fmt: skip


def run_one(key: str, root: Path, out: Path, minutes: float, log, score_run=None,
            recipe: str = "defaults") -> dict:  # fmt: skip
    """Trains ``recipe`` in a fresh process and scores the test block (or, with
    ``score_run``, scores that existing run folder's best model without training)."""
    spec = DATASETS[key]
    train_dir, test_dir, n_train, n_test = prepare_split(key, root, out)
    run_dir = Path(score_run) if score_run else out / key / recipe
    wall, logfile = None, out / key / f"train_{recipe}.log"
    if score_run is None:
        command = train_command(recipe, train_dir, run_dir, minutes)
        print(f"{spec['name']} ({recipe}): {' '.join(command[1:])}", flush=True)
        start = time.perf_counter()
        with open(logfile, "w") as stream:
            done = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, cwd=ROOT)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            tail = logfile.read_text().splitlines()[-15:]
            raise RuntimeError(f"{spec['name']}: training failed:\n" + "\n".join(tail))
    result = score(key, run_dir, test_dir, out / key / f"evaluation_{recipe}.json")
    result.update(recipe=recipe, train_images=n_train, test_images=n_test, wall_seconds=wall)
    log(result)
    return result


def score(key: str, run_dir: Path, test_dir: Path, report_file: Path) -> dict:
    """The test-block figures of a finished run folder's ``best.keras``."""
    from unet_lib import load_model
    from unet_lib.evaluation import evaluate, save_json
    from unet_lib.training import evaluation_settings

    config = json.loads((run_dir / "config.json").read_text())
    state = json.loads((run_dir / "state.json").read_text())
    model = load_model(run_dir / "best.keras")
    tta, threshold = evaluation_settings(config)
    start = time.perf_counter()
    report = evaluate(model, test_dir, tta=tta, threshold=threshold)
    eval_seconds = time.perf_counter() - start
    save_json(report, report_file)
    per_class = report["per_class"]
    result = {
        "key": key,
        "name": DATASETS[key]["name"],
        "run": str(run_dir),
        "train_seconds": state["train_seconds"],
        "parameters": model.count_params(),
        "epochs": state["epochs_done"],
        "steps": state["epochs_done"] * int(config["steps_per_epoch"]),
        "best_epoch": state["best_epoch"],
        "best_val_dice": state["best_score"],
        "eval_tta": tta,
        "eval_threshold": threshold,
        "eval_seconds": eval_seconds,
        "config": {k: config[k] for k in ("patch_size", "batch_size", "base_filters", "depth",
                                          "precision", "loss", "split", "steps_per_epoch",
                                          "augment", "class_weights")},
        "devices": config.get("devices", {}),
        "derived": config.get("plan", {}).get("derived", {}),
        "test": {k: report.get(k) for k in ("mean_dice", "mean_iou", "pixel_error",
                                            "pixel_accuracy", "rand_error")},
        "per_class_iou": {n: c["iou"] for n, c in per_class.items()},
        "per_class_dice": {n: c["dice"] for n, c in per_class.items()},
        "per_class_predicted_pixels": {n: c["tp"] + c["fp"] for n, c in per_class.items()},
        "per_class_true_pixels": {n: c["tp"] + c["fn"] for n, c in per_class.items()},
    }  # fmt: skip
    total = sum(result["per_class_true_pixels"].values())
    result["unpredicted"] = [n for n, t in result["per_class_true_pixels"].items()
                             if t > VISIBLE_CLASS * total
                             and result["per_class_predicted_pixels"][n] == 0]  # fmt: skip
    result["test"]["unpredicted_classes"] = len(result["unpredicted"])
    if key == "isbi":
        result["test"].update(isbi_challenge(model, test_dir, tta, threshold))
    return result


def add_to_report(report: Report, results: list[dict], smoke: bool) -> None:
    rows = report.table(
        "Held-out test figures (time budget per data set and recipe)",
        ["data", "recipe", "train / test images", "train s", "steps", "patch", "batch",
         "width", "precision", "TTA", "threshold", "Dice", "IoU", "pixel error",
         "Rand error"],
    )  # fmt: skip
    classes = report.table(
        "Per-class IoU on the test images",
        ["data", "recipe", "class", "IoU", "Dice", "predicted pixels"],
    )
    for r in results:
        c, t = r["config"], r["test"]
        rows.append([r["name"], r["recipe"], f"{r['train_images']} / {r['test_images']}",
                     r["train_seconds"], r["steps"], c["patch_size"] or "whole",
                     c["batch_size"], c["base_filters"],
                     r["devices"].get("precision", c["precision"]), r["eval_tta"],
                     r["eval_threshold"], t["mean_dice"], t["mean_iou"], t["pixel_error"],
                     t["rand_error"]])  # fmt: skip
        for name, iou in r["per_class_iou"].items():
            classes.append([r["name"], r["recipe"], name, iou, r["per_class_dice"][name],
                            r["per_class_predicted_pixels"][name]])  # fmt: skip
    add_challenge_table(report, results)
    add_comparison(report, results, smoke)
    for r in results if not smoke else ():
        for label, key, limit, op in TARGETS[r["key"]] if r["recipe"] == "defaults" else ():
            report.target(f"{r['name']}: {label}", float(r["test"][key]), limit, op)


def add_challenge_table(report: Report, results: list[dict]) -> None:
    """ISBI 2012 as the challenge scores it, one row per recipe."""
    rows = [r for r in results if "challenge_pixel_error" in r["test"]]
    if not rows:
        return
    table = report.table(
        "ISBI 2012 as the challenge scored the U-Net paper (unet_lib.evaluation.challenge)",
        ["data", "recipe", "pixel error (1 - cell F)", "at threshold", "Rand error",
         "at threshold", "pixel / Rand error at the run's threshold"],
    )  # fmt: skip
    for r in rows:
        t = r["test"]
        table.append([r["name"], r["recipe"], t["challenge_pixel_error"],
                      t["challenge_pixel_threshold"], t["challenge_rand_error"],
                      t["challenge_rand_threshold"],
                      f"{t['challenge_pixel_error_at_run_threshold']:.4f} / "
                      f"{t['challenge_rand_error_at_run_threshold']:.4f}"])  # fmt: skip


def add_comparison(report: Report, results: list[dict], smoke: bool) -> None:
    """Defaults against the plain recipe on each set's headline figure (and the targets)."""
    by = {(r["key"], r["recipe"]): r for r in results}
    keys = [k for k in DATASETS if (k, "defaults") in by and (k, "plain") in by]
    if not keys:
        return
    table = report.table(
        "Defaults against the plain recipe (same split, same budget)",
        ["data", "figure", "defaults", "plain recipe", "difference"],
    )
    for key in keys:
        label, name, higher = HEADLINE[key]
        mine, plain = (float(by[key, r]["test"][name]) for r in RECIPES)
        table.append([DATASETS[key]["name"], label, mine, plain, round(mine - plain, 4)])
        if smoke:
            continue
        margin = FACADE_MARGIN if key == "facade" else -MATCH
        limit = plain + margin if higher else plain - margin
        what = f"beats the plain recipe by {margin}" if margin > 0 else "matches the plain recipe"
        report.target(f"{DATASETS[key]['name']}: {label} {what}", mine, round(limit, 4),
                      ">=" if higher else "<=")  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=25.0, help="training budget per set")
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated subset")
    parser.add_argument(
        "--recipes",
        default=",".join(RECIPES),
        help="defaults, plain (benchmarks.plain_recipe) or both",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="take the runs already scored (OUT/SET/RECIPE.json) as they are",
    )
    parser.add_argument("--data-root", type=Path, help="default: UNET_SHARED_DATA")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "quality")
    parser.add_argument("--smoke", action="store_true", help="check it runs; no targets")
    parser.add_argument("--score-run", type=Path, metavar="RUN",
                        help="score this existing run folder's best.keras on the test block "
                             "of the one data set in --datasets (no training)")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument("--markdown", type=Path, help="also write the tables as Markdown")
    args = parser.parse_args(argv)
    keys = [k.strip() for k in args.datasets.split(",") if k.strip()]
    unknown = sorted(set(keys) - set(DATASETS))
    if unknown:
        parser.error(f"unknown data sets {unknown}; choose from {sorted(DATASETS)}")
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    if not recipes or set(recipes) - set(RECIPES):
        parser.error(f"--recipes {args.recipes!r}: choose from {RECIPES}")
    if args.score_run and (len(keys) != 1 or len(recipes) != 1):
        parser.error("--score-run needs exactly one data set in --datasets and one recipe")
    if args.score_run and not all(
        (args.score_run / f).is_file() for f in ("best.keras", "config.json", "state.json")
    ):
        parser.error(f"--score-run {args.score_run}: not a finished run folder (needs "
                     "best.keras, config.json and state.json, as `python -m unet_lib train` "
                     "writes them)")  # fmt: skip
    root = data_root(args.data_root)
    missing = [DATASETS[k]["folder"] for k in keys if not (root / DATASETS[k]["folder"]).is_dir()]
    if missing:
        print(f"quality: {missing} not found under {root}; set UNET_SHARED_DATA or --data-root")
        return 2

    report = Report()
    results = []
    start = time.perf_counter()

    def log(result):
        steps, seconds = result["steps"], result["train_seconds"]
        print(f"  {result['name']}: {json.dumps(result['test'])} ({steps} steps, {seconds:.0f} s)",
              flush=True)  # fmt: skip

    for key in keys:
        for recipe in recipes:
            saved = args.out / key / f"{recipe}.json"
            if args.resume and saved.is_file():
                results.append(json.loads(saved.read_text()))
                print(f"{DATASETS[key]['name']} ({recipe}): taken from {saved}", flush=True)
                continue
            result = run_one(key, root, args.out, args.minutes, log, args.score_run, recipe)
            saved.write_text(json.dumps(result, indent=1))
            results.append(result)
    add_to_report(report, results, args.smoke)
    trained = (
        f"{args.minutes:g} training minutes per data set"
        if not args.score_run
        else (f"the existing run {args.score_run} scored (no training)")
    )
    report.note(f"{trained}; TTA and threshold: the run's eval_tta / eval_threshold, chosen on "
                "its validation images")  # fmt: skip
    report.note(f"plain recipe: {plain_recipe.describe()}")
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    print(report.render())
    elapsed = time.perf_counter() - start
    print(f"\nquality, {stamp}, {elapsed:.0f} s: "
          f"{len(report.failed)} of {len(report.targets)} targets failed")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"results": results, **report.to_json()}, indent=1))
    if args.markdown:
        args.markdown.write_text(report.render(markdown=True) + "\n")
    return report.exit_code()


if __name__ == "__main__":
    sys.exit(main())
