"""Keras backends: the model, losses, metrics and prediction run on TensorFlow, torch and JAX;
a ``.keras`` file saved under one backend predicts the same under another; ``train`` runs on
torch from the ``tf.data`` pipeline; the package imports without TensorFlow; and the GPU
benchmark script runs on this CPU.

This file imports no TensorFlow: ``scripts/test.sh`` also runs it under
``KERAS_BACKEND=torch`` and ``jax``. The tests that start one subprocess per backend run
only in the TensorFlow session (the main run), so they are not repeated there.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from unet_lib.inference.predictor import predict
from unet_lib.losses import DiceCELoss
from unet_lib.metrics import DiceMetric, IoUMetric
from unet_lib.model.unet import build_unet

REPO = Path(__file__).resolve().parents[1]
BACKENDS = [b for b in ("tensorflow", "torch", "jax") if importlib.util.find_spec(b)]
MAIN_RUN = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="starts one subprocess per backend: run once, in the TensorFlow session",
)
needs_torch = pytest.mark.skipif("torch" not in BACKENDS, reason="torch is not installed")


def _env(backend: str, **extra) -> dict:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", **extra)
    env.pop("TF_CONFIG", None)
    env.pop("UNET_DEVICES", None)
    return env


def _run(code: str, backend: str, *args, timeout=240, **extra) -> str:
    return _run_all([(code, backend, args)], timeout=timeout, **extra)[0]


def _run_all(jobs, timeout=240, **extra) -> list[str]:
    """Runs ``(code, backend, args)`` jobs side by side; their outputs, in order."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(backend, **extra),
        )
        for code, backend, args in jobs
    ]
    outputs = []
    try:
        for proc, (_, backend, _) in zip(procs, jobs, strict=True):
            out, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, f"{backend}: {err[-3000:]}"
            outputs.append(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return outputs


def _small_unet():
    return build_unet((None, None, 1), 1, depth=2, base_filters=4, batch_norm=True, dropout=0.1)


def test_encoder_unet_trains_and_round_trips_in_this_backend(tmp_path):
    """One keras.applications encoder (MobileNetV2) under whichever backend runs the tests."""
    keras.utils.set_random_seed(0)
    model = build_unet((None, None, 3), 1, encoder="mobilenetv2", base_filters=2)
    model.compile(optimizer="adam", loss=DiceCELoss())
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    model.fit(x, (x[..., :1] > 0.5).astype(np.float32), batch_size=2, epochs=1, verbose=0)
    path = tmp_path / "encoder.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-5)  # fmt: skip
    assert predict(loaded, x[0, :30, :20]).labels.shape == (30, 20)


def test_keras_file_round_trip_in_this_backend(tmp_path):
    """Save, load and predict (plain and tiled) under whichever backend runs the tests."""
    keras.utils.set_random_seed(0)
    model = _small_unet()
    model.compile(optimizer="adam", loss=DiceCELoss(), metrics=[DiceMetric(1), IoUMetric(1)])
    x = np.random.default_rng(0).random((2, 32, 32, 1), dtype=np.float32)
    y = (x > 0.5).astype(np.float32)
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)  # BN statistics and Adam state move
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=0, atol=1e-6
    )
    whole = predict(loaded, x[0]).probabilities
    tiled = predict(loaded, x[0], tile_size=16, overlap=0.5).probabilities
    assert whole.shape == tiled.shape == (32, 32, 1)
    assert np.isfinite(tiled).all()
    assert loaded.evaluate(x, y, verbose=0, return_dict=True)["dice"] >= 0.0


SAVE = """
import sys
import keras, numpy as np
from unet_lib.losses import DiceCELoss
from unet_lib.metrics import DiceMetric
from unet_lib.model.unet import build_unet
keras.utils.set_random_seed(0)
model = build_unet((None, None, 1), 1, depth=2, base_filters=4, batch_norm=True,
                   upsampling="bilinear", dropout=0.1)
model.compile(optimizer="adam", loss=DiceCELoss(), metrics=[DiceMetric(1)])
# move every weight off its initial value, batch-norm statistics included
rng = np.random.default_rng(2)
def moved(variable, w):
    if "variance" in variable.path:
        return rng.uniform(0.5, 2.0, w.shape).astype(w.dtype)
    return (w + 0.1 * rng.normal(size=w.shape)).astype(w.dtype)
model.set_weights([moved(v, w) for v, w in zip(model.weights, model.get_weights())])
x = np.load(sys.argv[2])
model.save(sys.argv[1] + ".keras")
np.save(sys.argv[1] + ".npy", model.predict(x, verbose=0))
"""

LOAD = """
import sys
import keras, numpy as np
import unet_lib.model.batchnorm, unet_lib.losses, unet_lib.metrics  # registers the custom objects
x = np.load(sys.argv[1])
for name in sys.argv[2:]:
    model = keras.saving.load_model(name + ".keras", safe_mode=True)
    np.save(name + "." + keras.backend.backend() + ".npy", model.predict(x, verbose=0))
print("LOADED", keras.backend.backend())
"""


