"""Atomic writes: all or nothing, no temporary files left, ordinary permissions."""

from __future__ import annotations

import os

import keras
import pytest

from unet_lib.fileio import atomic_path, save_model_atomic, write_json_atomic, write_text_atomic


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
    path = save_model_atomic(model, tmp_path / "m.keras")
    assert keras.saving.load_model(path, safe_mode=True).count_params() == 3
    with pytest.raises(ValueError, match=r"\.keras files only"):
        save_model_atomic(model, tmp_path / "m.h5")
