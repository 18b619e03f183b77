#!/usr/bin/env bash
# `make bench`: every benchmark next to its peer, in .venv-peers (OpenCLIP, geoopt,
# CLIP_benchmark; scripts/peers_env.sh), then the page docs/benchmarks.md regenerated from the
# results.
#
#   bash scripts/bench.sh            full CPU run (~20 min on 2 idle cores; the sigmoid loss
#                                    alone at B = 65536 is 4 CPU-minutes of it): JSON results into
#                                    benchmarks/results/, plots into docs/img/bench_*.png, and
#                                    docs/benchmarks.md
#   bash scripts/bench.sh --quick    smoke run (about a minute): the same, under runs/bench-quick/
#
# BENCH_THREADS (default 1) sets torch's threads for every benchmark: on a machine whose cores
# other jobs share, one thread per process is far steadier than two.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/peers_env.sh
PY="$PEERS_PY"
THREADS="${BENCH_THREADS:-1}"
export OMP_NUM_THREADS="$THREADS" PYTHONWARNINGS="ignore::FutureWarning,ignore::DeprecationWarning"

QUICK=()
if [ "${1:-}" = "--quick" ]; then
  QUICK=(--quick)
  OUT="runs/bench-quick"; RES="$OUT/results"; IMG="$OUT/img"; PAGE="$OUT/benchmarks.md"
  MODE="quick"; CMD="bash scripts/bench.sh --quick"
elif [ $# -eq 0 ]; then
  RES="benchmarks/results"; IMG="docs/img"; PAGE="docs/benchmarks.md"
  MODE="full"; CMD="bash scripts/bench.sh"
else
  echo "usage: bash scripts/bench.sh [--quick]" >&2
  exit 2
fi
mkdir -p "$RES" "$IMG"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
: > "$RES/durations.tsv"
"$PY" benchmarks/report.py machine --out "$RES/machine.json" --threads "$THREADS" \
  --command "BENCH_THREADS=$THREADS $CMD" --mode "$MODE"

step() {  # step NAME COMMAND...: run, time it, append to durations.tsv
  local name="$1" start=$SECONDS
  shift
  echo "== $name" >&2
  "$@"
  printf '%s\t%s\n' "$name" "$((SECONDS - start))" >> "$RES/durations.tsv"
}

# the optimizer at one thread and at all cores, in the same run (nproc obeys OMP_NUM_THREADS,
# which is exported above: without env -u it would say 1)
step radam "$PY" benchmarks/bench_radam.py "${QUICK[@]}" --threads "$THREADS" "$(env -u OMP_NUM_THREADS nproc)" --json "$RES/radam.json"
step losses "$PY" benchmarks/bench_losses.py "${QUICK[@]}" --threads "$THREADS" --out "$TMP/losses"
cp "$TMP/losses/results.json" "$RES/losses.json"
# bench_suite_losses.png, not bench_losses.png: docs/losses.md shows its own run's plot under that name
if [ -f "$TMP/losses/bench_losses.png" ]; then cp "$TMP/losses/bench_losses.png" "$IMG/bench_suite_losses.png"; fi
step throughput "$PY" benchmarks/bench_throughput.py "${QUICK[@]}" --threads "$THREADS" \
  --json "$RES/throughput.json" --plot "$IMG/bench_throughput.png"
step scaling "$PY" benchmarks/bench_scaling.py "${QUICK[@]}" --threads "$THREADS" \
  --json "$RES/scaling.json" --plots "$IMG"
step tokenizer "$PY" benchmarks/bench_tokenizer.py "${QUICK[@]}" --threads "$THREADS" \
  --json "$RES/tokenizer.json"
step eval "$PY" benchmarks/bench_eval.py "${QUICK[@]}" --threads "$THREADS" --json "$RES/eval.json"
"$PY" benchmarks/report.py page --results "$RES" --out "$PAGE"
