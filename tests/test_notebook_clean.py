"""Committed notebooks carry no outputs or execution counts (they are stripped in git); the
page to read, docs/ImageSegmentation_U-NET.html, is the notebook's current code executed, with
every figure (``bash scripts/render_docs.sh`` writes it)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "ImageSegmentation_U-NET.ipynb"
RENDERED = REPO / "docs" / "ImageSegmentation_U-NET.html"


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


def _render_module():
    spec = importlib.util.spec_from_file_location(
        "render_docs", REPO / "scripts" / "render_docs.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_rendered_page_is_the_notebook_executed_with_every_figure_inline():
    render = _render_module()
    page = RENDERED.read_text()
    notebook = json.loads(NOTEBOOK.read_text())
    fix = "run `bash scripts/render_docs.sh` and commit docs/"
    mark = re.match(rf"<!-- {render.MARK}: ([0-9a-f]{{64}}) -->", page)
    assert mark and mark.group(1) == render.code_digest(notebook), (
        f"{RENDERED.name} was not rendered from the notebook's current code; {fix}"
    )
    assert "Traceback" not in page, f"the rendered page holds an error; {fix}"
    code = "".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code")
    plots = code.count("viz.plot_")
    assert plots >= 7  # samples, augmentations, curves, per class, confusion, grid, tiles
    images = page.count("data:image/png;base64")
    assert images >= plots, f"figures missing from the rendered page ({images} of {plots}); {fix}"


def test_the_main_job_keeps_jupyters_inline_figures():
    script = (REPO / "scripts" / "main.sh").read_text()
    assert "unset MPLBACKEND" in script and "MPLBACKEND=Agg" not in script
