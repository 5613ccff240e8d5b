#!/usr/bin/env bash
# The main job: set up, then execute the notebook top to bottom on the bundled nuclei (full
# mode) into outputs/ImageSegmentation_U-NET.ipynb, its figures inline and in outputs/figures/.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh
# MPLBACKEND (Agg, say) would replace Jupyter's inline backend: the executed notebook would
# hold no figure.
unset MPLBACKEND
export TF_CPP_MIN_LOG_LEVEL=2
export UNET_OUTPUT_DIR="${UNET_OUTPUT_DIR:-$repo/outputs}"
mkdir -p "$UNET_OUTPUT_DIR"
echo "main: executing the notebook (UNET_FAST=${UNET_FAST:-0}); output in $UNET_OUTPUT_DIR"
"$repo/.venv/bin/jupyter" nbconvert --execute --to notebook \
  --ExecutePreprocessor.timeout=3600 \
  --output-dir "$UNET_OUTPUT_DIR" ImageSegmentation_U-NET.ipynb
echo "main: done; executed notebook at $UNET_OUTPUT_DIR/ImageSegmentation_U-NET.ipynb"
