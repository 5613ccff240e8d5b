#!/usr/bin/env bash
# Create (or reuse) the local virtual environment .venv and install the pinned requirements
# plus unet_lib itself (editable). Re-installs only when requirements.txt or pyproject.toml
# changed since the last successful install. Source it or run it; it is idempotent.
set -euo pipefail
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
