"""The benchmark suite: training and inference speed of unet_lib against plain Keras.

Usage:
    python -m benchmarks.run               # all but the Dice pairs (~14 min, idle 2 cores)
    python -m benchmarks.run --quick       # the default configuration only (< 3 min)
    python -m benchmarks.run --sections precision   # one short same-seed pair per data set
    python -m benchmarks.run --json out.json --markdown out.md

Every figure is a ratio or a median against a baseline measured in the same run
(benchmarks/README.md explains each one and holds the reference results):

1. training throughput of ``unet_lib.train`` (its device-aware defaults) against the same
   model fit from in-memory tensors (the upper bound) and the plain-Keras way (PNG decode
   every epoch, float32, Keras's default compile), for several widths and sizes;
2. achieved GFLOP/s (forward FLOPs counted from the layers, training = 3x forward) beside a
   large matmul measured in the same run;
3. precision: bfloat16 against float32 step by step in the training table; with
   ``--sections precision`` the final validation Dice of one short same-seed pair of
   ``unet_lib.train`` runs on the built-in data and on ISBI 2012 (``../shared/data``;
   skipped when absent). Whether bfloat16 keeps the Dice is ``precision_study.py``'s job;
4. inference: ``unet_lib.predict`` (whole image, overlap tiles) against plain
   ``model.predict`` in float32, label agreement, megapixels/s, peak resident memory of
   1024² ... 8192² images (a fresh process per size);
5. scaling with batch and image size; threading and XLA settings;
6. the idle time after ``fit`` inside ``unet_lib.train`` (a tf.data teardown wait, README).

Targets print PASS / FAIL; the exit code is 1 when one fails.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from benchmarks.bench_common import Report, matmul_peak, median, run_worker

FULL = {  # Dice pairs: 3 epochs x 15 steps of batch 8, one seed per data set (~5 min);
    # benchmarks/precision_study.py runs more and longer pairs (README)
    "dice_seeds": (0,),
    "dice_epochs": 3,
    "dice_steps": 15,
    "dice_batch": 8,
    "isbi_seeds": (0,),
    "configs": [  # (label, base filters, image size, batch, timed steps)
        ("F16 128²", 16, 128, 8, 16),  # 0.3 s steps that vary by +-30 %: more of them
        ("F32 256²", 32, 256, 8, 4),
        ("F64 256²", 64, 256, 4, 3),
    ],
    "baseline_steps": 12,
    "warmup_steps": 1,
    "inference_sizes": (1024,),
    "inference_float32": True,
    "inference_rounds": 3,
    "memory": [(2048, True), (4096, True), (8192, True), (2048, False), (4096, False)],
    # the short Dice pairs (--sections precision, 5 min) are not in the default run: they
    # cannot judge the 0.005 rule; benchmarks/precision_study.py does (README)
    "precision": False,
    "training": True,
    "inference": True,
    "memory_model": "reference",
    "scaling": True,
    "threads": True,
    "thread_rounds": 3,
    "xla": True,
    # 45-step pairs: validation Dice still swings by 0.1-0.4 between epochs (ISBI), far above
    # 0.005; the rule is judged by precision_study.py (README), these pairs are reported
    "dice_target": False,
}
QUICK = {
    "dice_seeds": (0,),
    "dice_epochs": 4,
    "dice_steps": None,  # the default: 5 steps per epoch
    "dice_batch": None,
    "isbi_seeds": (),
    "configs": [],
    "baseline_steps": 6,
    "warmup_steps": 1,
    "inference_sizes": (1024,),
    "inference_rounds": 2,
    "inference_float32": False,  # unet_lib.predict in float32: a figure, no target
    "memory": [(8192, True)],  # the memory target itself, at its size,
    "memory_model": "small",  # with an untrained F8 model: 15 s instead of 90 (README)
    "precision": False,  # its Dice pairs are noise at quick lengths: a full-suite figure
    "training": True,
    "inference": True,
    "scaling": False,
    "threads": False,
    "thread_rounds": 2,
    "xla": False,
    "dice_target": False,
}
SECTIONS = ("precision", "training", "inference", "threads", "xla", "scaling")
DEFAULT_CONFIG = ("F32 128² (default)", 32, 128, 8)  # unet_lib.train's defaults, built-in data
TARGETS = {
    "vs_inmemory": 0.95,
    "vs_plain": 1.8,
    "dice": 0.005,
    "not_slower": 0.95,  # "never slower", within the +-5 % noise of the step-median ratio
    "threads": 0.95,
    "inference": 1.8,
    "agreement": 0.999,
    "tiled": 1.5,
    "memory": 3.0,
    "idle": 2.0,  # wall - CPU after fit; reading best.keras from disk counts too (README)
}


# ----------------------------------------------------------------------------- set-up
def machine() -> dict:
    import keras
    import tensorflow as tf

    from unet_lib.runtime import read_cpu_flags

    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "bf16 units": sorted(read_cpu_flags() & {"avx512_bf16", "amx_bf16"}),
        "memory GiB": round(memory, 1),
        "gpus": [d.name for d in tf.config.list_logical_devices("GPU")],
        "tensorflow / keras / python": f"{tf.__version__} / {keras.__version__} / "
        f"{platform.python_version()}",
        "load average at start": round(os.getloadavg()[0], 2),
    }


def library_precision() -> str:
    """The precision policy ``unet_lib.train`` picks on this machine by default."""
    from unet_lib import runtime

    return runtime.decide_settings(runtime.detect_devices()).precision_policy


# ----------------------------------------------------------------------------- sections
def section_precision(report: Report, plan: dict, train_precision: str) -> dict:
    """Fixed-length runs, float32 against bfloat16 (or the default), same seed per pair."""
    from benchmarks import bench_train as bt
    from unet_lib.runtime import read_cpu_flags

    other = train_precision  # against float32: the library's choice, or bfloat16 where the
    if bt.policy_of(train_precision) == "float32":  # library keeps float32 on a BF16 CPU
        if not read_cpu_flags() & {"avx512_bf16", "amx_bf16"}:
            report.note("precision: float32 is the only fast precision here; nothing to compare")
            return {}
        other = "bfloat16"
    datasets = {"built-in": plan["dice_seeds"]}
    if bt.isbi_data() is None:
        report.note("ISBI 2012 not found (UNET_SHARED_DATA or ../shared/data): skipped")
    elif plan["isbi_seeds"]:
        datasets["isbi"] = plan["isbi_seeds"]
    groups: dict = {}
    for dataset, seeds in datasets.items():
        pairs = bt.same_seed_pairs(dataset, seeds, other=other, epochs=plan["dice_epochs"],
                                   steps_per_epoch=plan["dice_steps"],
                                   batch_size=plan["dice_batch"])  # fmt: skip
        groups[dataset] = {"float32": [a for a, _ in pairs], "other": [b for _, b in pairs]}
        report.idle += [r["after_fit_idle"] for pair in pairs for r in pair]

    rows = report.table(
        "Precision: the same fixed-length unet_lib.train run in float32 and in "
        f"{bt.policy_of(other)} (same seed: same weights and batches)",
        ["data", "precision", "runs", "steps each", "batch", "img/s (median step)",
         "final val Dice per seed", "mean Dice", "Δ vs float32"],
    )  # fmt: skip
    out = {}
    for dataset, group in groups.items():
        dice32 = [r["val_dice"] for r in group["float32"]]
        for key in ("float32", "other"):
            runs = group[key]
            dice = [r["val_dice"] for r in runs]
            batch = runs[0]["batch_size"]
            delta = float(np.mean(dice) - np.mean(dice32)) if key == "other" else None
            rows.append([dataset, runs[0]["precision"], len(runs), len(runs[0]["steps"]), batch,
                         batch / median([r["step"] for r in runs]),
                         ", ".join(f"{d:.4f}" for d in dice), float(np.mean(dice)),
                         delta])  # fmt: skip
        out[dataset] = {
            "delta": float(np.mean([r["val_dice"] for r in group["other"]]) - np.mean(dice32)),
            "pairs": len(dice32),
            "precision": group["other"][0]["precision"],
        }
    report.note(
        "precision table: img/s there are medians of separate, sequential runs; the speed "
        "of bfloat16 against float32 measured step by step is 'bf16 x f32' in the training "
        "table. The default's Dice rests on more and longer pairs: benchmarks/"
        "precision_study.py (README)"
    )
    return out


def section_training(report, plan, train_precision, peaks, flops_fn):
    """unet_lib.train vs in-memory fit vs the plain-Keras way, interleaved step by step."""
    from benchmarks import bench_train as bt

    rows = report.table(
        "Training throughput (images/s, median of steady-state steps, the ways interleaved "
        "step by step in rotating order; lib / x = median of the step-by-step ratios)",
        ["config", "batch", "unet_lib.train", "precision", "in-memory (same precision)",
         "plain Keras", "lib / in-memory", "lib / plain", "in-memory float32",
         "in-memory bfloat16", "bf16 x f32", "GFLOP/s (lib)", "% matmul peak"],
    )  # fmt: skip
    results = []
    configs = [(*DEFAULT_CONFIG, plan["baseline_steps"]), *plan["configs"]]
    for name, filters, size, batch, steps in configs:
        start = time.perf_counter()
        data = bt.builtin_data() if size == 128 else bt.synthetic_data(size)
        r = bt.interleaved_ways(data, base_filters=filters, batch_size=batch, steps=steps,
                                precision=train_precision,
                                warmup=plan["warmup_steps"])  # fmt: skip
        report.idle.append(r["idle"])
        rate = {k: batch / r[k] for k in ("lib", "mem", "mem_f32", "mem_bf16", "plain") if k in r}
        # the library against each baseline: the median of step-by-step ratios (paired, so
        # drifting load cancels), not the ratio of the two medians
        rate["lib/mem"] = r["speedup"]["mem"]
        rate["lib/plain"] = r["speedup"]["plain"]
        bf16 = rate.get("mem_bf16", math.nan)
        gflops = 3 * flops_fn(filters, size) * rate["lib"]
        peak = peaks["bfloat16" if "bfloat16" in r["precision"] else "float32"]
        rows.append([name, batch, rate["lib"], r["precision"], rate["mem"], rate["plain"],
                     rate["lib/mem"], rate["lib/plain"], rate["mem_f32"],
                     bf16, bf16 / rate["mem_f32"], gflops, 100 * gflops / peak])  # fmt: skip
        results.append((name, rate))
        print(f"  {name} ({time.perf_counter() - start:.0f} s): {json.dumps(rate)}", flush=True)
    return results


def section_inference(report: Report, plan: dict, peaks: dict) -> dict:
    from benchmarks import bench_infer as bi
    from unet_lib import load_model

    path = bi.reference_model_path()
    model = load_model(path, compile=False)
    speed = bi.speed(model, plan["inference_sizes"], rounds=plan["inference_rounds"],
                     report=report, peak32=peaks["float32"],
                     with_float32=plan["inference_float32"])  # fmt: skip
    if plan["memory_model"] == "small":
        path = bi.small_model_path()
        report.note(f"memory rows: an untrained F8 model ({path.name}) for time; the full "
                    "suite measures the reference F32 model")  # fmt: skip
    rows = report.table(
        f"Inference per image size, precision auto, {path.stem} (fresh process each; the "
        "uint8 input and the model are not counted in the peak)",
        ["image", "path", "s", "MP/s", "peak extra MiB", "probabilities MiB", "peak / output"],
    )
    tiled_name = "tiled {tile_size}, overlap {overlap}, batch {batch_size}".format(**bi.TILED)
    memory = {}
    for size, tiled in plan["memory"]:
        spec = {"model": str(path), "size": size, "tiled": tiled, "precision": "auto"}
        try:
            r = run_worker("memory", spec, timeout=1200)
        except Exception as err:  # noqa: BLE001 - an image that does not fit is a result
            kind = "tiled" if tiled else "whole"
            report.note(f"memory {size}² {kind}: failed ({str(err)[-300:]})")
            continue
        memory[(size, tiled)] = r
        rows.append([f"{size}²", tiled_name if tiled else "whole image", r["seconds"],
                     size * size / 1e6 / r["seconds"], r["peak_extra_mib"], r["output_mib"],
                     r["peak_extra_mib"] / r["output_mib"]])  # fmt: skip
        print(f"  memory {size}² tiled={tiled}: {json.dumps(r)}", flush=True)
    return {"speed": speed, "memory": memory}


def section_scaling(report: Report, policy: str, flops_fn) -> None:
    from benchmarks import bench_train as bt

    points = bt.scaling(policy=policy, base_filters=32, batches=(1, 4, 16),
                        sizes=(64, 128, 256), size_batch=4, steps=3)  # fmt: skip
    rows = report.table(
        f"Scaling: train_on_batch of the default model (F32, batch norm), {policy}",
        ["batch", "image", "images/s", "MP/s", "GFLOP/s"],
    )
    for p in points:
        rate = p["batch"] / p["step"]
        rows.append([p["batch"], f"{p['size']}²", rate, rate * p["size"] ** 2 / 1e6,
                     3 * flops_fn(32, p["size"]) * rate])  # fmt: skip


def section_threads(report: Report, policy: str, rounds: int) -> dict:
    settings = [
        ("TensorFlow default", {}),
        ("intra=2, inter=1", {"intra": 2, "inter": 1}),
    ]
    times: dict[str, list[float]] = {name: [] for name, _ in settings}
    openmp: set[str] = set()
    # A fresh process per run, alternating the order every round: one process's step time
    # can sit 10 % off another's under the same setting, so the median of several processes
    for round_ in range(rounds):
        for name, spec in settings if round_ % 2 == 0 else settings[::-1]:
            full = {"policy": policy, "base_filters": 32, "batch_size": 8, "steps": 4,
                    "warmup": 1, **spec}  # fmt: skip
            r = run_worker("threads", full)
            times[name].append(r["step"])
            openmp.update(r.get("openmp_runtimes", []))
    rows = report.table(
        f"Threading (a fresh process each, {rounds} rounds in alternating order; default "
        f"model, {policy})",
        ["setting", "ms/step (median)", "ms/step per process", "speed x TF default"],
    )
    base = median(times["TensorFlow default"])
    for name, ts in times.items():
        rows.append([name, 1000 * median(ts), ", ".join(f"{1000 * t:.0f}" for t in ts),
                     base / median(ts)])  # fmt: skip
    report.note(
        "OMP_NUM_THREADS: "
        + (f"OpenMP runtimes loaded: {sorted(openmp)}" if openmp else "no OpenMP runtime is "
           "loaded in the training process, so it cannot change the speed (not timed)")
    )  # fmt: skip
    return {k: median(v) for k, v in times.items()}


def section_xla(report: Report, policy: str) -> dict:
    from benchmarks import bench_train as bt

    x, y = bt.batch_of(bt.builtin_data(), 8)
    off = bt.inmemory_fit(x, y, base_filters=16, policy=policy, steps=8, jit_compile=False)
    on = bt.inmemory_fit(x, y, base_filters=16, policy=policy, steps=8, jit_compile=True)
    rows = report.table(
        f"XLA (in-memory fit, F16 128², batch 8, {policy})", ["jit_compile", "images/s", "x off"]
    )
    rows.append(["False (the CPU default)", 8 / off["step"], 1.0])
    rows.append(["True", 8 / on["step"], off["step"] / on["step"]])
    return {"off": off["step"], "on": on["step"]}


# ----------------------------------------------------------------------------- targets
def targets(report, precision, training, inference, threads, xla, plan) -> None:
    """The issue's targets, from the sections' results."""
    t = TARGETS
    for name, rate in training:
        report.target(f"unet_lib.train / in-memory fit, {name}", rate["lib/mem"],
                      t["vs_inmemory"])  # fmt: skip
    rates = dict(training)
    if DEFAULT_CONFIG[0] in rates:
        default = rates[DEFAULT_CONFIG[0]]
        report.target(f"unet_lib.train / plain Keras, {DEFAULT_CONFIG[0]}",
                      default["lib/plain"], t["vs_plain"])  # fmt: skip
    for label, r in precision.items():
        note = f"{r['precision']} vs float32, {r['pairs']} same-seed pair(s)"
        name = f"final Dice, {r['precision']} - float32, {label}"
        if plan.get("dice_target", True):  # one-sided: a loss of Dice fails, a gain does not
            report.target(name, r["delta"], -t["dice"], ">=", note)
        else:
            report.note(f"{name}: {r['delta']:+.4f} ({note}); too short to judge the 0.005 "
                        "rule: benchmarks/precision_study.py does (README)")  # fmt: skip
    if training:
        name, slow = min(training, key=lambda nr: nr[1]["lib/plain"])
        report.target(f"defaults / Keras defaults, slowest config ({name})",
                      slow["lib/plain"], t["not_slower"])  # fmt: skip
    if xla:
        report.target("XLA off (the CPU default) / XLA on, speed", xla["on"] / xla["off"],
                      t["not_slower"])  # fmt: skip
    if threads:
        report.target("TF default threads / best measured setting, speed",
                      min(threads.values()) / threads["TensorFlow default"], t["threads"],
                      note="within 5 %: the library keeps TensorFlow's thread pools")  # fmt: skip
    for size, r in inference.get("speed", {}).items():
        report.target(f"unet_lib.predict (auto) / plain model.predict f32, {size}²",
                      r["whole"]["speedup"], t["inference"])  # fmt: skip
        report.target(f"labels equal to plain float32 predict, {size}²",
                      r["whole"]["agreement"], t["agreement"])  # fmt: skip
        report.target(f"tiled / whole-image time, {size}²", r["tiled_vs_whole"], t["tiled"], "<=")
    memory = inference.get("memory", {})
    if (4096, True) in memory and (4096, False) in memory:
        ratio = memory[(4096, True)]["seconds"] / memory[(4096, False)]["seconds"]
        report.target("tiled / whole-image time, 4096² (one run each)", ratio, t["tiled"], "<=")
    tiled = sorted((s, r) for (s, is_tiled), r in memory.items() if is_tiled)
    if tiled and tiled[-1][0] >= 8192:
        size, r = tiled[-1]
        report.target(f"peak extra memory / float32 output, {size}² tiled",
                      r["peak_extra_mib"] / r["output_mib"], t["memory"], "<=")  # fmt: skip
    if len(tiled) >= 2:  # the growth between the two largest sizes: the output buffers only
        (s0, a), (s1, b) = tiled[-2], tiled[-1]
        growth = (b["peak_extra_mib"] - a["peak_extra_mib"]) / (b["output_mib"] - a["output_mib"])
        report.target(f"memory growth / output growth, tiled {s0}² -> {s1}²", growth,
                      t["memory"], "<=", "probabilities + int32 labels = 2")  # fmt: skip
    if report.idle:
        report.target("idle seconds after fit in unet_lib.train (max of runs)",
                      max(report.idle), t["idle"], "<=",
                      "the tf.data teardown wait is 5-40 s when present")  # fmt: skip


# ----------------------------------------------------------------------------- main
def run_suite(args) -> Report:
    from benchmarks.flops import count_flops
    from unet_lib import build_unet

    plan = QUICK if args.quick else FULL
    report = Report()
    report.idle = []
    start = time.perf_counter()
    info = machine()
    print(f"machine: {json.dumps(info)}", flush=True)
    if args.no_isbi:
        os.environ["UNET_SHARED_DATA"] = "/nonexistent"
        plan = {**plan, "isbi_seeds": ()}
    train_precision = args.train_precision
    if train_precision != "auto":
        report.note(f"unet_lib.train ran with precision={train_precision!r} (not its default)")
    peaks = {"float32": matmul_peak("float32"), "bfloat16": matmul_peak("bfloat16")}
    print(f"matmul GFLOP/s: {json.dumps(peaks)}", flush=True)
    forward: dict = {}

    def flops_fn(filters: int, size: int) -> float:
        """Forward GFLOP per image of the default-layout U-Net (depth 4, batch norm)."""
        if (filters, size) not in forward:
            model = build_unet((None, None, 1), 1, base_filters=filters, batch_norm=True)
            forward[(filters, size)] = count_flops(model, (1, size, size, 1)).matmul / 1e9
        return forward[(filters, size)]

    wanted = set(args.sections.split(",")) if args.sections else set(SECTIONS)
    unknown = wanted - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    from benchmarks import bench_train as bt

    policy = bt.policy_of(train_precision)
    seconds: dict[str, float] = {}

    def timed(name, section, *section_args, empty=None):
        """Runs a section --sections names, or the plan's when none are named; records its
        wall time."""
        if name not in wanted or not (plan[name] or args.sections):
            return empty
        print(f"-- {name}", flush=True)
        t0 = time.perf_counter()
        out = section(*section_args)
        seconds[name] = time.perf_counter() - t0
        print(f"-- {name}: {seconds[name]:.0f} s", flush=True)
        return out

    precision = timed("precision", section_precision, report, plan, train_precision, empty={})
    training = timed("training", section_training, report, plan, train_precision, peaks,
                     flops_fn, empty=[])  # fmt: skip
    inference = timed("inference", section_inference, report, plan, peaks, empty={})
    threads = timed("threads", section_threads, report, policy, plan["thread_rounds"])
    xla = timed("xla", section_xla, report, policy)
    timed("scaling", section_scaling, report, policy, flops_fn)
    end_peak = matmul_peak("float32")
    rows = report.table("Machine and run", ["what", "value"])
    rows += [[k, str(v)] for k, v in info.items()]
    rows.append(["matmul 4096² float32 GFLOP/s, start / end",
                 f"{peaks['float32']:.0f} / {end_peak:.0f}"])  # fmt: skip
    rows.append(["matmul 4096² bfloat16 GFLOP/s", f"{peaks['bfloat16']:.0f}"])
    rows.append(["unet_lib.train precision", policy])
    rows.append(["suite wall time, s", f"{time.perf_counter() - start:.0f}"])
    rows.append(["section wall times, s", ", ".join(f"{k} {v:.0f}" for k, v in seconds.items())])
    if abs(end_peak / peaks["float32"] - 1) > 0.2:
        report.note(
            f"the float32 matmul moved from {peaks['float32']:.0f} to {end_peak:.0f} GFLOP/s "
            "during the run: the machine was shared; rerun for cleaner ratios"
        )
    targets(report, precision, training, inference, threads, xla, plan)
    report.elapsed = time.perf_counter() - start
    return report


def worker(name: str, spec: dict) -> int:
    """Subprocess entry (``--worker``): one measurement in a fresh Python."""
    if name == "memory":
        from benchmarks import bench_infer

        bench_infer.memory_worker(spec)
    elif name == "threads":
        from benchmarks import bench_train

        bench_train.thread_worker(spec)
    else:
        print(f"unknown worker {name!r}", file=sys.stderr)
        return 2
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the default configuration only")
    parser.add_argument("--no-isbi", action="store_true", help="skip ISBI 2012 even if present")
    parser.add_argument(
        "--train-precision",
        default="auto",
        choices=("auto", "float32", "bfloat16"),
        help="precision= for unet_lib.train (default: the library's own choice)",
    )
    parser.add_argument("--sections", help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument("--markdown", type=Path, help="also write the tables as Markdown")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, json.loads(args.spec or "{}"))
    report = run_suite(args)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    print(report.render())
    print(f"\n{'quick' if args.quick else 'full'} suite, {stamp}, {report.elapsed:.0f} s: "
          f"{len(report.failed)} of {len(report.targets)} targets failed")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=1, default=str))
    if args.markdown:
        args.markdown.write_text(report.render(markdown=True) + "\n")
    return report.exit_code()


if __name__ == "__main__":
    sys.exit(main())
