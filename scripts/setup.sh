#!/usr/bin/env bash
# Create (or reuse) the local virtual environment .venv and install the pinned requirements
# plus unet_lib itself (editable). Re-installs only when requirements.txt or pyproject.toml
# changed since the last successful install. Source it or run it; it is idempotent.
# --test also installs requirements-test.txt (the torch and JAX backends, CPU builds) and,
# where apt works (as root), tcmalloc for the torch tests (optional: skipped if it fails).
set -euo pipefail
with_tests=0
[ "${1:-}" = "--test" ] && with_tests=1
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
python_bin="${PYTHON:-}"
if [ -z "$python_bin" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python_bin="$candidate"; break; fi
  done
fi
[ -n "$python_bin" ] || { echo "setup: no python3 found; install Python 3.11" >&2; exit 1; }

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv with $("$python_bin" --version)"
  "$python_bin" -m venv "$venv"
fi

stamp="$venv/.setup-stamp"
want="$(cat "$repo/requirements.txt" "$repo/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing requirements (first run takes a few minutes)"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -r "$repo/requirements.txt"
  "$venv/bin/python" -m pip install --quiet --no-deps -e "$repo"
  echo "$want" >"$stamp"
else
  echo "setup: $venv is up to date"
fi

if [ "$with_tests" = 1 ]; then
  test_stamp="$venv/.setup-stamp-test"
  want_test="$(cat "$repo/requirements-test.txt" | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$test_stamp" ] || [ "$(cat "$test_stamp")" != "$want_test" ]; then
    echo "setup: installing the test backends (requirements-test.txt)"
    "$venv/bin/python" -m pip install --quiet -r "$repo/requirements-test.txt"
    echo "$want_test" >"$test_stamp"
  fi
  # torch on a CPU spends most of a U-Net step in page faults with glibc's malloc;
  # scripts/test.sh preloads tcmalloc when it is there (docs/distributed.md).
  tcmalloc=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
  if [ ! -e "$tcmalloc" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing libtcmalloc-minimal4 (optional)"
    { apt-get install -y -q libtcmalloc-minimal4 || { apt-get update -q &&
      apt-get install -y -q libtcmalloc-minimal4; }; } >/dev/null 2>&1 ||
      echo "setup: tcmalloc not installed; the torch tests run without it (slower)"
  fi
fi
