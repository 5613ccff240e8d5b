"""Committed notebooks carry no outputs or execution counts (they are stripped in git), but
for the rendered copy in docs/, which must be the notebook's code, executed, with every figure
(``bash scripts/render_docs.sh`` writes it)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "ImageSegmentation_U-NET.ipynb"
RENDERED = REPO / "docs" / "ImageSegmentation_U-NET.executed.ipynb"


def _tracked_notebooks() -> list[Path]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "*.ipynb"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        listed = [str(p.relative_to(REPO)) for p in REPO.glob("*.ipynb")]
    return [REPO / name for name in listed if REPO / name != RENDERED]


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


def _code(path: Path) -> list[dict]:
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def test_the_rendered_copy_is_the_notebook_executed_with_every_figure_inline():
    notebook, rendered = _code(NOTEBOOK), _code(RENDERED)
    fix = "run `bash scripts/render_docs.sh` and commit docs/"
    assert ["".join(c["source"]) for c in rendered] == ["".join(c["source"]) for c in notebook], (
        f"{RENDERED.name} is not the notebook's current code; {fix}"
    )
    errors = [o for c in rendered for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors, f"the rendered copy holds an error; {fix}"
    figures = [c for c in rendered if "viz.plot_" in "".join(c["source"])]
    images = [sum("image/png" in o.get("data", {}) for o in c["outputs"]) for c in figures]
    plots = ["".join(c["source"]).count("viz.plot_") for c in figures]
    assert sum(plots) >= 7  # samples, augmentations, curves, per class, confusion, grid, tiles
    assert images == plots, f"figures missing from the rendered copy (images {images}); {fix}"


def test_the_main_job_keeps_jupyters_inline_figures():
    script = (REPO / "scripts" / "main.sh").read_text()
    assert "unset MPLBACKEND" in script and "MPLBACKEND=Agg" not in script
