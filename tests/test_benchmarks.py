"""Tests for the benchmark suite's plumbing (benchmarks/run.py and helpers), not its timings:
the FLOP counter against hand counts, the tables, the targets and the exit code."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from benchmarks import bench_common as bc
from benchmarks import run as suite
from benchmarks.flops import count_flops, layer_flops
from unet_lib.model.unet import build_unet

REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- FLOPs
def test_conv_flops_by_hand():
    model = keras.Sequential([keras.Input((8, 8, 2)), keras.layers.Conv2D(3, 3, padding="same")])
    count = count_flops(model, (1, 8, 8, 2))
    assert count.matmul == 2 * 8 * 8 * (3 * 3 * 2) * 3  # 2 x out pixels x kernel x C_in x C_out
    assert count.elementwise == 8 * 8 * 3  # the bias


def test_transposed_conv_dense_and_elementwise_by_hand():
    t = keras.layers.Conv2DTranspose(4, 2, strides=2, use_bias=False)
    assert layer_flops(t, [(1, 4, 4, 3)], [(1, 8, 8, 4)]) == (2 * 4 * 4 * 2 * 2 * 3 * 4, 0)
    d = keras.layers.Dense(5, activation="relu")
    assert layer_flops(d, [(2, 7)], [(2, 5)]) == (2 * 2 * 7 * 5, 2 * 5 + 2 * 5)  # bias + relu
    bn = keras.layers.BatchNormalization()
    assert layer_flops(bn, [(1, 4, 4, 3)], [(1, 4, 4, 3)]) == (0, 2 * 48)
    pool = keras.layers.MaxPooling2D(2)
    assert layer_flops(pool, [(1, 4, 4, 3)], [(1, 2, 2, 3)]) == (0, 12 * 4)
    assert layer_flops(keras.layers.Concatenate(), [(1, 2, 2, 1)] * 2, [(1, 2, 2, 2)]) == (0, 0)


def test_tiny_unet_flops_by_hand():
    # depth 1, 2 base filters, 8 x 8 x 1 input; 2 * pixels * 9 * C_in * C_out per 3x3 conv:
    #   enc1:      1->2 at 8x8: 2*64*9*1*2 = 2304;   2->2: 2*64*9*2*2 = 4608
    #   bottleneck 2->4 at 4x4: 2*16*9*2*4 = 2304;   4->4: 2*16*9*4*4 = 4608
    #   up-conv 4->2, 2x2 stride 2 from 4x4: 2*16*4*4*2 = 1024
    #   dec1 (2+2)->2 at 8x8: 2*64*9*4*2 = 9216;     2->2: 4608
    #   head 1x1 2->1: 2*64*2*1 = 256
    model = build_unet((None, None, 1), 1, depth=1, base_filters=2)
    assert count_flops(model, (1, 8, 8, 1)).matmul == 28928
    # batch and image area scale it linearly
    assert count_flops(model, (3, 16, 16, 1)).matmul == 3 * 4 * 28928


def test_paper_unet_forward_flops():
    # the classic U-Net (64 base filters) at 256 x 256: about 96 GFLOP per image forward
    count = count_flops(build_unet((None, None, 1), 1), (1, 256, 256, 1))
    assert 95e9 < count.matmul < 97e9
    assert count.elementwise < 0.01 * count.matmul


# ----------------------------------------------------------------------------- report
def test_targets_pass_fail_and_exit_code():
    report = bc.Report()
    report.target("fast enough", 2.0, 1.8)
    report.target("small enough", 0.5, 1.0, "<=")
    assert report.exit_code() == 0 and not report.failed
    report.target("nan never passes", math.nan, 0.0, ">=")
    report.target("too slow", 1.7, 1.8)
    assert report.exit_code() == 1
    assert [t.name for t in report.failed] == ["nan never passes", "too slow"]
    text = report.render()
    assert "PASS  fast enough" in text and "FAIL  too slow" in text


def test_tables_render_aligned_and_markdown():
    report = bc.Report()
    rows = report.table("Speed", ["config", "img/s", "ratio"])
    rows.append(["F16 128²", 12.345, 1.0])
    rows.append(["F64 256²", 0.5, None])
    text = report.render()
    assert "== Speed ==" in text and "12.3" in text and "0.5" in text and " - " in text + " "
    md = report.render(markdown=True)
    assert "| config | img/s | ratio |" in md and "|---|---|---|" in md
    assert bc.fmt(1234.5) == "1234" and bc.fmt(0.001234) == "1.23e-03" and bc.fmt(7) == "7"


def test_suite_targets_from_results():
    """The target logic of run.py on made-up results: names, limits, pass / fail."""
    report = bc.Report()
    report.idle = [0.1, 0.3]
    training = [
        # the targets read the paired ratios (lib/mem, lib/plain), not the rates' quotient
        (suite.DEFAULT_CONFIG[0], {"lib": 10.0, "lib/mem": 0.98, "lib/plain": 2.0}),
        ("F64 256²", {"lib": 1.0, "lib/mem": 0.83, "lib/plain": 0.91}),  # 0.83: fails
    ]
    precision = {
        "built-in": {"delta": -0.002, "pairs": 1, "precision": "mixed_bfloat16"},
        "isbi": {"delta": -0.011, "pairs": 1, "precision": "mixed_bfloat16"},
    }
    inference = {
        "speed": {1024: {"whole": {"speedup": 2.2, "agreement": 0.9995}, "tiled_vs_whole": 1.3}},
        "memory": {
            (4096, True): {"peak_extra_mib": 300.0, "output_mib": 64.0, "seconds": 10.0},
            (8192, True): {"peak_extra_mib": 700.0, "output_mib": 256.0, "seconds": 40.0},
        },
    }
    plan = {"dice_target": True}
    suite.targets(report, precision, training, inference, None, {"on": 1.3, "off": 1.0}, plan)
    result = {t.name: t.passed for t in report.targets}
    assert result["unet_lib.train / in-memory fit, F32 128² (default)"]
    assert not result["unet_lib.train / in-memory fit, F64 256²"]
    assert result["unet_lib.train / plain Keras, F32 128² (default)"]  # 2.0 >= 1.8
    assert result["final Dice, mixed_bfloat16 - float32, built-in"]  # -0.002 >= -0.005
    assert not result["final Dice, mixed_bfloat16 - float32, isbi"]  # lost 0.011: fails
    assert not result["defaults / Keras defaults, slowest config (F64 256²)"]  # 0.91
    assert result["XLA off (the CPU default) / XLA on, speed"]
    assert result["peak extra memory / float32 output, 8192² tiled"]  # 700 / 256 = 2.7
    assert result["memory growth / output growth, tiled 4096² -> 8192²"]  # 400 / 192 = 2.1
    assert result["idle seconds after fit in unet_lib.train (max of runs)"]
    assert report.exit_code() == 1


def test_abba_order_alternates_the_first_of_a_pair():
    from benchmarks import bench_train as bt

    assert bt.abba_jobs([0, 1, 2]) == [
        (0, "other"), (0, "float32"), (1, "float32"), (1, "other"), (2, "other"), (2, "float32")
    ]  # fmt: skip


def test_precision_study_interval_and_verdict():
    """The study's mean and t interval by hand, and its rule on made-up pairs."""
    from benchmarks import precision_study as ps

    # [0.01, -0.01, 0.0]: mean 0, sd 0.01, half width t(2) 4.303 * 0.01 / sqrt(3) = 0.024843
    mean, low, high = ps.mean_interval([0.01, -0.01, 0.0])
    assert mean == pytest.approx(0.0, abs=1e-12)
    assert (low, high) == pytest.approx((-0.024843, 0.024843), abs=1e-6)
    assert math.isnan(ps.mean_interval([0.3])[1])

    def run(seed, dice, step):
        return {"seed": seed, "val_dice": dice, "val_dice_history": [dice - 0.1, dice],
                "steps": [step] * 5, "step": step, "batch_size": 8}  # fmt: skip

    pairs = {
        "built-in": [(run(0, 0.80, 1.0), run(0, 0.803, 0.6)),
                     (run(1, 0.82, 1.0), run(1, 0.815, 0.6))],
        "isbi": [(run(0, 0.70, 1.0), run(0, 0.68, 0.6))],
    }  # fmt: skip
    report = ps.report_pairs(pairs, "bfloat16")
    verdict = {t.name: (t.value, t.passed) for t in report.targets}
    built_in = verdict["mean final Dice, bfloat16 - float32, built-in"]
    assert built_in[0] == pytest.approx(-0.001) and built_in[1]  # (0.003 - 0.005) / 2
    assert verdict["mean final Dice, bfloat16 - float32, isbi"] == (pytest.approx(-0.02), False)
    assert report.exit_code() == 1


def test_steady_and_median():
    assert bc.steady([9.0, 5.0, 4.0, 1.0, 1.0, 2.0]) == [1.0, 1.0, 2.0]
    assert bc.steady([3.0, 1.0, 1.0]) == [3.0, 1.0, 1.0]  # too few: keep the last 3
    assert math.isnan(bc.median([]))


# ----------------------------------------------------------------------------- command line
def test_help_and_unknown_worker():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 0 and "--quick" in out.stdout
    with pytest.raises(RuntimeError, match="unknown worker"):
        bc.run_worker("nonsense", {}, timeout=120)
