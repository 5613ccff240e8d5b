#!/usr/bin/env bash
# The copy to read without running anything: runs the main job (the notebook in full mode on
# the bundled nuclei), then writes docs/ImageSegmentation_U-NET.html (the executed notebook
# as HTML with its figures, this checkout's path left out of its outputs, and the SHA-256 of
# the notebook's code it was made from) and docs/result.png (its grid of held-out
# predictions). Commit both; tests/test_notebook_clean.py checks that the page is of the
# notebook's current code and that every figure is in it.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
out="$repo/outputs"
UNET_FAST=0 UNET_OUTPUT_DIR="$out" bash scripts/main.sh
"$repo/.venv/bin/python" scripts/render_docs.py "$out/ImageSegmentation_U-NET.ipynb"
cp "$out/figures/predictions.png" docs/result.png
echo "render: docs/result.png"
