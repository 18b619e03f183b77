#!/usr/bin/env bash
# The main job on bundled data: train the tiny model CLIP's way (sphere, learnable temperature)
# and the oblique multi-token way on noisy synthetic captions, evaluate both, and write
# runs/demo/<time>/report.md with plots. Sets up .venv on first use.
# Extra arguments go to examples/demo.py (e.g. --fast for a 30-second smoke run).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/bootstrap.sh
"$PY" examples/demo.py "$@"