@MAIN_RUN
@needs_torch
def test_keras_file_predicts_the_same_under_every_backend(tmp_path):
    x = np.random.default_rng(1).random((2, 32, 48, 1), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    _run_all([(SAVE, b, (tmp_path / f"saved_by_{b}", tmp_path / "x.npy")) for b in BACKENDS])
    loads = [
        (LOAD, b, (tmp_path / "x.npy", *[tmp_path / f"saved_by_{o}" for o in BACKENDS if o != b]))
        for b in BACKENDS
    ]
    for backend, out in zip(BACKENDS, _run_all(loads), strict=True):
        assert f"LOADED {backend}" in out
    for saver in BACKENDS:
        reference = np.load(tmp_path / f"saved_by_{saver}.npy")
        assert reference.shape == (2, 32, 48, 1)
        assert 0.01 < reference.std() and 0.01 < reference.mean() < 0.99  # not saturated
        for loader in BACKENDS:
            if loader != saver:
                got = np.load(tmp_path / f"saved_by_{saver}.{loader}.npy")
                np.testing.assert_allclose(
                    got, reference, rtol=0, atol=1e-4, err_msg=f"{saver} -> {loader}"
                )


NO_TENSORFLOW = """
import sys
sys.modules["tensorflow"] = None  # any import of TensorFlow now fails
import numpy as np
import unet_lib
from unet_lib.model.unet import build_unet
from unet_lib.losses import dice_ce_loss
from unet_lib.metrics import dice_score
from unet_lib.inference.predictor import predict
model = build_unet((None, None, 1), 1, depth=2, base_filters=4)
x = np.random.default_rng(0).random((16, 16, 1), dtype=np.float32)
p = predict(model, x).probabilities
print("NO_TF_OK", p.shape, float(dice_ce_loss((x > 0.5)[None], p[None])) > 0,
      "tensorflow" in sys.modules and sys.modules["tensorflow"] is not None)
"""


@MAIN_RUN
@needs_torch
def test_package_works_without_tensorflow():
    """The GPU machines have JAX and torch but no TensorFlow: model, losses, metrics and
    prediction must not need it."""
    out = _run(NO_TENSORFLOW, "torch")
    assert "NO_TF_OK (16, 16, 1) True False" in out


TRAIN = """
import json, sys
from unet_lib.data.synthetic import make_synthetic_dataset
from unet_lib.training.loop import train
data = make_synthetic_dataset(sys.argv[1] + "/data", num_images=10, size=32, seed=3)
result = train(data, sys.argv[1] + "/run", epochs=2, depth=2, base_filters=4, batch_size=4,
               seed=1, deterministic=True, verbose=0)
print("TRAINED", json.dumps({"history": result.history, "devices": result.config.devices}))
"""


@MAIN_RUN
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "tensorflow"])
def test_train_runs_from_the_tf_data_pipeline(backend, tmp_path):
    """``unet_lib.train`` on torch / JAX: the same tf.data input, one device."""
    out = _run(TRAIN, backend, tmp_path)
    run = json.loads(out.split("TRAINED ", 1)[1])
    assert run["devices"]["backend"] == backend
    assert run["devices"]["jit_compile"] == (backend == "jax")
    assert run["devices"]["strategy"] == "default" and run["devices"]["replicas"] == 1
    assert len(run["history"]["loss"]) == 2
    assert all(np.isfinite(v) for v in run["history"]["loss"] + run["history"]["val_loss"])
    assert (tmp_path / "run" / "best.keras").is_file()


@MAIN_RUN
@needs_torch
def test_gpu_benchmark_script_runs_on_this_cpu(tmp_path):
    result = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu.sh"), "--cpu", "--steps", "1", "--warmup", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(
            "torch",
            PYTHON=sys.executable,
            OUT=str(tmp_path),
            UNET_BACKENDS="torch",
            UNET_PRECISIONS="mixed_bfloat16",
        ),
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "img/s" in result.stdout and "TFLOP/s" in result.stdout
    rows = json.loads((tmp_path / "gpu_results.json").read_text())
    assert [(r["backend"], r["precision"]) for r in rows] == [("torch", "mixed_bfloat16")]
    for row in rows:
        assert row["device_kind"] == "cpu" and row["images_per_s"] > 0
        assert row["achieved_tflops"] >= 0 and row["forward_gflop_per_image"] > 0


def test_conv_flop_count_of_the_paper_unet():
    """The counter used by the benchmark, on shapes worked out by hand."""
    from benchmarks import gpu_bench

    # depth 1, 2 filters, 4x4 input, 1 channel, 1 class:
    #   enc 3x3 1->2: 2*16*9*1*2 = 576;  3x3 2->2: 2*16*9*2*2 = 1152
    #   bottleneck at 2x2: 3x3 2->4: 2*4*9*2*4 = 576;  3x3 4->4: 2*4*9*4*4 = 1152
    #   up 2x2 transpose 4->2 from 2x2: 2*4*4*4*2 = 256
    #   dec 3x3 4->2 (concat): 2*16*9*4*2 = 2304;  3x3 2->2: 1152;  head 1x1 2->1: 2*16*2 = 64
    model = build_unet((4, 4, 1), 1, depth=1, base_filters=2)
    assert gpu_bench.conv_flops(model) == 576 + 1152 + 576 + 1152 + 256 + 2304 + 1152 + 64
    assert gpu_bench.peak_tflops("NVIDIA H100 80GB HBM3", "mixed_bfloat16") == 989.0
    assert gpu_bench.peak_tflops("NVIDIA H200", "float32") == 495.0
    assert gpu_bench.peak_tflops(None, "float32") is None
