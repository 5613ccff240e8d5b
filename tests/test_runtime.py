"""Tests for runtime.settings: the pure decisions on fake devices, and a real 2-CPU mirror."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import namedtuple

import pytest

from unet_lib.runtime.settings import (
    TrainingSettings,
    apply_settings,
    decide_settings,
    device_settings,
    read_cpu_flags,
)

CPU = {"device_type": "CPU"}
V100 = {"device_type": "GPU", "compute_capability": (7, 0)}
A100 = {"device_type": "GPU", "compute_capability": (8, 0)}
P100 = {"device_type": "GPU", "compute_capability": (6, 0)}
TPU = {"device_type": "TPU"}
NO_BF16: set[str] = {"avx2", "fma"}
BF16 = {"avx2", "avx512f", "avx512_bf16"}
TWO_WORKERS = {"cluster": {"worker": ["a:2222", "b:2222"]}, "task": {"type": "worker", "index": 0}}

# devices, kwargs -> strategy, replicas, kind, policy, global batch, jit
CASES = {
    "no devices": ([], {}, ("default", 1, "cpu", "float32", 8, False)),
    "cpu": ([CPU], {}, ("default", 1, "cpu", "float32", 8, False)),
    "1 gpu cc 7.0": ([V100], {}, ("default", 1, "gpu", "mixed_float16", 8, True)),
    "2 gpus cc 8.0": ([A100, A100], {}, ("mirrored", 2, "gpu", "mixed_bfloat16", 16, True)),
    "old gpu": ([P100], {}, ("default", 1, "gpu", "float32", 8, True)),
    "mixed gpus": ([A100, V100], {}, ("mirrored", 2, "gpu", "mixed_float16", 16, True)),
    "gpu beats cpu": ([CPU, V100], {}, ("default", 1, "gpu", "mixed_float16", 8, True)),
    "2 logical cpus": ([CPU, CPU], {}, ("mirrored", 2, "cpu", "float32", 16, False)),
    "tpu": ([TPU] * 8, {}, ("tpu", 8, "tpu", "mixed_bfloat16", 64, True)),
    "2 workers": (
        [CPU],
        {"tf_config": json.dumps(TWO_WORKERS)},
        ("multi_worker_mirrored", 2, "cpu", "float32", 16, False),
    ),
    "2 workers x 2 gpus": (
        [A100, A100],
        {"tf_config": TWO_WORKERS, "per_device_batch_size": 4},
        ("multi_worker_mirrored", 4, "gpu", "mixed_bfloat16", 16, True),
    ),
    "1 worker": ([CPU], {"tf_config": {"cluster": {"worker": ["a:1"]}}}, ("default", 1)),
    "cpu bfloat16 asked": (
        [CPU],
        {"precision": "bfloat16"},
        ("default", 1, "cpu", "mixed_bfloat16"),
    ),
    "gpu jit off": (
        [V100],
        {"jit_compile": False},
        ("default", 1, "gpu", "mixed_float16", 8, False),
    ),
    "gpu float32 asked": ([A100], {"precision": "float32"}, ("default", 1, "gpu", "float32")),
}


@pytest.mark.parametrize("name", list(CASES))
def test_decisions(name):
    devices, kwargs, expected = CASES[name]
    s = decide_settings(devices, cpu_flags=NO_BF16, **kwargs)
    got = (
        s.strategy_name,
        s.num_replicas,
        s.device_kind,
        s.precision_policy,
        s.global_batch_size,
        s.jit_compile,
    )
    assert got[: len(expected)] == expected
    assert s.strategy is None
    assert set(s.reasons) == {"strategy", "precision", "jit_compile", "batch"}


def test_physical_device_like_objects():
    Device = namedtuple("Device", "name device_type details")
    gpus = [
        Device(f"/physical_device:GPU:{i}", "GPU", {"compute_capability": (9, 0)}) for i in range(2)
    ]
    s = decide_settings(gpus, per_device_batch_size=2, cpu_flags=NO_BF16)
    assert (s.strategy_name, s.precision_policy, s.global_batch_size) == (
        "mirrored",
        "mixed_bfloat16",
        4,
    )
    assert s.devices == ["/physical_device:GPU:0", "/physical_device:GPU:1"]
    assert decide_settings(["/device:CPU:0"], cpu_flags=NO_BF16).device_kind == "cpu"


def test_cpu_bf16_is_detected_and_recorded():
    with_bf16 = decide_settings([CPU], cpu_flags=BF16)
    assert with_bf16.cpu_bf16 and with_bf16.precision_policy == "float32"
    assert "avx512_bf16" in with_bf16.reasons["precision"]
    without = decide_settings([CPU], cpu_flags=NO_BF16)
    assert not without.cpu_bf16 and "no AVX-512 BF16" in without.reasons["precision"]


def test_read_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\n")
    assert read_cpu_flags(str(info)) == {"fpu", "avx2", "avx512_bf16"}
    assert read_cpu_flags(str(tmp_path / "missing")) == set()


def test_bad_arguments():
    with pytest.raises(ValueError, match="precision"):
        decide_settings([CPU], precision="int8")
    with pytest.raises(ValueError, match="jit_compile"):
        decide_settings([CPU], jit_compile="yes")
    with pytest.raises(ValueError, match="device type"):
        decide_settings([{"device_type": "FPGA"}])
    with pytest.raises(ValueError, match="per_device_batch_size"):
        decide_settings([CPU], per_device_batch_size=0)


def test_describe_mentions_every_choice():
    text = decide_settings([A100, A100], cpu_flags=NO_BF16).describe()
    for word in ("mirrored", "2 replicas", "mixed_bfloat16", "jit", "16 global", "8.0"):
        assert word in text


def test_device_settings_on_this_machine_and_apply():
    import keras

    settings = device_settings(per_device_batch_size=3, precision="bfloat16")
    assert isinstance(settings, TrainingSettings) and settings.strategy is not None
    assert settings.global_batch_size == 3 * settings.num_replicas
    old = keras.mixed_precision.global_policy().name
    try:
        assert apply_settings(settings) == "mixed_bfloat16"
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    finally:
        keras.mixed_precision.set_global_policy(old)


SUBPROCESS = textwrap.dedent(
    """
    import numpy as np
    from unet_lib.runtime.settings import configure_threads, device_settings
    print("THREADS", configure_threads(intra_op=1, inter_op=1))
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    s = device_settings(per_device_batch_size=4)
    print("SETTINGS", type(s.strategy).__name__, s.strategy_name, s.num_replicas,
          s.global_batch_size, s.precision_policy, s.jit_compile)
    from unet_lib.data.augment import AugmentConfig, device_augment_fn
    fn = device_augment_fn(AugmentConfig(), seed=0)
    x = tf.constant(np.random.default_rng(0).random((2, 16, 16, 1), dtype=np.float32))
    y = tf.zeros((2, 16, 16, 1), tf.int32)
    out = s.strategy.run(tf.function(lambda: fn(x, y, 0)[0]))
    a, b = s.strategy.experimental_local_results(out)
    print("REPLICAS_DIFFER", not np.array_equal(a.numpy(), b.numpy()))
    try:
        configure_threads(intra_op=2)
    except RuntimeError:
        print("LATE_THREADS_RAISE")
    """
)


def test_two_logical_cpus_build_a_real_mirrored_strategy():
    result = subprocess.run(
        [sys.executable, "-c", SUBPROCESS], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "THREADS {'intra_op': 1, 'inter_op': 1}" in out
    assert "SETTINGS MirroredStrategy mirrored 2 8 float32 False" in out
    assert "REPLICAS_DIFFER True" in out  # each replica folds in its id
    assert "LATE_THREADS_RAISE" in out
