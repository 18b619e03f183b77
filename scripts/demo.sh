#!/usr/bin/env bash
# The main job on bundled data. Sets up .venv on first use. Extra arguments go to the script.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/bootstrap.sh
"$PY" examples/oblique_packing.py --out runs/packing "$@"
