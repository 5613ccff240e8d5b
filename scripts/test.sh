#!/usr/bin/env bash
# The whole test suite: lint, unit tests, then the notebook in fast mode under nbval; then
# the backend-independent tests (model, metrics, losses, prediction, .keras files) again on
# the torch and JAX backends.
# Usage: bash scripts/test.sh [extra pytest arguments]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh --test
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

# The same model / metrics / losses / prediction tests on torch (CPU build; ~1-2 min here) and
# on JAX (~3 min), with tcmalloc preloaded when present: with glibc's malloc torch is
# several times slower on a CPU (docs/distributed.md).
tcmalloc=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
preload="${LD_PRELOAD:-}"
[ -e "$tcmalloc" ] && preload="$tcmalloc${preload:+:$preload}"
for backend in torch jax; do
  echo "test: the backend-independent tests on KERAS_BACKEND=$backend"
  KERAS_BACKEND="$backend" LD_PRELOAD="$preload" "$py" -m pytest \
    tests/test_model.py tests/test_batchnorm.py tests/test_metrics.py tests/test_losses.py \
    tests/test_inference.py tests/test_backends.py -p no:cacheprovider "$@"
done
