#!/usr/bin/env bash
# The whole check: lint, the test suite, and a strict docs build. Sets up .venv on first use.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/bootstrap.sh
echo "== ruff"
"$PY" -m ruff check manifold_align tests examples benchmarks
echo "== pytest"
# One BLAS/OpenMP thread per process: pytest runs one worker per core (subprocess tests too).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
"$PY" -m pytest -n "${PYTEST_WORKERS:-2}" "$@"
echo "== mkdocs build --strict"
NO_MKDOCS_2_WARNING=1 "$PY" -m mkdocs build --strict --quiet --site-dir "$ROOT/site"
