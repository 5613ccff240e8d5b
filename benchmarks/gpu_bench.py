"""Training speed of the default U-Net on one Keras backend: images/s and achieved TFLOP/s.

Run by ``benchmarks/gpu.sh`` once per backend (``KERAS_BACKEND`` is read when Keras is
imported, so one process measures one backend) and precision; ``--report`` then merges the
runs into one table and ``gpu_results.json``. Needs only ``keras``, ``numpy`` and the
backend (JAX or PyTorch): no TensorFlow, no data files (random NumPy images and labels).

Model: ``build_unet((size, size, 1), 1)`` with the paper's defaults (depth 4, 64 base filters,
31,030,593 parameters, sigmoid output), trained with Adam on ``DiceCELoss`` with ``fit`` on
NumPy arrays, ``--warmup`` steps first (compilation), then ``--steps`` timed steps.

FLOPs: forward FLOPs of every ``Conv2D`` (``2 * H_out * W_out * kh * kw * C_in * C_out``)
and ``Conv2DTranspose`` (``2 * H_in * W_in * kh * kw * C_in * C_out``) from the layer shapes,
a multiply-add counted as 2 FLOPs; a training step is taken as 3x the forward pass (forward,
gradients of activations and of weights). Element-wise work (bias, ReLU, pooling, loss) is
left out, so the figure is the convolution arithmetic actually needed per second.

Peaks (dense, no sparsity, NVIDIA datasheets, SXM parts): H100 and H200 989 TFLOP/s
bf16 / fp16, 495 TF32, 67 FP32; A100 312 bf16, 156 TF32, 19.5 FP32. float32 convolutions
run as TF32 on these GPUs by default on both backends (cuDNN ``allow_tf32`` in PyTorch, the
default matmul precision in JAX), so float32 is compared with the TF32 peak.

Usage:
    KERAS_BACKEND=jax python -m benchmarks.gpu_bench --precision mixed_bfloat16 \\
        --append results.jsonl
    python -m benchmarks.gpu_bench --report results.jsonl --json gpu_results.json
    KERAS_BACKEND=torch python -m benchmarks.gpu_bench --cpu      # a few small steps
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

# (match in the device name, {precision: peak TFLOP/s}); the first match wins
PEAKS = [
    ("H200", {"bf16": 989.0, "fp16": 989.0, "tf32": 495.0, "fp32": 67.0}),
    ("H100", {"bf16": 989.0, "fp16": 989.0, "tf32": 495.0, "fp32": 67.0}),
    ("A100", {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5}),
]
PEAK_KEY = {"float32": "tf32", "mixed_bfloat16": "bf16", "mixed_float16": "fp16"}


def gpu_name() -> str | None:
    """The first GPU's name from nvidia-smi, or ``None`` without one."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    return names[0] if out.returncode == 0 and names else None


def peak_tflops(device: str | None, precision: str) -> float | None:
    for key, peaks in PEAKS:
        if device and key in device:
            return peaks[PEAK_KEY[precision]]
    return None


