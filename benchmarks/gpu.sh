#!/usr/bin/env bash
# Training speed of the default U-Net (paper layout, 256x256, batch 16) on the JAX and torch
# Keras backends, float32 and mixed bfloat16, from NumPy data: images/s and achieved TFLOP/s
# beside the GPU's peak. See benchmarks/README.md.
#
# Usage: bash benchmarks/gpu.sh [--cpu] [gpu_bench.py options, e.g. --steps 100]
#   UNET_BACKENDS="jax torch"   backends to measure (default both)
#   UNET_PRECISIONS="float32 mixed_bfloat16"
#   PYTHON=python3              the interpreter (default python3)
#   OUT=DIR                     where gpu_results.json goes (default outputs/gpu)
#
# A machine without Keras (the GPU machines have JAX and PyTorch but no TensorFlow and no
# Keras) gets it from the wheels in wheels/ (git-ignored; made with
# `bash benchmarks/gpu.sh --fetch-wheels` where pip reaches PyPI), installed into a
# temporary folder with --no-index: nothing is downloaded there.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-python3}"
wheels="$repo/wheels"
keras_version=3.15.1

if [ "${1:-}" = "--fetch-wheels" ]; then
  # keras and the two dependencies the GPU image lacks (it has numpy, absl-py, rich, h5py,
  # ml-dtypes, packaging), for CPython 3.11 and 3.12 on x86-64 Linux.
  mkdir -p "$wheels"
  "$py" -m pip download --quiet --no-deps --dest "$wheels" "keras==$keras_version" namex==0.1.0
  for version in 3.11 3.12; do
    "$py" -m pip download --quiet --no-deps --only-binary=:all: --dest "$wheels" \
      --python-version "$version" --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 optree==0.20.0
  done
  du -sh "$wheels"; ls "$wheels"
  exit 0
fi

if ! "$py" -c "import keras, sys; sys.exit(keras.__version__ != '$keras_version')" 2>/dev/null
then
  [ -d "$wheels" ] || { echo "gpu.sh: no keras $keras_version and no $wheels" >&2; exit 1; }
  site="$(mktemp -d /tmp/unet-gpu-site.XXXXXX)"
  "$py" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir \
    --find-links "$wheels" --target "$site" "keras==$keras_version" namex optree
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
# JAX would otherwise take 75 % of the GPU up front; torch shares the card in turn anyway.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

# On a CPU, tcmalloc avoids the page-fault storm of glibc's malloc (torch 4.7x faster here;
# see docs/distributed.md). GPU runs are left as they are.
tcmalloc=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
if ! command -v nvidia-smi >/dev/null && [ -e "$tcmalloc" ] &&
  [[ "${LD_PRELOAD:-}" != *tcmalloc* ]]; then
  export LD_PRELOAD="$tcmalloc${LD_PRELOAD:+:$LD_PRELOAD}"
fi

out="${OUT:-$repo/outputs/gpu}"
mkdir -p "$out"
results="$out/gpu_results.jsonl"
: >"$results"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
  --format=csv,noheader || echo "gpu.sh: no nvidia-smi: measuring on the CPU"
status=0
for backend in ${UNET_BACKENDS:-jax torch}; do
  for precision in ${UNET_PRECISIONS:-float32 mixed_bfloat16}; do
    echo "gpu.sh: $backend $precision"
    KERAS_BACKEND="$backend" "$py" "$repo/benchmarks/gpu_bench.py" --precision "$precision" \
      --append "$results" "$@" || status=1
  done
done
"$py" "$repo/benchmarks/gpu_bench.py" --report "$results" --json "$out/gpu_results.json"
exit $status
