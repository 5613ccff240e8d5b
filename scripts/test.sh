#!/usr/bin/env bash
# The whole test suite: lint, unit tests, then the notebook in fast mode under nbval.
# Usage: bash scripts/test.sh [extra pytest arguments]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh
py="$repo/.venv/bin/python"

# Real data beside the repo (../shared/data) is used when present; tests skip without it.
if [ -z "${UNET_SHARED_DATA:-}" ] && [ -d "$repo/../shared/data" ]; then
  export UNET_SHARED_DATA="$(cd "$repo/../shared/data" && pwd)"
fi
export UNET_FAST=1            # the notebook's fast mode
export TF_CPP_MIN_LOG_LEVEL=2  # TensorFlow's C++ start-up chatter
export MPLBACKEND=Agg

"$py" -m ruff check .
"$py" -m ruff format --check .
"$py" -m pytest tests ImageSegmentation_U-NET.ipynb --nbval-lax --nbval-current-env \
  --nbval-sanitize-with nbval_sanitize.cfg \
  -p no:cacheprovider "$@"
