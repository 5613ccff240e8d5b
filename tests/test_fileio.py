"""Atomic writes: all or nothing, no temporary files left, ordinary permissions."""

from __future__ import annotations

import os

import keras
import pytest

from unet_lib.fileio import atomic_path, write_json_atomic, write_text_atomic
from unet_lib.model import save_model


def test_write_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "state.json"
    write_json_atomic(target, {"epoch": 1})
    write_json_atomic(target, {"epoch": 2})
    assert target.read_text() == '{\n  "epoch": 2\n}\n'
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]


def test_failure_keeps_the_old_file(tmp_path):
    target = write_text_atomic(tmp_path / "history.csv", "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half-writ")
        raise RuntimeError("killed while writing")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["history.csv"]


def test_temporary_keeps_the_suffix_and_the_file_gets_ordinary_permissions(tmp_path):
    with atomic_path(tmp_path / "figure.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "figure.png").st_mode & 0o777 == 0o666 & ~umask


def test_models_are_saved_as_keras_only(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    path = save_model(model, tmp_path / "m.keras")
    assert keras.saving.load_model(path, safe_mode=True).count_params() == 3
    with pytest.raises(ValueError, match=r"\.keras files only"):
        save_model(model, tmp_path / "m.h5")


def test_load_model_registers_the_custom_objects_first(tmp_path):
    # in a fresh interpreter: `import unet_lib` alone imports no submodule, so plain
    # keras.saving.load_model would not know DiceCELoss / DiceMetric
    import subprocess
    import sys

    from unet_lib.losses import DiceCELoss
    from unet_lib.metrics import DiceMetric
    from unet_lib.model.unet import build_unet

    model = build_unet((None, None, 1), 1, depth=1, base_filters=2, batch_norm=True)  # BatchNorm
    model.compile(loss=DiceCELoss(), metrics=[DiceMetric(1)])
    path = save_model(model, tmp_path / "m.keras")
    code = (
        "import sys, unet_lib\n"
        f"m = unet_lib.load_model({str(path)!r})\n"
        "assert type(m.loss).__name__ == 'DiceCELoss', m.loss\n"
        "print(m.count_params())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == str(model.count_params())


def test_load_model_errors_name_the_file(tmp_path):
    from unet_lib.model import load_model

    with pytest.raises(FileNotFoundError, match="no model file"):
        load_model(tmp_path / "absent.keras")
    (tmp_path / "m.h5").write_text("x")
    with pytest.raises(ValueError, match=r"m\.h5 is not a \.keras"):
        load_model(tmp_path / "m.h5")
    (tmp_path / "bad.keras").write_text("not a zip")
    with pytest.raises(ValueError, match=r"bad\.keras is not a readable Keras model"):
        load_model(tmp_path / "bad.keras")


def test_read_json_names_the_file_and_the_fix(tmp_path):
    from unet_lib.fileio import read_json

    good = tmp_path / "good.json"
    good.write_text('{"a": 1}')
    assert read_json(good, "fix it") == {"a": 1}
    empty, broken = tmp_path / "state.json", tmp_path / "config.json"
    empty.write_text("")
    broken.write_text('{"a": ')
    with pytest.raises(ValueError, match=r"state.json: empty file; start again"):
        read_json(empty, "start again")
    with pytest.raises(ValueError, match=r"config.json: not valid JSON \(Expecting value"):
        read_json(broken, "start again")
    with pytest.raises(ValueError, match=r"missing.json: cannot be read"):
        read_json(tmp_path / "missing.json", "start again")
