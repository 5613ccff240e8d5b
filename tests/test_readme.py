"""The README's "library in ten lines" runs as written: its Python block is executed in a
fresh process (in a temporary folder, so ``runs/first`` lands there). The fast test shortens
only the epoch count; the slow one runs it verbatim."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    """The first Python block after the README's "The library in ten lines" heading."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## The library in ten lines", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block, "README: no python block under 'The library in ten lines'"
    return block.group(1)


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=1200)  # fmt: skip


def _check(done: subprocess.CompletedProcess, cwd: Path) -> None:
    assert done.returncode == 0, done.stderr[-3000:]
    assert "mean" in done.stdout.lower() and "dice" in done.stdout.lower(), done.stdout[-2000:]
    assert (cwd / "runs" / "first" / "best.keras").is_file()
    assert (cwd / "runs" / "first" / "samples.png").stat().st_size > 10_000


def test_readme_example_runs_with_fewer_epochs(tmp_path):
    code = readme_example()
    assert code.count("epochs=40") == 1, "the README example's epoch count changed: update me"
    _check(_run(code.replace("epochs=40", "epochs=2"), tmp_path), tmp_path)


@pytest.mark.slow
def test_readme_example_runs_as_written(tmp_path):
    _check(_run(readme_example(), tmp_path), tmp_path)
