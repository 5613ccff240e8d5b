"""Committed notebooks carry no outputs or execution counts (they are stripped in git)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tracked_notebooks() -> list[Path]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "*.ipynb"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        listed = [str(p.relative_to(REPO)) for p in REPO.glob("*.ipynb")]
    return [REPO / name for name in listed]


def test_main_notebook_exists():
    assert (REPO / "ImageSegmentation_U-NET.ipynb").is_file()


@pytest.mark.parametrize("path", _tracked_notebooks(), ids=lambda p: p.name)
def test_notebook_is_stripped(path):
    notebook = json.loads(path.read_text())
    dirty = [
        index
        for index, cell in enumerate(notebook["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert not dirty, (
        f"{path.name}: code cells {dirty} have outputs or execution counts; strip them with "
        f"`jupyter nbconvert --clear-output --inplace {path.name}`"
    )
