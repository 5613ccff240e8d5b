"""Tests for the tools around training: the version (one source), the quiet command line
(TensorFlow's start-up lines), the ``--early-stopping`` and ``--tensorboard`` flags, and
Matplotlib staying out of a training process until the first curves are drawn."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest

import unet_lib
from unet_lib.cli.parser import build_parser, is_tensorflow_noise, main, quiet_tensorflow
from unet_lib.cli.workflow import train_options

ROOT = Path(__file__).resolve().parents[1]
# What TensorFlow 2.21 printed on this 2-core CPU machine before the command line hid it.
NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796505150.876183   30432 port.cc:153] oneDNN custom operations are on.",
    "I0000 00:00:1796505150.876554   30432 cudart_stub.cc:31] Could not find cuda drivers",
    "W0000 00:00:1796505150.922914   30432 cpu_feature_guard.cc:227] This TensorFlow binary",
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild",
]
CUINIT = (
    "E0000 00:00:1796505161.610307   30456 cuda_platform.cc:52] failed call to cuInit: "
    "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)"
)
KEPT = [
    "E0000 00:00:1796505161.610307   30456 op_kernel.cc:1] OOM when allocating tensor",
    "Traceback (most recent call last):",
    "error: --data: no such folder",
    "  I0000 indented is not a log line",
]
# Any absl-format log line (I/W/E/F + MMDD + time), or the banner, or cuInit.
LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:|absl::InitializeLog|cuInit", re.M)


def _command_line(*args, env=None):
    """``python -m unet_lib ARGS`` in a fresh process without TF_CPP_MIN_LOG_LEVEL set."""
    clean = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [sys.executable, "-m", "unet_lib", *args],
        capture_output=True, text=True, cwd=ROOT, env={**clean, **(env or {})}, timeout=300,
    )  # fmt: skip


def test_version_has_one_source():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "unet_lib.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", unet_lib.__version__)


def test_version_flag_prints_the_version_and_no_tensorflow_lines():
    done = _command_line("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"unet_lib {unet_lib.__version__}\n"
    assert not LOG_LINE.search(done.stdout + done.stderr)
    assert done.stderr == ""


def test_a_command_that_loads_tensorflow_prints_no_start_up_lines(tmp_path):
    model_path = tmp_path / "model.keras"
    unet_lib.save_model(
        unet_lib.build_unet((None, None, 1), 1, base_filters=4, depth=2), model_path
    )
    image = tmp_path / "cell.png"
    cv2.imwrite(str(image), np.full((16, 16), 128, np.uint8))
    out = str(tmp_path / "masks")
    done = _command_line("predict", "--model", str(model_path), "--input", str(image),
                         "--out", out, env={"KERAS_BACKEND": "tensorflow"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "predict: wrote 1 files" in done.stdout
    assert not LOG_LINE.search(done.stdout + done.stderr), done.stderr


def test_tensorflow_noise_filter():
    assert all(is_tensorflow_noise(line) for line in NOISE)
    assert not any(is_tensorflow_noise(line) for line in KEPT)
    # cuInit's failure is noise where no NVIDIA driver is loaded, news where one is
    assert is_tensorflow_noise(CUINIT) == (not os.path.exists("/proc/driver/nvidia"))


def test_quiet_tensorflow_respects_the_users_setting(monkeypatch):
    check = argparse.Namespace(command="check")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # the user's choice stays
    quiet_tensorflow(check)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")  # restored to the original after the test
    quiet_tensorflow(check)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"


def test_main_from_python_leaves_the_environment_alone(monkeypatch, capsys):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "x")
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"unet_lib {unet_lib.__version__}\n"
    assert main(["generate", "--out", "/nonexistent/\0bad"]) == 1  # ran a command
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ


def test_early_stopping_flag():
    args = build_parser().parse_args(
        ["train", "--data", "d", "--out", "o", "--early-stopping", "3"]
    )
    assert train_options(args)["early_stopping"] == 3
    args = build_parser().parse_args(["train", "--data", "d", "--out", "o"])
    assert "early_stopping" not in train_options(args)  # off unless asked
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "--early-stopping PATIENCE" in help_text


def test_tensorboard_flag_without_tensorboard_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    run = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "no-data"), "--out", str(run), "--tensorboard"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install tensorboard" in err  # before the data check
    assert not run.exists()


def test_training_modules_import_without_matplotlib():
    # Keras imports matplotlib.pyplot itself when it can, so "not in sys.modules" says
    # nothing; with Matplotlib made unimportable, the training modules must still import.
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "import unet_lib.training.loop, unet_lib.training.callbacks, unet_lib.viz\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("patience", [0, -2, 2.5])
def test_bad_early_stopping_is_refused(patience):
    from unet_lib.training import TrainConfig

    with pytest.raises(ValueError, match=f"early_stopping must be .*got {patience}"):
        TrainConfig(early_stopping=patience)


def test_a_time_budget_shows_the_minutes_not_a_million_epochs(tmp_path, capsys):
    from unet_lib.data.synthetic import make_synthetic_dataset
    from unet_lib.training import train

    data = make_synthetic_dataset(tmp_path / "d", num_images=6, size=32, seed=1)
    train(data, tmp_path / "run", time_budget_minutes=0.05, depth=2, base_filters=2,
          batch_size=2, eval_tta=False, verbose=2)  # fmt: skip
    out = capsys.readouterr().out
    assert "Epoch 1 (0.0 of 0.05 min used)" in out and "/1000000" not in out


def test_evaluate_and_predict_show_a_progress_bar(tmp_path, capsys):
    from unet_lib.data.synthetic import make_synthetic_dataset
    from unet_lib.evaluation import evaluate
    from unet_lib.inference import predict_folder
    from unet_lib.model import build_unet

    data = make_synthetic_dataset(tmp_path / "d", num_images=3, size=32, seed=1)
    model = build_unet((None, None, 1), 1, depth=2, base_filters=2)
    evaluate(model, data, verbose=1)
    assert "3/3" in capsys.readouterr().out  # Keras' Progbar: done / total
    predict_folder(model, data / "images", tmp_path / "out", verbose=1)
    assert "3/3" in capsys.readouterr().out
    with pytest.raises(ValueError, match="verbose must be 0, 1"):
        evaluate(model, data, verbose=3)


def test_best_model_opens_with_plain_keras_without_unet_lib(tmp_path):
    # a model with the library's BatchNorm, saved portable, loads and predicts the same in a
    # process that never imports unet_lib
    from unet_lib.model import build_unet, load_model, save_model

    model = build_unet((None, None, 1), 1, depth=2, base_filters=4, batch_norm=True)
    assert any(type(layer).__name__ == "BatchNorm" for layer in model.layers)
    x = np.random.default_rng(0).random((1, 16, 16, 1)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.asarray(model(x, training=False)))
    save_model(model, tmp_path / "m.keras", portable=True)
    script = (
        "import sys, numpy as np, keras\n"
        f"m = keras.saving.load_model({str(tmp_path / 'm.keras')!r}, compile=False)\n"
        f"y = np.asarray(m(np.load({str(tmp_path / 'x.npy')!r}), training=False))\n"
        f"np.testing.assert_allclose(y, np.load({str(tmp_path / 'y.npy')!r}), atol=1e-6)\n"
        "assert not any(n.startswith('unet_lib') for n in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert load_model(tmp_path / "m.keras").count_params() == model.count_params()


def test_predict_folder_skips_hidden_files_and_reports_every_bad_one_first(tmp_path):
    import warnings as _warnings

    from unet_lib.data import DatasetError
    from unet_lib.inference import predict_folder
    from unet_lib.model import build_unet

    images = tmp_path / "images"
    images.mkdir()
    for stem in ("a", "b"):
        cv2.imwrite(str(images / f"{stem}.png"), np.full((16, 16), 100, np.uint8))
    (images / "._a.png").write_bytes(b"\x00\x05 macOS resource fork")  # hidden: skipped
    (images / "c.png").write_bytes(b"not a png")
    (images / "d.png").write_bytes(b"")
    model = build_unet((None, None, 1), 1, depth=2, base_filters=2)
    with pytest.raises(DatasetError) as error:
        predict_folder(model, images, tmp_path / "out")
    text = str(error.value)
    assert "2 unreadable image(s)" in text and "c.png" in text and "d.png" in text
    assert "._a.png" not in text and not (tmp_path / "out").exists()  # nothing written
    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        written = predict_folder(model, images, tmp_path / "out", skip_bad=True)
    assert [p.name for p in written] == ["a.png", "b.png"]
    assert sum("skipped" in str(w.message) for w in caught) == 2
