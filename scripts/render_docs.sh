#!/usr/bin/env bash
# The copy to read without running anything: runs the main job (the notebook in full mode on
# the bundled nuclei), then writes docs/ImageSegmentation_U-NET.executed.ipynb (the executed
# notebook, this checkout's path left out of its outputs) and docs/result.png (its grid of
# held-out predictions). Commit both; tests/test_notebook_clean.py checks that the copy's
# code is the notebook's and that every figure is in it.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
out="$repo/outputs"
UNET_FAST=0 UNET_OUTPUT_DIR="$out" bash scripts/main.sh
"$repo/.venv/bin/python" - "$out/ImageSegmentation_U-NET.ipynb" "$repo" <<'PY'
import json
import sys
from pathlib import Path

source, repo = Path(sys.argv[1]), sys.argv[2].rstrip("/") + "/"
notebook = json.loads(source.read_text())
for cell in notebook["cells"]:
    for output in cell.get("outputs", []):
        for lines in (output.get("text"), output.get("data", {}).get("text/plain")):
            if isinstance(lines, list):
                lines[:] = [line.replace(repo, "") for line in lines]
target = Path(repo) / "docs" / "ImageSegmentation_U-NET.executed.ipynb"
target.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
print(f"render: {target}")
PY
cp "$out/figures/predictions.png" docs/result.png
echo "render: docs/result.png"
