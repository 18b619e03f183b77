#!/usr/bin/env bash
# Create (once) and refresh (when pyproject.toml or the constraints change) the project's
# virtual environment in .venv, with the CPU build of PyTorch pinned by constraints/cpu.txt.
# Usage: source scripts/bootstrap.sh   (sets $PY to the venv's python)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MANIFOLD_ALIGN_VENV:-$ROOT/.venv}"
PYTHON_BIN="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[bootstrap] creating virtual environment in $VENV" >&2
  "$PYTHON_BIN" -m venv "$VENV"
fi
PY="$VENV/bin/python"
STAMP="$VENV/.manifold-align-stamp"
WANT="$(cat "$ROOT/pyproject.toml" "$ROOT/constraints/cpu.txt" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "[bootstrap] installing manifold-align[dev] (CPU torch) into $VENV" >&2
  "$PY" -m pip install -q --disable-pip-version-check --upgrade pip >&2
  "$PY" -m pip install -q --disable-pip-version-check -c "$ROOT/constraints/cpu.txt" -e "$ROOT[dev]" >&2
  echo "$WANT" > "$STAMP"
fi
export PY
