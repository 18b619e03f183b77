#!/usr/bin/env bash
# Create (once) and refresh (when pyproject.toml or constraints/peers.txt change) .venv-peers:
# the environment of the real peers (OpenCLIP, Hugging Face transformers, CLIP_benchmark) that
# tests/peers/ and the benchmarks run in. It is separate from .venv because those peers import
# torchvision, which loads only beside torch 2.14.1 here, not beside the CPU build in .venv.
# The first install takes a few minutes (about 5.6 GB, from this machine's local wheels).
# Usage: source scripts/peers_env.sh   (sets $PEERS_PY to the environment's python)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS_VENV="${MANIFOLD_ALIGN_PEERS_VENV:-$ROOT/.venv-peers}"
PYTHON_BIN="${PYTHON:-python3}"
if [ ! -x "$PEERS_VENV/bin/python" ]; then
  echo "[peers] creating $PEERS_VENV" >&2
  "$PYTHON_BIN" -m venv "$PEERS_VENV"
fi
PEERS_PY="$PEERS_VENV/bin/python"
PEERS_STAMP="$PEERS_VENV/.manifold-align-stamp"
PEERS_WANT="$(cat "$ROOT/pyproject.toml" "$ROOT/constraints/peers.txt" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$PEERS_STAMP" ] || [ "$(cat "$PEERS_STAMP")" != "$PEERS_WANT" ]; then
  echo "[peers] installing the peers and manifold-align[peers] into $PEERS_VENV (minutes the first time)" >&2
  # A full disk otherwise shows up minutes later as pip's "No space left on device".
  FREE_MB="$(df -Pm "$PEERS_VENV" | awk 'NR == 2 {print $4}')"
  if [ -n "$FREE_MB" ] && [ "$FREE_MB" -lt 8000 ] && [ ! -f "$PEERS_STAMP" ]; then
    echo "[peers] warning: $FREE_MB MB free where $PEERS_VENV lives; a first install needs about 7000 MB" >&2
  fi
  "$PEERS_PY" -m pip install -q --disable-pip-version-check --upgrade pip >&2
  "$PEERS_PY" -m pip install -q --disable-pip-version-check -c "$ROOT/constraints/peers.txt" \
    -e "$ROOT[dev,peers]" >&2
  echo "$PEERS_WANT" > "$PEERS_STAMP"
fi
export PEERS_PY
