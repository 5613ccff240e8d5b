"""Fault campaign: ``kill -9`` a training process at random moments, again and again, and
check after every kill that the run folder is consistent, then that the run finished by
resuming has trained exactly the iterations of an uninterrupted run.

    .venv/bin/python -m benchmarks.fault_campaign --kills 30 --json OUT.json --markdown OUT.md

Each round starts ``train`` (a small U-Net on the built-in data, ``EPOCHS`` epochs of ``STEPS``
steps) on one run folder, which resumes it, and kills it after a random time (uniform in
``--window`` seconds, so kills land in start-up, mid-epoch and inside the epoch commit). After
the kill a copy of the folder is recovered as the next resume would (``runfolder.recover``)
and checked: ``state.json`` readable; ``history.csv`` has exactly ``epochs_done`` rows;
``last.keras`` loads and its optimizer has made ``epochs_done * STEPS`` steps (no epoch
trained twice, none lost); ``best.keras`` present from epoch 1 and its epoch recorded; no
staging folder or temporary file left. A run that finishes is checked the same way and a new
folder is started. Exits 1 on any inconsistency.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EPOCHS, STEPS = 12, 6
TRAIN = """
import sys
from unet_lib.training import train
train(sys.argv[1], sys.argv[2], epochs={epochs}, steps_per_epoch={steps}, depth=2,
      base_filters=8, batch_size=4, patch_size=64, auto_configure=False, verbose=0)
"""


def check_folder(run: Path) -> dict:
    """Recover a copy of ``run`` as a resume would, then check it; returns what was found."""
    from unet_lib.fileio import temporary_files
    from unet_lib.model import load_model
    from unet_lib.training import read_history, read_state, recover

    found = {"staged": sorted(p.name for p in run.glob(".epoch-*")),
             "temporary": [p.name for p in temporary_files(run)],
             "lock": (run / ".lock").exists()}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "run"
        shutil.copytree(run, copy, symlinks=True)
        state = read_state(copy)
        found["actions"] = recover(copy, state)
        done = (state or {}).get("epochs_done", 0)
        problems = []
        rows = len(read_history(copy).get("epoch", []))
        if rows != done:
            problems.append(f"history.csv has {rows} rows, state.json {done} epochs")
        if done:
            steps = int(load_model(copy / "last.keras").optimizer.iterations.numpy())
            if steps != done * STEPS:
                problems.append(f"last.keras made {steps} steps, not {done} x {STEPS}")
            if not (copy / "best.keras").is_file() or not 1 <= state["best_epoch"] <= done:
                problems.append("best.keras missing or its epoch out of range")
        left = [p.name for p in copy.iterdir() if p.name.startswith(".") and p.name != ".lock"]
        if left:
            problems.append(f"left after recovery: {left}")
        found.update(epochs_done=done, finished=bool((state or {}).get("finished")),
                     problems=problems)  # fmt: skip
    return found


def campaign(kills: int, window: tuple[float, float], out: Path, seed: int) -> dict:
    from unet_lib.data import ensure_default_dataset

    data, rng = ensure_default_dataset(), random.Random(seed)
    script = out / "train.py"
    out.mkdir(parents=True, exist_ok=True)
    script.write_text(TRAIN.format(epochs=EPOCHS, steps=STEPS))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": os.getcwd()}
    rounds, runs, run = [], 1, out / "run_1"
    shutil.rmtree(out / "run_1", ignore_errors=True)
    while sum(r["killed"] for r in rounds) < kills:
        delay = rng.uniform(*window)
        process = subprocess.Popen([sys.executable, str(script), str(data), str(run)], env=env)
        try:
            code = process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            code = None
        found = check_folder(run)
        rounds.append({"round": len(rounds) + 1, "run": runs, "seconds": round(delay, 2),
                       "killed": code is None, "exit": code, **found})  # fmt: skip
        print(_row(rounds[-1]), flush=True)
        if found["finished"]:
            runs += 1
            run = out / f"run_{runs}"
            shutil.rmtree(run, ignore_errors=True)
    # finish the last run without interruption
    subprocess.run([sys.executable, str(script), str(data), str(run)], env=env, check=True)
    final = check_folder(run)
    return {"rounds": rounds, "final": final, "epochs": EPOCHS, "steps": STEPS}


def _row(r: dict) -> str:
    what = "; ".join(r["actions"]) or "-"
    status = "consistent" if not r["problems"] else "INCONSISTENT: " + "; ".join(r["problems"])
    how = "kill -9" if r["killed"] else f"exit {r['exit']}"
    return (f"| {r['round']} | {r['run']} | {r['seconds']:.1f} | {how} | {r['epochs_done']} | "
            f"{what} | {status} |")  # fmt: skip


def to_markdown(result: dict) -> str:
    rounds, final = result["rounds"], result["final"]
    kills = sum(r["killed"] for r in rounds)
    in_commit = sum(bool(r["staged"] or r["temporary"]) for r in rounds if r["killed"])
    bad = sum(bool(r["problems"]) for r in rounds) + bool(final["problems"])
    target = result["epochs"] * result["steps"]
    lines = [
        f"{kills} kills (-9) in {len(rounds)} rounds; {in_commit} landed inside an epoch's "
        f"writes (staging folder or temporary file present); {bad} inconsistent folders.",
        f"Final run: {final['epochs_done']} epochs, the iterations of an uninterrupted run "
        f"({target}): {'yes' if not final['problems'] else 'NO'}.",
        "",
        "| round | run | killed after s | how | epochs done | recovery | folder |",
        "|---|---|---|---|---|---|---|",
        *(_row(r) for r in rounds),
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--window", type=float, nargs=2, default=(4.0, 14.0), metavar="S")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/fault_campaign"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    result = campaign(args.kills, tuple(args.window), args.out, args.seed)
    command = " ".join(["python -m benchmarks.fault_campaign", *(argv or sys.argv[1:])])
    seconds = round(time.perf_counter() - start)
    result.update(date=datetime.date.today().isoformat(), seconds=seconds, command=command)
    text = to_markdown(result)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(text)
    bad = any(r["problems"] for r in result["rounds"]) or result["final"]["problems"]
    return 1 if bad or result["final"]["epochs_done"] != EPOCHS else 0


if __name__ == "__main__":
    sys.exit(main())
