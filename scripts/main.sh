#!/usr/bin/env bash
# The main job: set up, then execute the notebook top to bottom on the built-in data (full
# mode) into outputs/ImageSegmentation_U-NET.ipynb; the notebook's figures go to outputs/.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=2 MPLBACKEND=Agg
export UNET_OUTPUT_DIR="${UNET_OUTPUT_DIR:-$repo/outputs}"
mkdir -p "$UNET_OUTPUT_DIR"
echo "main: executing the notebook (UNET_FAST=${UNET_FAST:-0}); output in $UNET_OUTPUT_DIR"
"$repo/.venv/bin/jupyter" nbconvert --execute --to notebook \
  --ExecutePreprocessor.timeout=3600 \
  --output-dir "$UNET_OUTPUT_DIR" ImageSegmentation_U-NET.ipynb
echo "main: done; executed notebook at $UNET_OUTPUT_DIR/ImageSegmentation_U-NET.ipynb"
