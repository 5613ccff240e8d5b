"""ISBI 2012 with far more compute: is the 25-minute CPU result held back by compute?

The CPU defaults reach membrane Dice ~0.81 on the held-out slices 18-23 after ~1000 steps
(25 minutes, ``benchmarks/quality.py``), and every longer or wider CPU variant stopped at the
same level. This script trains the *same recipe* (the CPU plan for ISBI 2012: 256^2 patches,
batch 4, width 32, depth 4, batch norm, Dice + cross-entropy, Adam with a warm-up + cosine
schedule, flips / 90-degree rotations / +-15 degree rotation / 0.9-1.1 scale / mild
intensity, best checkpoint by validation Dice on the contiguous block 14-17) for many more
steps on a GPU, and scores each run on slices 18-23 exactly as ``quality.py`` does
(``unet_lib.evaluate``: membrane Dice, pixel error, foreground-restricted Rand
error), with and without rotation / flip test-time augmentation.

It needs no TensorFlow (the GPU machines have JAX and PyTorch only): the library's
augmentation is TensorFlow code, so the patches are made here with NumPy / SciPy in worker
processes, mirroring ``unet_lib.data.augment`` (crop, dihedral, one bilinear / nearest
resampling with mirrored borders, gamma / contrast / brightness, clip to [0, 1]). The model,
loss, learning-rate rule (``unet_lib.training.callbacks.TimeBudget.learning_rate_at``), data loading
and scoring are the library's.

Several runs share the GPU at once (``--launch``); each run's schedule ends at its step count
or at its wall-clock deadline, whichever comes first (the cosine always completes), and the
result records the steps it took.

Usage (GPU machine; Keras from the git-ignored wheels/, see gpu.sh):
    KERAS_BACKEND=jax python -m benchmarks.gpu_quality --launch --data-root DATA \\
        --out OUTDIR --deadline 300
    KERAS_BACKEND=jax python -m benchmarks.gpu_quality --tag t --steps 20 --data-root DATA \\
        --out OUTDIR          # one run (what --launch starts)
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

# (tag, steps, patch, batch, base filters): the CPU plan at 1x (the 25-minute CPU run took
# 1008 steps), 8x and 24x its steps, and the GPU plan (whole 512^2 slices, batch 14).
RUNS = [
    ("cpu_plan_1x", 1000, 256, 4, 32),
    ("cpu_plan_8x", 8000, 256, 4, 32),
    ("cpu_plan_24x", 24000, 256, 4, 32),
    ("gpu_plan", 3000, 512, 14, 32),
]
TASK_STEPS = 10  # steps' worth of patches per worker task


# ----------------------------------------------------------------------------- patches
def make_patch(image, mask, size, rng):
    """One augmented (size, size) patch of a (H, W) image in [0, 1] and its label map."""
    h, w = image.shape
    y0 = rng.integers(0, h - size + 1)
    x0 = rng.integers(0, w - size + 1)
    img = image[y0 : y0 + size, x0 : x0 + size]
    msk = mask[y0 : y0 + size, x0 : x0 + size]
    k = rng.integers(0, 4)  # the eight symmetries of the square
    img, msk = np.rot90(img, k), np.rot90(msk, k)
    if rng.random() < 0.5:
        img, msk = img[:, ::-1], msk[:, ::-1]
    angle = math.radians(rng.uniform(-15.0, 15.0))
    scale = rng.uniform(0.9, 1.1)
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    c = (size - 1) / 2
    # output (row, col) -> source (row, col) = matrix @ (row, col) + offset, about the centre
    matrix = np.array([[cos, sin], [-sin, cos]])
    offset = np.array([c, c]) - matrix @ np.array([c, c])
    img, msk = _warp(np.ascontiguousarray(img), np.ascontiguousarray(msk), matrix, offset)
    u = rng.uniform(-1.0, 1.0, 3)
    img = np.clip(img, 0.0, 1.0) ** math.exp(u[0] * math.log1p(0.1))
    mean = img.mean()
    img = (img - mean) * (1 + 0.1 * u[1]) + mean + 0.1 * u[2]
    return np.clip(img, 0.0, 1.0).astype(np.float32), msk


def _warp(img, msk, matrix, offset):
    """Bilinear image, nearest mask, mirrored borders (reflect-101, as the library's warp).
    OpenCV when present (~10x faster than SciPy: the patches must keep up with a GPU)."""
    try:
        import cv2
    except ImportError:
        from scipy import ndimage

        return (
            ndimage.affine_transform(img, matrix, offset, order=1, mode="mirror"),
            ndimage.affine_transform(msk, matrix, offset, order=0, mode="mirror"),
        )
    # OpenCV's map is in (x, y) = (col, row) order
    (a, b), (d, e) = matrix
    inverse = np.array([[e, d, offset[1]], [b, a, offset[0]]], np.float64)
    size = img.shape[::-1]
    flags = cv2.WARP_INVERSE_MAP
    return (
        cv2.warpAffine(img, inverse, size, flags=flags | cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REFLECT_101),
        cv2.warpAffine(msk.astype(np.uint8), inverse, size, flags=flags | cv2.INTER_NEAREST,
                       borderMode=cv2.BORDER_REFLECT_101),
    )  # fmt: skip


_DATA = {}


def _init_worker(images, masks):
    _DATA["images"], _DATA["masks"] = images, masks


def make_chunk(args):
    """``steps * batch`` patches from a seed: (N, size, size, 1) float32 and int32."""
    seed, count, size = args
    rng = np.random.default_rng(seed)
    images, masks = _DATA["images"], _DATA["masks"]
    xs = np.empty((count, size, size, 1), np.float32)
    ys = np.empty((count, size, size, 1), np.uint8)  # a quarter of the bytes to send back
    for i in range(count):
        j = rng.integers(0, len(images))
        xs[i, ..., 0], ys[i, ..., 0] = make_patch(images[j], masks[j], size, rng)
    return xs, ys


# ----------------------------------------------------------------------------- one run
def isbi_split(root: Path, out: Path):
    """quality.py's ISBI 2012 folders: slices 0-17 train, 18-23 test, membrane = 0."""
    from benchmarks.quality import ISBI_LABELS, link_split, split_stems

    source = root / "isbi2012_membrane"
    train, test = split_stems("isbi", sorted(p.stem for p in (source / "images").iterdir()))
    return (
        link_split(source, out / "isbi_train", train, ISBI_LABELS),
        link_split(source, out / "isbi_test", test, ISBI_LABELS),
    )


def membrane_dice(model, images, masks) -> float:
    prob = np.asarray(model.predict_on_batch(images))[..., 0]
    pred, truth = prob > 0.5, masks[..., 0] == 1
    return float(2 * (pred & truth).sum() / max(1, pred.sum() + truth.sum()))


def scores(model, test_dir, tta) -> dict:
    from unet_lib import evaluate

    report = evaluate(model, test_dir, tta=tta, threshold=0.5)
    membrane = report["per_class"]["membrane"]
    return {
        "membrane_dice": membrane["dice"],
        "membrane_iou": membrane["iou"],
        "pixel_error": report["pixel_error"],
        "rand_error": report["rand_error"],
    }


def run_one(args) -> dict:
    import keras

    from unet_lib import build_unet
    from unet_lib.data import load_dataset
    from unet_lib.losses import DiceCELoss
    from unet_lib.training import TimeBudget

    keras.utils.set_random_seed(args.seed)
    keras.mixed_precision.set_global_policy(args.precision)
    out = Path(args.out)
    train_dir, test_dir = isbi_split(Path(args.data_root), out)
    data = load_dataset(train_dir)
    # the contiguous validation block of the CPU plan: the last 4 of the 18 training slices
    n_val = max(1, round(0.2 * len(data)))
    images = [im[..., 0] for im in data.images]
    masks = [m[..., 0] if m.ndim == 3 else m for m in data.masks]
    train_images, train_masks = images[:-n_val], masks[:-n_val]
    val_x = np.stack(images[-n_val:])[..., None].astype(np.float32)
    val_y = np.stack(masks[-n_val:])[..., None]

    model = build_unet((None, None, 1), 1, depth=4, base_filters=args.base_filters,
                       batch_norm=True)  # fmt: skip
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=DiceCELoss())
    rule = TimeBudget(1.0, 1e-3)  # only its learning-rate formula (warm-up 5 %, cosine)
    chunk_steps = args.chunk // TASK_STEPS * TASK_STEPS or TASK_STEPS
    val_every = max(chunk_steps, (args.steps // 25) // chunk_steps * chunk_steps)
    # a chunk (one fit() call) is assembled from tasks of TASK_STEPS steps' patches, so
    # every worker helps with it; two chunks' tasks stay in flight
    tasks_per_chunk = max(1, chunk_steps // TASK_STEPS)
    task = (TASK_STEPS * args.batch, args.patch)
    # spawned, not forked: JAX has threads running by now
    pool = ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker,
                               initargs=(train_images, train_masks))  # fmt: skip
    seeds = iter(range(args.seed * 10**6, 10**9))
    pending = [pool.submit(make_chunk, (next(seeds), *task)) for _ in range(2 * tasks_per_chunk)]

    def next_chunk():
        parts = [pending.pop(0).result() for _ in range(tasks_per_chunk)]
        pending.extend(pool.submit(make_chunk, (next(seeds), *task))
                       for _ in range(tasks_per_chunk))  # fmt: skip
        return (np.concatenate([p[0] for p in parts]),
                np.concatenate([p[1] for p in parts]).astype(np.int32))  # fmt: skip

    start = time.perf_counter()
    steps, history, best = 0, [], (-1.0, None, 0)
    compile_seconds = None
    while True:
        fraction = max(steps / args.steps, (time.perf_counter() - start) / args.deadline)
        if fraction >= 1.0:
            break
        model.optimizer.learning_rate.assign(rule.learning_rate_at(fraction))
        xs, ys = next_chunk()
        t0 = time.perf_counter()
        logs = model.fit(xs, ys, batch_size=args.batch, epochs=1, shuffle=False, verbose=0)
        if compile_seconds is None:
            compile_seconds = time.perf_counter() - t0
        loss = float(logs.history["loss"][-1])
        if not math.isfinite(loss):
            raise FloatingPointError(f"{args.tag}: loss {loss} at step {steps}")
        steps += chunk_steps
        if steps % val_every == 0:
            dice = membrane_dice(model, val_x, val_y)
            elapsed = time.perf_counter() - start
            history.append({"step": steps, "seconds": round(elapsed, 1), "loss": loss,
                            "val_dice": dice})  # fmt: skip
            print(f"{args.tag}: step {steps} {elapsed:.0f}s loss {loss:.4f} val {dice:.4f}",
                  flush=True)  # fmt: skip
            if dice > best[0]:
                best = (dice, model.get_weights(), steps)
    train_seconds = time.perf_counter() - start
    pool.shutdown(cancel_futures=True)

    result = {
        "tag": args.tag,
        "steps_planned": args.steps,
        "steps": steps,
        "stopped_by": "steps" if steps >= args.steps else "deadline",
        "patch": args.patch,
        "batch": args.batch,
        "base_filters": args.base_filters,
        "precision": args.precision,
        "train_seconds": round(train_seconds, 1),
        "first_chunk_seconds": round(compile_seconds or 0.0, 1),
        "images_seen": steps * args.batch,
        "final_val_dice": membrane_dice(model, val_x, val_y),
        "test_final": scores(model, test_dir, tta=False),
    }
    if best[1] is not None:
        model.set_weights(best[1])
    result.update({
        "best_val_dice": best[0],
        "best_step": best[2],
        "test_best": scores(model, test_dir, tta=False),
        "test_best_tta": scores(model, test_dir, tta=True),
        "history": history,
        "backend": keras.backend.backend(),
    })  # fmt: skip
    (out / f"gpu_quality_{args.tag}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "history"}), flush=True)
    return result


# ----------------------------------------------------------------------------- launcher
def launch(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    procs = []
    runs = [r for r in RUNS if not args.only or r[0] in args.only.split(",")]
    for tag, steps, patch, batch, filters in runs:
        if args.scale != 1.0:
            steps = max(args.chunk, int(steps * args.scale) // args.chunk * args.chunk)
        cmd = [sys.executable, "-m", "benchmarks.gpu_quality", "--tag", tag, "--steps", str(steps),
               "--patch", str(patch), "--batch", str(batch), "--base-filters", str(filters),
               "--data-root", args.data_root, "--out", str(out), "--deadline",
               str(args.deadline), "--precision", args.precision, "--workers",
               str(args.workers), "--chunk", str(args.chunk)]  # fmt: skip
        log = open(out / f"gpu_quality_{tag}.log", "w")
        procs.append(
            (tag, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=HERE.parent), log)
        )
    failed = 0
    for tag, proc, log in procs:
        rc = proc.wait()
        log.close()
        if rc:
            failed += 1
            print(f"{tag}: exit {rc}; last lines:", flush=True)
            print("\n".join((out / f"gpu_quality_{tag}.log").read_text().splitlines()[-25:]))
    rows = []
    for tag, *_ in runs:
        path = out / f"gpu_quality_{tag}.json"
        if path.exists():
            rows.append(json.loads(path.read_text()))
    (out / "gpu_quality.json").write_text(json.dumps(rows, indent=1))
    print(markdown(rows))
    return 1 if failed else 0


def markdown(rows) -> str:
    lines = [
        "| run | steps (images) | patch x batch | best val Dice (step) | test Dice | "
        "pixel error | Rand error | with TTA: Dice / pixel / Rand |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        b, t = r["test_best"], r["test_best_tta"]
        lines.append(
            f"| {r['tag']} | {r['steps']} ({r['images_seen']}) | {r['patch']} x {r['batch']} | "
            f"{r['best_val_dice']:.3f} ({r['best_step']}) | {b['membrane_dice']:.3f} | "
            f"{b['pixel_error']:.4f} | {b['rand_error']:.3f} | {t['membrane_dice']:.3f} / "
            f"{t['pixel_error']:.4f} / {t['rand_error']:.3f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--launch", action="store_true", help="start every run of RUNS at once")
    p.add_argument("--only", default="", help="comma-separated tags of RUNS to launch")
    p.add_argument("--scale", type=float, default=1.0, help="multiply RUNS' steps (smoke)")
    p.add_argument("--tag", default="run")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--patch", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--base-filters", type=int, default=32)
    p.add_argument("--precision", default="mixed_bfloat16")
    p.add_argument("--deadline", type=float, default=300.0, help="training seconds at most")
    p.add_argument("--chunk", type=int, default=50, help="steps per fit() call")
    p.add_argument("--workers", type=int, default=3, help="patch-making processes per run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=os.environ.get("UNET_SHARED_DATA", "../shared/data"))
    p.add_argument("--out", default="outputs/gpu_quality")
    args = p.parse_args(argv)
    if args.launch:
        return launch(args)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    run_one(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