def conv_flops(model) -> int:
    """Forward FLOPs of the model's convolutions for one image (multiply-add = 2)."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2DTranspose):
            _, h, w, c_in = layer.input.shape
            kh, kw = layer.kernel_size
            total += 2 * h * w * kh * kw * c_in * layer.filters
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, _ = layer.output.shape
            c_in = layer.input.shape[-1]
            kh, kw = layer.kernel_size
            total += 2 * h * w * kh * kw * c_in * layer.filters // layer.groups
    return int(total)


def accelerator(backend: str) -> str:
    if backend == "jax":
        import jax

        return "gpu" if any(d.platform == "gpu" for d in jax.devices()) else "cpu"
    if backend == "torch":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    import tensorflow as tf

    return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"


def measure(args) -> dict:
    import keras
    import numpy as np

    from unet_lib import build_unet
    from unet_lib.losses import DiceCELoss

    backend = keras.backend.backend()
    keras.mixed_precision.set_global_policy(args.precision)
    keras.utils.set_random_seed(0)
    size, batch = args.size, args.batch
    model = build_unet(
        (size, size, 1), 1, depth=args.depth, base_filters=args.base_filters
    )  # sigmoid output in float32 (the head stays float32 under mixed precision)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss=DiceCELoss(),
        jit_compile=backend == "jax",  # torch: eager (torch.compile takes minutes to build)
    )
    rng = np.random.default_rng(0)
    n = batch * max(args.steps, args.warmup)
    x = rng.random((n, size, size, 1), dtype=np.float32)
    y = (rng.random((n, size, size, 1)) < 0.3).astype(np.float32)

    def run(steps):
        start = time.perf_counter()
        history = model.fit(x, y, batch_size=batch, epochs=1, steps_per_epoch=steps, verbose=0)
        loss = float(history.history["loss"][-1])  # reading it waits for the device
        return time.perf_counter() - start, loss

    compile_seconds, _ = run(args.warmup)
    seconds, loss = run(args.steps)
    kind = accelerator(backend)
    device = (gpu_name() or "GPU") if kind == "gpu" else (platform.processor() or "CPU")
    forward = conv_flops(model)
    images_per_s = args.steps * batch / seconds
    achieved = 3 * forward * images_per_s / 1e12
    peak = peak_tflops(device, args.precision) if kind == "gpu" else None
    return {
        "backend": backend,
        "precision": args.precision,
        "device": device,
        "device_kind": kind,
        "image_size": size,
        "batch": batch,
        "depth": args.depth,
        "base_filters": args.base_filters,
        "parameters": int(model.count_params()),
        "warmup_steps": args.warmup,
        "steps": args.steps,
        "warmup_seconds": round(compile_seconds, 3),
        "seconds": round(seconds, 3),
        "step_ms": round(1000 * seconds / args.steps, 2),
        "images_per_s": round(images_per_s, 2),
        "forward_gflop_per_image": round(forward / 1e9, 3),
        "achieved_tflops": round(achieved, 3),
        "peak_tflops": peak,
        "peak_kind": PEAK_KEY[args.precision] if peak else None,
        "fraction_of_peak": round(achieved / peak, 4) if peak else None,
        "final_loss": round(loss, 5),
        "versions": _versions(backend),
    }


def _versions(backend: str) -> dict:
    import keras

    versions = {"python": platform.python_version(), "keras": keras.__version__}
    module = {"jax": "jax", "torch": "torch", "tensorflow": "tensorflow"}[backend]
    versions[module] = getattr(__import__(module), "__version__", "?")
    return versions


def table(results: list[dict]) -> str:
    head = (
        f"{'backend':<7} {'precision':<15} {'device':<24} {'img':>4} {'batch':>5} "
        f"{'step ms':>8} {'img/s':>8} {'TFLOP/s':>8} {'peak':>11} {'of peak':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        if "error" in r:
            lines.append(f"{r['backend']:<7} {r['precision']:<15} failed: {r['error']}")
            continue
        peak = f"{r['peak_tflops']:g} {r['peak_kind']}" if r["peak_tflops"] else "-"
        share = f"{100 * r['fraction_of_peak']:.1f}%" if r["fraction_of_peak"] else "-"
        lines.append(
            f"{r['backend']:<7} {r['precision']:<15} {r['device'][:24]:<24} "
            f"{r['image_size']:>4} {r['batch']:>5} {r['step_ms']:>8.1f} "
            f"{r['images_per_s']:>8.1f} {r['achieved_tflops']:>8.2f} {peak:>11} {share:>7}"
        )
    forward = next((r["forward_gflop_per_image"] for r in results if "error" not in r), None)
    if forward is not None:
        lines.append(
            f"forward {forward} GFLOP per image (convolutions); training step = 3x forward"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--precision",
        default="float32",
        choices=("float32", "mixed_bfloat16", "mixed_float16"),
    )
    parser.add_argument("--steps", type=int, help="timed steps (default 50 GPU, 3 CPU)")
    parser.add_argument("--warmup", type=int, help="untimed first steps (default 5 GPU, 1 CPU)")
    parser.add_argument("--batch", type=int, help="images per step (default 16 GPU, 2 CPU)")
    parser.add_argument("--size", type=int, help="image side (default 256 GPU, 64 CPU)")
    parser.add_argument("--depth", type=int, help="default 4 (the paper's), 2 with --cpu")
    parser.add_argument("--base-filters", type=int, help="default 64 (the paper's), 8 with --cpu")
    parser.add_argument("--cpu", action="store_true", help="small settings for a CPU check")
    parser.add_argument("--append", metavar="JSONL", help="append this run's result here")
    parser.add_argument("--report", metavar="JSONL", help="print the table of these results")
    parser.add_argument("--json", metavar="PATH", help="with --report: write them as JSON")
    args = parser.parse_args(argv)

    if args.report:
        results = [json.loads(line) for line in Path(args.report).read_text().splitlines()]
        print(table(results))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        return 0

    small = args.cpu or gpu_name() is None
    defaults = (
        dict(steps=3, warmup=1, batch=2, size=64, depth=2, base_filters=8)
        if small
        else dict(steps=50, warmup=5, batch=16, size=256, depth=4, base_filters=64)
    )
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    try:
        result = measure(args)
    except Exception as error:  # one failed configuration must not hide the others
        result = {
            "backend": os.environ.get("KERAS_BACKEND", "?"),
            "precision": args.precision,
            "error": f"{type(error).__name__}: {str(error)[:300]}",
        }
    print(json.dumps(result), flush=True)
    if args.append:
        with open(args.append, "a") as handle:
            handle.write(json.dumps(result) + "\n")
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
