"""Tests for the command line: ``check`` and ``generate`` (in-process and one subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from unet_lib.cli.parser import main

ISBI_LABELS = '{"labels": {"background": 255, "membrane": 0}}'


def make_pair(root: Path, stem: str, image: np.ndarray, mask: np.ndarray | None) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "images" / f"{stem}.png"), image)
    if mask is not None:
        cv2.imwrite(str(root / "masks" / f"{stem}.png"), mask)


@pytest.fixture
def good(tmp_path) -> Path:
    mask = np.zeros((8, 8), np.uint8)
    mask[:2] = 255  # 16 of 64 pixels
    for stem in ("a", "b"):
        make_pair(tmp_path / "good", stem, np.full((8, 8), 90, np.uint8), mask)
    return tmp_path / "good"


@pytest.fixture
def bad(tmp_path) -> Path:
    root = tmp_path / "bad"
    make_pair(root, "ok", np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8))
    make_pair(root, "nomask", np.zeros((8, 8), np.uint8), None)
    make_pair(root, "size", np.zeros((8, 8), np.uint8), np.zeros((4, 8), np.uint8))
    make_pair(root, "rgb", np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8))
    (root / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    cv2.imwrite(str(root / "masks" / "broken.png"), np.zeros((8, 8), np.uint8))
    return root


def test_check_ok_prints_summary(good, capsys):
    assert main(["check", "--data", str(good)]) == 0
    out = capsys.readouterr().out
    assert "pairs:    2" in out and "8x8 (2)" in out and "channels: 1" in out
    # 0/255 inferred binary; foreground is 16/64 = 25 %
    assert "foreground" in out and "25.00 %" in out and "inferred" in out


def test_check_labels_json_string_file_and_channels(good, tmp_path, capsys):
    assert main(["check", "--data", str(good), "--labels", ISBI_LABELS]) == 0
    out = capsys.readouterr().out
    assert "membrane" in out and "75.00 %" in out  # mask 0 = membrane: 48/64
    labels_file = tmp_path / "labels.json"
    labels_file.write_text(ISBI_LABELS)
    assert (
        main(["check", "--data", str(good), "--labels", str(labels_file), "--channels", "3"]) == 0
    )
    assert "channels: 3 (converted from 1: 2)" in capsys.readouterr().out


def test_check_problems_one_line_each_exit_1(bad, capsys):
    assert main(["check", "--data", str(bad)]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    lines = captured.err.strip().splitlines()
    header, problems = lines[0], lines[1:]
    assert "4 problems" in header
    assert len(problems) == 4
    for name in ("nomask.png", "size.png", "rgb.png", "broken.png"):
        assert sum(name in line for line in problems) == 1, (name, problems)
    assert all(str(bad) in line for line in problems)  # every line names its file


def test_check_bad_labels_and_missing_folder(good, tmp_path, capsys):
    assert main(["check", "--data", str(good), "--labels", "{oops"]) == 1
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["check", "--data", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert "not found" in err and "Traceback" not in err


def test_usage_errors_return_2(capsys):
    assert main([]) == 2
    assert main(["check"]) == 2  # --data is required
    assert main(["check", "--data", "x", "--channels", "2"]) == 2
    assert main(["--help"]) == 0
    assert "check" in capsys.readouterr().out


def test_generate_then_check(tmp_path, capsys):
    out = tmp_path / "gen"
    args = ["generate", "--out", str(out), "--num-images", "3", "--size", "48", "--seed", "2"]
    assert main(args) == 0
    assert "wrote 3 binary" in capsys.readouterr().out
    assert main(["check", "--data", str(out)]) == 0
    assert "membrane" in capsys.readouterr().out
    assert main(args) == 1  # exists
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--kind", "multiclass"]) == 0
    assert json.loads((out / "dataset.json").read_text())["labels"]["granule"] == 255
    assert main(["generate", "--out", str(tmp_path / "x"), "--size", "4"]) == 1
    assert "size" in capsys.readouterr().err


def test_subprocess_python_m_unet_lib_check(good, bad):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    ok = subprocess.run(
        [sys.executable, "-m", "unet_lib", "check", "--data", str(good)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert "pairs:    2" in ok.stdout
    fail = subprocess.run(
        [sys.executable, "-m", "unet_lib", "check", "--data", str(bad)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert fail.returncode == 1
    assert "Traceback" not in fail.stdout + fail.stderr
    assert len(fail.stderr.strip().splitlines()) == 5  # header + 4 problems


@pytest.mark.shared_data
def test_check_real_isbi(shared_data, capsys):
    folder = shared_data / "isbi2012_membrane"
    assert main(["check", "--data", str(folder), "--labels", ISBI_LABELS]) == 0
    out = capsys.readouterr().out
    assert "pairs:    24" in out and "512x512" in out and "membrane" in out
