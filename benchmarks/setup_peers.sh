#!/usr/bin/env bash
# Create .venv-bench: a separate, git-ignored environment for the peer comparison in
# benchmarks/bench_losses.py (OpenCLIP's ClipLoss next to ours, same process, same torch).
# It is separate from .venv because open_clip_torch pulls torchvision and a newer torch that
# the project's CPU pin (constraints/cpu.txt) must not see.
# Usage: bash benchmarks/setup_peers.sh     (idempotent; a few minutes, all from local wheels)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MANIFOLD_ALIGN_BENCH_VENV:-$ROOT/.venv-bench}"
PYTHON_BIN="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup_peers] creating $VENV" >&2
  "$PYTHON_BIN" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check)
"${PIP[@]}" torch==2.14.1 torchvision==0.29.1 open_clip_torch
"${PIP[@]}" --no-deps -e "$ROOT"
# The library's train extra (the throughput benchmark builds models and optimizers through it).
"${PIP[@]}" "tokenizers>=0.15" "safetensors>=0.4" "webdataset>=0.2.86" "pillow>=10.0"
"${PIP[@]}" "geoopt>=0.5.1" "numpy>=1.24" "scipy>=1.10" "pyyaml>=6.0" "tqdm>=4.65" "matplotlib>=3.7"
"$VENV/bin/python" -c "import open_clip, torch; print('[setup_peers] ok: torch', torch.__version__, 'open_clip', open_clip.__version__)"
