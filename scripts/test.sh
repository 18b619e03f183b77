#!/usr/bin/env bash
# The whole check: lint, the test suite, the tests against the real peers, and a strict docs
# build. Sets up .venv (and .venv-peers, a few minutes the first time) on first use.
#
#   bash scripts/test.sh [PYTEST_ARGS...]    extra arguments go to the main pytest run
#
# MANIFOLD_ALIGN_SKIP_PEERS=1 leaves out the peer run for a quick local loop; CI (CI=true)
# refuses it, so a green CI always includes the comparison with OpenCLIP, transformers and
# CLIP_benchmark.
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
echo "== pytest tests/peers (OpenCLIP, transformers, CLIP_benchmark in .venv-peers)"
if [ "${MANIFOLD_ALIGN_SKIP_PEERS:-0}" = "1" ]; then
  if [ "${CI:-}" = "true" ]; then
    echo "MANIFOLD_ALIGN_SKIP_PEERS=1 is not allowed in CI" >&2
    exit 2
  fi
  echo "SKIPPED by MANIFOLD_ALIGN_SKIP_PEERS=1 (CI never skips it)"
else
  source scripts/peers_env.sh
  MANIFOLD_ALIGN_PEERS=1 "$PEERS_PY" -m pytest -n "${PYTEST_WORKERS:-2}" tests/peers
fi
echo "== mkdocs build --strict"
NO_MKDOCS_2_WARNING=1 "$PY" -m mkdocs build --strict --quiet --site-dir "$ROOT/site"
